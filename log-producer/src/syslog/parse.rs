//! One syslog message into our event's fields: RFC 5424 (`<PRI>1 TIMESTAMP HOST APP
//! PROCID MSGID [SD] MSG`, what `logger` and rsyslog's `RSYSLOG_SyslogProtocol23Format`
//! send) and the older BSD form of RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`,
//! what most devices and daemons send). Pure: bytes in, a record or why not out.
//!
//! | syslog | event |
//! |---|---|
//! | severity 0–2 / 3 / 4 / 5–6 / 7 | FATAL / ERROR / WARN / INFO / DEBUG |
//! | APP-NAME or TAG, else the hostname, else `syslog` | source |
//! | MSG (a leading UTF-8 BOM dropped) | message |
//! | hostname, facility, procid, msgid, structured data | metadata |
//! | TIMESTAMP (RFC 3164's, which has no year nor zone, read as UTC in the year that puts it nearest now) | timestamp; the receive time when absent |

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use log_common::domain::Level;
use serde_json::{Map, Value};

/// A syslog message in our event's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogRecord {
    pub level: Level,
    pub source: String,
    pub message: String,
    pub timestamp: Option<DateTime<Utc>>,
    pub metadata: Map<String, Value>,
}

const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// The level of a syslog severity (0 emergency … 7 debug).
pub fn level_of_severity(severity: u8) -> Level {
    match severity {
        0..=2 => Level::Fatal,
        3 => Level::Error,
        4 => Level::Warn,
        5 | 6 => Level::Info,
        _ => Level::Debug,
    }
}

/// One message (a frame's bytes, without its framing), received at `now`.
pub fn parse(frame: &[u8], now: DateTime<Utc>) -> Result<SyslogRecord, String> {
    let text = String::from_utf8_lossy(frame);
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let (facility, severity, rest) = priority(text)?;
    let mut metadata = Map::new();
    metadata.insert(
        "facility".into(),
        Value::String(FACILITIES[facility].into()),
    );
    let (source, message, timestamp) = match rest.strip_prefix("1 ") {
        Some(rest) => rfc5424(rest, &mut metadata)?,
        None => rfc3164(rest, now, &mut metadata),
    };
    Ok(SyslogRecord {
        level: level_of_severity(severity),
        source,
        message,
        timestamp,
        metadata,
    })
}

/// `<PRI>`: facility × 8 + severity, at most 191.
fn priority(text: &str) -> Result<(usize, u8, &str), String> {
    let rest = text
        .strip_prefix('<')
        .ok_or("no priority: a syslog message starts with <PRI>")?;
    let end = rest
        .find('>')
        .filter(|&end| (1..=3).contains(&end))
        .ok_or("no priority: a syslog message starts with <PRI>")?;
    let pri: u8 = rest[..end]
        .parse()
        .ok()
        .filter(|&p| p <= 191)
        .ok_or_else(|| format!("priority {:?} is not 0..=191", &rest[..end]))?;
    Ok((usize::from(pri / 8), pri % 8, &rest[end + 1..]))
}

/// The next space-separated field and the rest; `-` is RFC 5424's nil.
fn field(text: &str) -> (Option<&str>, &str) {
    let (value, rest) = text.split_once(' ').unwrap_or((text, ""));
    ((value != "-" && !value.is_empty()).then_some(value), rest)
}

type Parsed = (String, String, Option<DateTime<Utc>>);

fn rfc5424(text: &str, metadata: &mut Map<String, Value>) -> Result<Parsed, String> {
    let (timestamp, rest) = field(text);
    let (hostname, rest) = field(rest);
    let (app, rest) = field(rest);
    let (procid, rest) = field(rest);
    let (msgid, rest) = field(rest);
    let timestamp = timestamp
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| format!("timestamp {t:?} is not RFC 3339"))
        })
        .transpose()?;
    let (structured, message) = structured_data(rest)?;
    for (key, value) in [("hostname", hostname), ("procid", procid), ("msgid", msgid)] {
        if let Some(value) = value {
            metadata.insert(key.into(), Value::String(value.into()));
        }
    }
    if !structured.is_empty() {
        metadata.insert("structuredData".into(), Value::Object(structured));
    }
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    let source = app.or(hostname).unwrap_or("syslog");
    Ok((source.to_owned(), message.to_owned(), timestamp))
}

/// `-` or `[id name="value" …]…`, then the message after one space: each element as
/// an object of its parameters (`\"`, `\\` and `\]` unescaped).
fn structured_data(text: &str) -> Result<(Map<String, Value>, &str), String> {
    let mut elements = Map::new();
    if let Some(rest) = text.strip_prefix('-') {
        return Ok((elements, rest.strip_prefix(' ').unwrap_or(rest)));
    }
    let mut rest = text;
    while let Some(inside) = rest.strip_prefix('[') {
        let (id, mut params) = inside
            .split_once([' ', ']'])
            .map(|(id, _)| (id, &inside[id.len()..]))
            .ok_or("structured data: an element is not closed")?;
        let mut values = Map::new();
        loop {
            if let Some(after) = params.strip_prefix(']') {
                rest = after;
                break;
            }
            let param = params
                .strip_prefix(' ')
                .ok_or("structured data: expected a parameter or ]")?;
            let (name, value) = param
                .split_once("=\"")
                .ok_or("structured data: a parameter is not name=\"value\"")?;
            let (value, after) = quoted(value)?;
            values.insert(name.to_owned(), Value::String(value));
            params = after;
        }
        elements.insert(id.to_owned(), Value::Object(values));
    }
    if elements.is_empty() {
        return Err("structured data: neither - nor [".into());
    }
    Ok((elements, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// A parameter value up to its closing quote, unescaped, and the text after it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\' | ']'))) => value.push(escaped),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            },
            _ => value.push(c),
        }
    }
    Err("structured data: a value is not closed".into())
}

/// RFC 3164 is a convention more than a format: whatever does not look like its
/// timestamp, host and tag stays in the message, so nothing a device sends is lost.
fn rfc3164(text: &str, now: DateTime<Utc>, metadata: &mut Map<String, Value>) -> Parsed {
    let (timestamp, rest) = match bsd_timestamp(text, now) {
        Some(timestamp) => (Some(timestamp), text[15..].trim_start()),
        None => (None, text),
    };
    // HOST TAG: MSG, or TAG: MSG (no host), or just MSG.
    let words: Vec<&str> = rest.splitn(3, ' ').collect();
    let (hostname, tag) = match words.as_slice() {
        [host, tag, _] if timestamp.is_some() && is_tag(tag) => (Some(*host), Some(*tag)),
        [tag, _, ..] if is_tag(tag) => (None, Some(*tag)),
        _ => (None, None),
    };
    let consumed = hostname.map_or(0, |h| h.len() + 1) + tag.map_or(0, |t| t.len() + 1);
    let message = rest.get(consumed..).unwrap_or_default();
    let (app, procid) = match tag.map(|t| t.trim_end_matches(':')) {
        Some(tag) => match tag.split_once('[') {
            Some((app, pid)) => (Some(app), Some(pid.trim_end_matches(']'))),
            None => (Some(tag), None),
        },
        None => (None, None),
    };
    for (key, value) in [("hostname", hostname), ("procid", procid)] {
        if let Some(value) = value {
            metadata.insert(key.into(), Value::String(value.into()));
        }
    }
    let source = app.or(hostname).unwrap_or("syslog");
    (source.to_owned(), message.to_owned(), timestamp)
}

/// `TAG:` or `TAG[PID]:`, a program name of up to 48 characters.
fn is_tag(word: &str) -> bool {
    let Some(name) = word.strip_suffix(':') else {
        return false;
    };
    let name = match name.split_once('[') {
        Some((name, pid)) if pid.ends_with(']') => name,
        Some(_) => return false,
        None => name,
    };
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

/// `Mmm dd hh:mm:ss` (day space-padded), in the year that puts it nearest `now`.
fn bsd_timestamp(text: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let stamp = text.get(..15)?;
    let at = |year: i32| {
        NaiveDateTime::parse_from_str(&format!("{year} {stamp}"), "%Y %b %e %H:%M:%S")
            .ok()
            .map(|t| Utc.from_utc_datetime(&t))
    };
    [now.year() - 1, now.year(), now.year() + 1]
        .into_iter()
        .filter_map(at)
        .min_by_key(|t| (*t - now).num_seconds().abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0)
            .single()
            .expect("a time")
    }

    fn parsed(line: &str) -> SyslogRecord {
        parse(line.as_bytes(), now()).expect("parses")
    }

    #[test]
    fn an_rfc5424_message_gives_every_field() {
        let record = parsed(
            "<11>1 2026-12-07T11:59:58.123456+01:00 web-1 nginx 4242 ACCESS \
             [origin ip=\"10.0.0.1\"][meta x=\"a \\\"b\\\" \\] c\"] \u{feff}GET /index 500",
        );
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.source, "nginx");
        assert_eq!(record.message, "GET /index 500");
        assert_eq!(
            record.timestamp,
            Utc.with_ymd_and_hms(2026, 12, 7, 10, 59, 58)
                .single()
                .map(|t| t + chrono::Duration::microseconds(123_456))
        );
        assert_eq!(
            Value::Object(record.metadata),
            json!({"facility": "user", "hostname": "web-1", "procid": "4242",
                   "msgid": "ACCESS", "structuredData": {"origin": {"ip": "10.0.0.1"},
                   "meta": {"x": "a \"b\" ] c"}}})
        );
    }

    #[test]
    fn rfc5424_nil_values_leave_fields_out_and_the_source_falls_back() {
        let record = parsed("<134>1 - host-a - - - - started");
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.source, "host-a");
        assert_eq!(record.message, "started");
        assert_eq!(record.timestamp, None);
        assert_eq!(
            Value::Object(record.metadata),
            json!({"facility": "local0", "hostname": "host-a"})
        );
        assert_eq!(parsed("<7>1 - - - - - -").source, "syslog");
        assert_eq!(parsed("<7>1 - - - - - -").message, "");
    }

    #[test]
    fn an_rfc3164_message_gives_host_tag_and_pid() {
        let record = parsed("<38>Dec  7 11:59:01 gw-2 sshd[811]: Accepted publickey for root");
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.source, "sshd");
        assert_eq!(record.message, "Accepted publickey for root");
        assert_eq!(
            record.timestamp,
            Utc.with_ymd_and_hms(2026, 12, 7, 11, 59, 1).single()
        );
        assert_eq!(
            Value::Object(record.metadata),
            json!({"facility": "auth", "hostname": "gw-2", "procid": "811"})
        );
    }

    #[test]
    fn rfc3164_keeps_what_does_not_look_like_its_parts_in_the_message() {
        let no_host = parsed("<12>Dec 31 23:59:59 kernel: link down");
        assert_eq!(no_host.source, "kernel");
        assert_eq!(no_host.message, "link down");
        // January read in December is next year's.
        assert_eq!(
            parsed("<12>Jan  1 00:00:01 h app: x").timestamp,
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 1).single()
        );
        assert_eq!(
            no_host.timestamp,
            Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).single()
        );
        let bare = parsed("<13>something odd happened: here");
        assert_eq!(bare.source, "syslog");
        assert_eq!(bare.message, "something odd happened: here");
        assert_eq!(bare.timestamp, None);
        let tag_only = parsed("<13>cron[9]: job done");
        assert_eq!(
            (tag_only.source.as_str(), tag_only.message.as_str()),
            ("cron", "job done")
        );
    }

    #[test]
    fn severities_map_to_levels() {
        let levels: Vec<Level> = (0..8).map(level_of_severity).collect();
        assert_eq!(
            levels,
            [
                Level::Fatal,
                Level::Fatal,
                Level::Fatal,
                Level::Error,
                Level::Warn,
                Level::Info,
                Level::Info,
                Level::Debug
            ]
        );
    }

    #[test]
    fn malformed_messages_say_why() {
        for (line, why) in [
            ("no priority", "no priority"),
            ("<192>1 - - - - - - x", "priority \"192\""),
            ("<1234>x", "no priority"),
            ("<11>1 yesterday h a - - - x", "not RFC 3339"),
            ("<11>1 - h a - - [open x=\"1\" x", "structured data"),
            ("<11>1 - h a - - nonsense x", "structured data"),
        ] {
            let error = parse(line.as_bytes(), now()).expect_err(line);
            assert!(error.contains(why), "{line}: {error}");
        }
    }
}
