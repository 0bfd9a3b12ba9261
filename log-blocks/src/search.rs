//! Full-text search evaluated in Rust: the query syntax the gateway has always taken
//! (PostgreSQL's `websearch_to_tsquery`), matched on [`crate::tokens`]' terms.
//!
//! - words are all required: `timeout db-01` needs both;
//! - `"a phrase"` needs its terms one after the other;
//! - `-word` and `-"a phrase"` exclude;
//! - `or` between two parts needs either: `a b or c` is `(a and b) or c`;
//! - case never matters; no stemming (`connections` does not find `connection`).
//!
//! A query is kept as alternatives of required and excluded parts. Besides matching a
//! message, it says which filter keys a block must hold to possibly match
//! ([`Query::may_match`]), so blocks that cannot are never opened.

use crate::tokens::{self, Term};

/// A sequence of terms that must appear one after the other (a single word is a
/// sequence of one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Phrase(Vec<Term>);

impl Phrase {
    fn found_in(&self, message: &[Term]) -> bool {
        let n = self.0.len();
        n > 0
            && message.len() >= n
            && message.windows(n).any(|window| {
                window
                    .iter()
                    .zip(&self.0)
                    .all(|(m, q)| tokens::term_matches(q, m))
            })
    }
}

/// Everything one alternative needs: all of `required`, none of `excluded`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Conjunction {
    required: Vec<Phrase>,
    excluded: Vec<Phrase>,
}

/// A parsed search query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    alternatives: Vec<Conjunction>,
}

impl Query {
    /// Parses a query. Text with no term in it (only punctuation, a lone `-`) gives a
    /// query that matches nothing, as PostgreSQL's did.
    pub fn parse(text: &str) -> Query {
        let mut alternatives = vec![Conjunction::default()];
        let mut rest = text;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let negated = rest.starts_with('-');
            if negated {
                rest = &rest[1..];
            }
            let (part, quoted) = if let Some(inner) = rest.strip_prefix('"') {
                let end = inner.find('"').unwrap_or(inner.len());
                let part = &inner[..end];
                rest = inner.get(end + 1..).unwrap_or("");
                (part, true)
            } else {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '"')
                    .unwrap_or(rest.len());
                let part = &rest[..end];
                rest = &rest[end..];
                (part, false)
            };
            if !quoted && !negated && part.eq_ignore_ascii_case("or") {
                if alternatives
                    .last()
                    .is_some_and(|c| *c != Conjunction::default())
                {
                    alternatives.push(Conjunction::default());
                }
                continue;
            }
            let phrase = Phrase(tokens::terms(part));
            if phrase.0.is_empty() {
                continue;
            }
            let current = alternatives.last_mut().expect("at least one alternative");
            if negated {
                current.excluded.push(phrase);
            } else {
                current.required.push(phrase);
            }
        }
        alternatives.retain(|c| !c.required.is_empty() || !c.excluded.is_empty());
        Query { alternatives }
    }

    /// Whether `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        let terms = tokens::terms(message);
        self.matches_terms(&terms)
    }

    /// Whether a message cut into `terms` matches (for a caller that cut it already).
    pub fn matches_terms(&self, terms: &[Term]) -> bool {
        self.alternatives.iter().any(|c| {
            c.required.iter().all(|p| p.found_in(terms))
                && !c.excluded.iter().any(|p| p.found_in(terms))
        })
    }

    /// Whether a block whose token filter answers `may_hold` for a key can hold a
    /// match: some alternative has every required key possibly there. An alternative
    /// with nothing required (only exclusions) may match anywhere.
    pub fn may_match(&self, may_hold: impl Fn(&str) -> bool) -> bool {
        self.alternatives.iter().any(|c| {
            c.required.iter().flat_map(|p| &p.0).all(|term| {
                tokens::filter_keys_of_query(term)
                    .into_iter()
                    .all(&may_hold)
            })
        })
    }

    /// Whether the query can match anything at all.
    pub fn is_empty(&self) -> bool {
        self.alternatives.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: [&str; 5] = [
        "Connection refused by db-01.example.com:5432",
        "GET /api/v1/users/42 503 in 12ms",
        "user 17 logged in from 10.0.0.12",
        "Payment declined: card expired",
        "connection reset by peer",
    ];

    fn hits(query: &str) -> Vec<usize> {
        let query = Query::parse(query);
        (0..LINES.len())
            .filter(|&i| query.matches(LINES[i]))
            .collect()
    }

    #[test]
    fn words_are_all_required_and_case_blind() {
        assert_eq!(hits("connection"), [0, 4]);
        assert_eq!(hits("CONNECTION refused"), [0]);
        assert_eq!(hits("connection nothing"), Vec::<usize>::new());
    }

    #[test]
    fn phrases_need_their_terms_in_order() {
        assert_eq!(hits("\"connection refused\""), [0]);
        assert_eq!(hits("\"refused connection\""), Vec::<usize>::new());
        assert_eq!(
            hits("\"card expired"),
            [3],
            "an unclosed quote runs to the end"
        );
    }

    #[test]
    fn exclusions_and_alternatives() {
        assert_eq!(hits("connection -refused"), [4]);
        assert_eq!(hits("connection -\"connection refused\""), [4]);
        assert_eq!(hits("declined or 10.0.0.12"), [2, 3]);
        assert_eq!(hits("connection reset or users"), [1, 4]);
        assert_eq!(hits("OR declined"), [3], "a leading or is nothing");
    }

    #[test]
    fn whole_tokens() {
        assert_eq!(hits("10.0.0.12"), [2]);
        assert_eq!(hits("10.0.0.1"), Vec::<usize>::new());
        assert_eq!(hits("/api/v1/users/42"), [1]);
        assert_eq!(hits("users"), [1]);
        assert_eq!(hits("db-01.example.com:5432"), [0]);
    }

    #[test]
    fn queries_without_terms_match_nothing() {
        for text in ["", "   ", "-", "\"\"", "!!! ???", "or"] {
            let query = Query::parse(text);
            assert!(query.is_empty(), "{text:?}");
            assert!(!query.matches("anything at all"));
        }
    }

    #[test]
    fn the_filter_question_asks_for_every_required_term() {
        let query = Query::parse("timeout \"db-01 down\" -ignored or panic");
        let held = |keys: &'static [&'static str]| move |k: &str| keys.contains(&k);
        assert!(query.may_match(held(&["timeout", "db-01", "down"])));
        assert!(!query.may_match(held(&["timeout", "db-01"])));
        assert!(query.may_match(held(&["panic"])));
        assert!(Query::parse("-only").may_match(held(&[])));
    }
}
