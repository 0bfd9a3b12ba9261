//! How a message is cut into the tokens that search matches and the token filter holds.
//!
//! - A **word** is a maximal run of letters, digits and `_`, lower-cased.
//! - A **term** is a maximal run of words joined by `.`, `-`, `/`, `:` or `@`, with
//!   joiners at either end trimmed, lower-cased: an IP (`10.0.0.12`), a host
//!   (`db-01.example.com`), a path (`api/v1/users`), a UUID, an error code (`ORA-00942`),
//!   a `key:value`.
//!
//! A search term matches a message's term when it is the whole term, or its beginning
//! or its end cut at a joiner, or, for a single word, any of its words. So
//! `db-01.example.com` and `db-01` find `db-01.example.com:5432`, `example.com` finds
//! `api.example.com`, `/api/v1` finds `/api/v1/users/42` and `users` finds it too, and
//! `10.0.0` finds `10.0.0.12`; but
//! `10.0.0.1` finds neither `10.0.0.12` nor `110.0.0.1`: words are never cut, so an IP,
//! a path, a UUID or an error code matches whole.

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_joiner(c: char) -> bool {
    matches!(c, '.' | '-' | '/' | ':' | '@')
}

/// One term of a message, lower-cased, with its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    /// The words of `text`, in order (one word: the same as `text`).
    pub words: Vec<String>,
}

impl Term {
    pub fn is_word(&self) -> bool {
        self.words.len() == 1
    }
}

/// The terms of `text`, in order.
pub fn terms(text: &str) -> Vec<Term> {
    raw_terms(text)
        .map(|raw| {
            let text = raw.to_lowercase();
            let words = words_of(&text).map(str::to_owned).collect();
            Term { text, words }
        })
        .collect()
}

/// Each term of `text` as it is written (not yet lower-cased).
fn raw_terms(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        // Skip to the next word character: a term starts and ends with one.
        let start = rest.find(is_word_char)?;
        rest = &rest[start..];
        let mut last_word_end = 0;
        for (i, c) in rest.char_indices() {
            if is_word_char(c) {
                last_word_end = i + c.len_utf8();
            } else if !is_joiner(c) {
                break;
            }
        }
        let raw = &rest[..last_word_end];
        rest = &rest[last_word_end..];
        Some(raw)
    })
}

/// The words of a (lower-cased) term.
fn words_of(term: &str) -> impl Iterator<Item = &str> {
    term.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
}

/// Calls `key` with each string the token filter holds for `text` (with repeats), as
/// [`filter_keys`] lists them, without a string of its own for each: what a block
/// build does for every message.
pub fn for_each_filter_key(text: &str, key: impl FnMut(&str)) {
    // Most log text is ASCII: one pass over its bytes, a table telling words from
    // joiners. The same keys as the general path (a property test holds them equal),
    // at a fraction of the cost, which every stored event pays.
    if text.is_ascii() {
        ascii_filter_keys(text.as_bytes(), key);
    } else {
        unicode_filter_keys(text, key);
    }
}

/// Words, joiners and the rest, for ASCII bytes: the same classes as
/// [`is_word_char`] and [`is_joiner`] give their chars.
const OTHER: u8 = 0;
const WORD: u8 = 1;
const JOINER: u8 = 2;
const ASCII_CLASS: [u8; 128] = {
    let mut class = [OTHER; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'_' {
            class[b] = WORD;
        } else if matches!(c, b'.' | b'-' | b'/' | b':' | b'@') {
            class[b] = JOINER;
        }
        b += 1;
    }
    class
};

fn ascii_filter_keys(bytes: &[u8], mut key: impl FnMut(&str)) {
    let class = |i: usize| ASCII_CLASS[usize::from(bytes[i] & 0x7f)];
    let mut term = String::new();
    let mut i = 0;
    while i < bytes.len() {
        // Skip to the next word byte: a term starts and ends with one.
        while i < bytes.len() && class(i) != WORD {
            i += 1;
        }
        let start = i;
        let mut end = i;
        while i < bytes.len() && class(i) != OTHER {
            if class(i) == WORD {
                end = i + 1;
            }
            i += 1;
        }
        if end == start {
            break;
        }
        i = end;
        term.clear();
        term.extend(
            bytes[start..end]
                .iter()
                .map(|b| char::from(b.to_ascii_lowercase())),
        );
        let word_at = |j: usize| ASCII_CLASS[usize::from(bytes[start + j] & 0x7f)] == WORD;
        emit_words_and_pairs(&term, word_at, &mut key);
    }
}

/// Calls `key` with each word of a lower-cased `term` and each word with the one
/// before it (the pairs); `word_at(i)` tells whether byte `i` is part of a word.
fn emit_words_and_pairs(term: &str, word_at: impl Fn(usize) -> bool, key: &mut impl FnMut(&str)) {
    let (mut previous, mut start) = (None, None);
    for i in 0..=term.len() {
        let in_word = i < term.len() && word_at(i);
        match (in_word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                key(&term[s..i]);
                if let Some(p) = previous {
                    key(&term[p..i]);
                }
                previous = Some(s);
                start = None;
            }
            _ => {}
        }
    }
}

/// [`for_each_filter_key`] for any text.
fn unicode_filter_keys(text: &str, mut key: impl FnMut(&str)) {
    let mut in_word = Vec::new();
    for raw in raw_terms(text) {
        let term = raw.to_lowercase();
        // Each byte of a char gets the char's class, so words start and end at char
        // boundaries.
        in_word.clear();
        for c in term.chars() {
            in_word.extend(std::iter::repeat_n(is_word_char(c), c.len_utf8()));
        }
        emit_words_and_pairs(&term, |i| in_word[i], &mut key);
    }
}

/// Every string the token filter holds for `text` (with repeats): the words of its
/// terms, and each pair of neighbouring words in a term with what joins them
/// (`10.0`, `0.12`, `db-01`, `example.com`). A query term matching a message's term,
/// whole or by its beginning or end ([`term_matches`]), has all its words and pairs
/// there ([`filter_keys_of_query`]); pairs rather than every beginning and end keep
/// the filter to about half the keys.
pub fn filter_keys(text: &str, out: &mut Vec<String>) {
    for_each_filter_key(text, |key| out.push(key.to_owned()));
}

/// The keys a block's token filter must hold for `term` to match in it: the word, or
/// each pair of neighbouring words.
pub fn filter_keys_of_query(term: &Term) -> Vec<&str> {
    if term.is_word() {
        vec![term.text.as_str()]
    } else {
        pairs(&term.text).collect()
    }
}

/// Each pair of neighbouring words of a term's text, with the joiners between them.
fn pairs(text: &str) -> impl Iterator<Item = &str> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    (1..spans.len()).map(move |i| &text[spans[i - 1].0..spans[i].1])
}

/// Whether a query's term matches a message's term (see the module's rule).
pub fn term_matches(query: &Term, message: &Term) -> bool {
    let text = message.text.as_str();
    let whole_words_at =
        |i: usize| text[..i].ends_with(is_joiner) || text[i..].starts_with(is_joiner);
    text == query.text
        || (query.is_word() && message.words.contains(&query.text))
        || (text.starts_with(&query.text) && text[query.text.len()..].starts_with(is_joiner))
        || (text.ends_with(&query.text) && whole_words_at(text.len() - query.text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        terms(text).into_iter().map(|t| t.text).collect()
    }

    fn matches(query: &str, message: &str) -> bool {
        let query = terms(query);
        assert_eq!(query.len(), 1, "one term: {query:?}");
        terms(message).iter().any(|t| term_matches(&query[0], t))
    }

    #[test]
    fn cuts_messages_into_terms() {
        assert_eq!(
            texts("GET /api/v1/users/42 -> 503 (db-01.example.com:5432), took 12.5ms."),
            [
                "get",
                "api/v1/users/42",
                "503",
                "db-01.example.com:5432",
                "took",
                "12.5ms"
            ]
        );
        assert_eq!(
            texts("ERROR: Connection refused!"),
            ["error", "connection", "refused"]
        );
        assert_eq!(texts("  ...  "), Vec::<String>::new());
        assert_eq!(texts("Zürich naïve ÉCOLE"), ["zürich", "naïve", "école"]);
    }

    #[test]
    fn ips_hosts_paths_uuids_and_codes_match_whole() {
        let line = "conn from 10.0.0.12 to db-01.example.com path /var/log/app.log \
                    id 0193a4f2-7c1e-7d3b-9a4e-2f1c3b5d6e7f failed ORA-00942 user_id=17";
        for hit in [
            "10.0.0.12",
            "db-01.example.com",
            "db-01",
            "10.0.0",
            "example.com",
            "/var/log",
            "0193a4f2-7c1e",
            "/var/log/app.log",
            "var/log/app.log",
            "0193a4f2-7c1e-7d3b-9a4e-2f1c3b5d6e7f",
            "ORA-00942",
            "ora-00942",
            "user_id",
            "app",
            "example",
            "FAILED",
        ] {
            assert!(matches(hit, line), "{hit} should match");
        }
        for miss in [
            "10.0.0.1",
            "0.0.1",
            "db-0",
            "xample.com",
            "/var/lo",
            "7c1e-7d3b",
            "ORA-0094",
            "user",
            "fail",
        ] {
            assert!(!matches(miss, line), "{miss} should not match");
        }
    }

    proptest::proptest! {
        /// The ASCII path gives the general path's keys, in the same order.
        #[test]
        fn the_ascii_path_gives_the_same_keys(text in "[ -~]{0,80}") {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            ascii_filter_keys(text.as_bytes(), |k| fast.push(k.to_owned()));
            unicode_filter_keys(&text, |k| general.push(k.to_owned()));
            proptest::prop_assert_eq!(fast, general);
        }

        /// The same, over text made mostly of words and joiners, where terms are long.
        #[test]
        fn the_ascii_path_gives_the_same_keys_on_joined_words(text in "[a-zA-Z0-9_.:/@ -]{0,80}") {
            let (mut fast, mut general) = (Vec::new(), Vec::new());
            ascii_filter_keys(text.as_bytes(), |k| fast.push(k.to_owned()));
            unicode_filter_keys(&text, |k| general.push(k.to_owned()));
            proptest::prop_assert_eq!(fast, general);
        }
    }

    #[test]
    fn filter_keys_of_text_beyond_ascii_cut_at_chars() {
        let mut keys = Vec::new();
        filter_keys("Zürich-Nord naïve ÉCOLE", &mut keys);
        assert_eq!(keys, ["zürich", "nord", "zürich-nord", "naïve", "école"]);
    }

    #[test]
    fn filter_keys_hold_words_and_neighbouring_pairs() {
        let mut keys = Vec::new();
        filter_keys("Timeout at 10.0.0.12 db-01.example.com:5432", &mut keys);
        keys.sort();
        let mut expected = [
            "timeout",
            "at",
            "10.0",
            "0.0",
            "0.12",
            "10",
            "0",
            "0",
            "12",
            "db-01",
            "01.example",
            "example.com",
            "com:5432",
            "db",
            "01",
            "example",
            "com",
            "5432",
        ];
        expected.sort();
        assert_eq!(keys, expected);
    }
}
