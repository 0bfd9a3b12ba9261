//! From the text of one event (a line, or a stack trace's joined lines) to a
//! [`LogEvent`] the producer will accept.
//!
//! Every event built here passes the producer's validation by construction: the fields
//! are the shared crate's newtypes, a message over 32 KiB is cut (at a character
//! boundary, `metadata.truncated = true`), NUL characters become U+FFFD, and what cannot
//! be kept valid (a timestamp over a day ahead, metadata over 16 KiB) is dropped and
//! flagged rather than sent to be refused.

use chrono::{DateTime, TimeZone, Utc};
use log_common::domain::{EventId, Level, Message, Source, MAX_MESSAGE_BYTES};
use log_common::event::{parse_timestamp, LogEvent, MAX_FUTURE, MAX_ID_CHARS, MAX_METADATA_BYTES};
use regex::Regex;
use serde_json::{Map, Value};
use uuid::Uuid;

/// What the reader knows about an event besides its text.
#[derive(Debug, Clone, Default)]
pub struct RawFlags {
    /// The text was cut: the line (or the joined trace) was longer than the limit.
    pub truncated: bool,
    /// Bytes the event really had in the file when it was cut: the line without its
    /// newline, or for a joined trace, its lines with their newlines but the last.
    pub original_bytes: u64,
    /// The bytes were not valid UTF-8; invalid sequences became U+FFFD.
    pub invalid_utf8: bool,
}

/// The per-file context of the events built.
pub struct Context<'a> {
    pub source: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub level_regex: Option<&'a Regex>,
    pub now: DateTime<Utc>,
}

/// Builds the event; `id` is the derived one, used unless a JSON line brings its own.
pub fn build(text: &str, flags: &RawFlags, id: Uuid, ctx: &Context<'_>) -> LogEvent {
    let mut metadata = Map::new();
    let trimmed = text.trim_start();
    let parsed = if trimmed.starts_with('{') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(object)) => Some(from_json(object, id, ctx, &mut metadata)),
            _ => None,
        }
    } else {
        None
    };
    let mut event = parsed.unwrap_or_else(|| from_text(text, id, ctx));
    metadata.insert("host".to_owned(), Value::from(ctx.host));
    metadata.insert("file".to_owned(), Value::from(ctx.path));
    if flags.truncated {
        metadata.insert("truncated".to_owned(), Value::from(true));
        metadata.insert(
            "originalBytes".to_owned(),
            Value::from(flags.original_bytes),
        );
    }
    if flags.invalid_utf8 {
        metadata.insert("invalidUtf8".to_owned(), Value::from(true));
    }
    if let Some(existing) = event.metadata.take() {
        for (k, v) in existing {
            metadata.entry(k).or_insert(v);
        }
    }
    event.metadata = Some(bounded_metadata(metadata));
    event
}

fn from_text(text: &str, id: Uuid, ctx: &Context<'_>) -> LogEvent {
    let first_line = text.lines().next().unwrap_or("");
    let mut level = None;
    let mut timestamp = None;
    let mut source = None;
    let mut message = text;
    if let Some(caps) = ctx.level_regex.and_then(|re| re.captures(first_line)) {
        level = caps
            .name("level")
            .and_then(|m| m.as_str().parse::<Level>().ok());
        timestamp = caps
            .name("timestamp")
            .and_then(|m| parse_timestamp(m.as_str()));
        source = caps
            .name("source")
            .and_then(|m| Source::parse(m.as_str()).ok());
        if let Some(m) = caps.name("message") {
            // The message group covers the first line; the trace's other lines stay.
            message = &text[m.start()..];
        }
    }
    let level = level.unwrap_or_else(|| level_by_keyword(first_line));
    let timestamp = timestamp
        .or_else(|| {
            first_line
                .split_whitespace()
                .next()
                .and_then(parse_timestamp)
        })
        .filter(|t| *t <= ctx.now + MAX_FUTURE)
        .unwrap_or(ctx.now);
    LogEvent {
        id: EventId::from(id),
        level,
        message: message_of(message),
        source: source.unwrap_or_else(|| default_source(ctx)),
        timestamp,
        metadata: None,
        correlation_id: None,
        request_id: None,
        trace_id: None,
    }
}

/// The first level keyword among the first line's words: upper case (`ERROR`,
/// `[WARN]`), or any case right after `level=`/`lvl=`. INFO when there is none.
pub fn level_by_keyword(line: &str) -> Level {
    let head = &line[..floor_char_boundary(line, 256)];
    let lower = head.to_ascii_lowercase();
    for key in ["level=", "lvl=", "\"level\":\"", "severity="] {
        if let Some(at) = lower.find(key) {
            let rest = &head[at + key.len()..];
            let word: String = rest
                .trim_start_matches('"')
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if let Ok(level) = word.parse() {
                return level;
            }
        }
    }
    head.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_uppercase()))
        .find_map(|w| match w {
            "SEVERE" => Some(Level::Error),
            "NOTICE" => Some(Level::Info),
            "CRIT" => Some(Level::Fatal),
            "EMERG" | "ALERT" => Some(Level::Fatal),
            w => w.parse().ok(),
        })
        .unwrap_or(Level::Info)
}

fn from_json(
    mut object: Map<String, Value>,
    derived: Uuid,
    ctx: &Context<'_>,
    flags: &mut Map<String, Value>,
) -> LogEvent {
    let message = take_any(&mut object, &["message", "msg"])
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .filter(|s| !s.trim().is_empty());
    let level = match take_any(&mut object, &["level", "lvl", "severity"]) {
        None => Level::Info,
        Some(Value::String(s)) => s.parse().unwrap_or_else(|_| {
            flags.insert("originalLevel".to_owned(), Value::from(s));
            Level::Info
        }),
        // pino/bunyan numbers: 10 trace ... 60 fatal.
        Some(Value::Number(n)) => match n.as_u64().unwrap_or(30) {
            0..=10 => Level::Trace,
            11..=20 => Level::Debug,
            21..=30 => Level::Info,
            31..=40 => Level::Warn,
            41..=50 => Level::Error,
            _ => Level::Fatal,
        },
        Some(other) => {
            flags.insert("originalLevel".to_owned(), other);
            Level::Info
        }
    };
    let source = take_any(&mut object, &["source", "logger", "service"])
        .and_then(|v| v.as_str().and_then(|s| Source::parse(s).ok()))
        .unwrap_or_else(|| default_source(ctx));
    let timestamp = match take_any(&mut object, &["timestamp", "@timestamp", "time", "ts"]) {
        None => None,
        Some(value) => {
            let parsed = match &value {
                Value::String(s) => parse_timestamp(s),
                Value::Number(n) => n.as_f64().and_then(epoch),
                _ => None,
            };
            match parsed {
                Some(t) if t <= ctx.now + MAX_FUTURE => Some(t),
                _ => {
                    flags.insert("originalTimestamp".to_owned(), value);
                    None
                }
            }
        }
    };
    let id = match object.remove("id") {
        Some(Value::String(s)) => match Uuid::parse_str(&s) {
            Ok(own) => own,
            Err(_) => {
                flags.insert("originalId".to_owned(), Value::from(s));
                derived
            }
        },
        Some(other) => {
            flags.insert("originalId".to_owned(), other);
            derived
        }
        None => derived,
    };
    let correlation_id = take_id(&mut object, "correlationId", "correlation_id");
    let request_id = take_id(&mut object, "requestId", "request_id");
    let trace_id = take_id(&mut object, "traceId", "trace_id");
    let mut metadata = match object.remove("metadata") {
        Some(Value::Object(m)) => m,
        Some(other) => Map::from_iter([("metadata".to_owned(), other)]),
        None => Map::new(),
    };
    // Every other field of the line is kept, under metadata.
    for (k, v) in object {
        metadata.entry(k).or_insert(v);
    }
    let message = match message {
        Some(m) => message_of(&m),
        // No message field: the event is the whole line, as written.
        None => message_of(&Value::Object(metadata.clone()).to_string()),
    };
    LogEvent {
        id: EventId::from(id),
        level,
        message,
        source,
        timestamp: timestamp.unwrap_or(ctx.now),
        metadata: Some(metadata),
        correlation_id,
        request_id,
        trace_id,
    }
}

fn take_any(object: &mut Map<String, Value>, names: &[&str]) -> Option<Value> {
    names
        .iter()
        .find_map(|n| object.remove(*n).filter(|v| !v.is_null()))
}

fn take_id(object: &mut Map<String, Value>, name: &str, alias: &str) -> Option<String> {
    let value = object.remove(name).or_else(|| object.remove(alias))?;
    match value {
        Value::String(s)
            if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS && !s.contains('\0') =>
        {
            Some(s)
        }
        Value::Null => None,
        other => {
            object.insert(name.to_owned(), other);
            None
        }
    }
}

/// Seconds, milliseconds, microseconds or nanoseconds since the epoch, by magnitude.
fn epoch(n: f64) -> Option<DateTime<Utc>> {
    let nanos = if n < 1e11 {
        n * 1e9
    } else if n < 1e14 {
        n * 1e6
    } else if n < 1e17 {
        n * 1e3
    } else {
        n
    };
    if !nanos.is_finite() || !(0.0..=9.2e18).contains(&nanos) {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(Utc.timestamp_nanos(nanos as i64))
}

fn default_source(ctx: &Context<'_>) -> Source {
    Source::parse(ctx.source)
        .or_else(|_| Source::parse(ctx.source.chars().take(100).collect::<String>()))
        .unwrap_or_else(|_| Source::parse("log-shipper").expect("a valid source"))
}

/// A valid message from any text: NUL becomes U+FFFD, the text is cut at 32 KiB (the
/// reader already cut lines; JSON messages can still be longer), blank becomes "(empty)".
fn message_of(text: &str) -> Message {
    let clean = if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let cut = &clean[..floor_char_boundary(&clean, MAX_MESSAGE_BYTES)];
    Message::parse(cut).unwrap_or_else(|_| Message::parse("(empty)").expect("a valid message"))
}

/// The largest index ≤ `max` that is a character boundary of `s`.
pub fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// Metadata the producer accepts: no NUL, at most 16 KiB serialised. When the line's own
/// fields are too many, they are dropped and `metadataDropped` says so.
fn bounded_metadata(metadata: Map<String, Value>) -> Map<String, Value> {
    let serialised = serde_json::to_string(&metadata).unwrap_or_default();
    if serialised.len() <= MAX_METADATA_BYTES - 64 && !serialised.contains("\\u0000") {
        return metadata;
    }
    let keep = ["host", "file", "truncated", "originalBytes", "invalidUtf8"];
    let mut small: Map<String, Value> = metadata
        .into_iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .collect();
    small.insert("metadataDropped".to_owned(), Value::from(true));
    small
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx<'a>(regex: Option<&'a Regex>) -> Context<'a> {
        Context {
            source: "app",
            host: "h",
            path: "/var/log/app.log",
            level_regex: regex,
            now: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("time"),
        }
    }

    fn event(text: &str) -> LogEvent {
        build(text, &RawFlags::default(), Uuid::nil(), &ctx(None))
    }

    #[test]
    fn plain_text_levels_by_keyword() {
        assert_eq!(
            event("2026-01-01T00:00:00Z ERROR db down").level,
            Level::Error
        );
        assert_eq!(event("[WARN] disk 91%").level, Level::Warn);
        assert_eq!(event("ts=1 level=debug msg=x").level, Level::Debug);
        assert_eq!(
            event("no error here, INFO wins? no: no keyword upper").level,
            Level::Info
        );
        assert_eq!(event("SEVERE: gone").level, Level::Error);
        assert_eq!(event("CRITICAL meltdown").level, Level::Fatal);
        let e = event("2025-12-31T23:00:00Z INFO started");
        assert_eq!(e.timestamp.to_rfc3339(), "2025-12-31T23:00:00+00:00");
        assert_eq!(e.source.as_str(), "app");
        assert_eq!(e.metadata.as_ref().expect("metadata")["host"], json!("h"));
    }

    #[test]
    fn a_regex_with_named_groups_wins_over_keywords() {
        let re =
            Regex::new(r"^(?P<timestamp>\S+) <(?P<level>\w+)> (?P<message>.*)$").expect("regex");
        let e = build(
            "2025-12-31T23:00:00Z <err> ERROR-looking text INFO",
            &RawFlags::default(),
            Uuid::nil(),
            &ctx(Some(&re)),
        );
        assert_eq!(e.level, Level::Error);
        assert_eq!(e.message.as_str(), "ERROR-looking text INFO");
        assert_eq!(e.timestamp.to_rfc3339(), "2025-12-31T23:00:00+00:00");
    }

    #[test]
    fn json_lines_take_other_shippers_field_names() {
        let e = event(
            r#"{"msg":"hi","lvl":"warning","ts":"2025-12-31T00:00:00Z","logger":"billing","user":7}"#,
        );
        assert_eq!(e.message.as_str(), "hi");
        assert_eq!(e.level, Level::Warn);
        assert_eq!(e.source.as_str(), "billing");
        assert_eq!(e.timestamp.to_rfc3339(), "2025-12-31T00:00:00+00:00");
        assert_eq!(e.metadata.as_ref().expect("metadata")["user"], json!(7));

        let e = event(
            r#"{"message":"x","severity":"critical","@timestamp":1767139200000,"service":"s"}"#,
        );
        assert_eq!(e.level, Level::Fatal);
        assert_eq!(e.source.as_str(), "s");
        assert_eq!(e.timestamp.to_rfc3339(), "2025-12-31T00:00:00+00:00");

        let own = "0193d6b4-51e2-7c3a-9e0b-4f5b2a6c8d10";
        let e = event(&format!(
            r#"{{"id":"{own}","level":"INFO","message":"m","source":"x","correlationId":"c1","metadata":{{"k":1}}}}"#
        ));
        assert_eq!(e.id.to_string(), own);
        assert_eq!(e.correlation_id.as_deref(), Some("c1"));
        assert_eq!(e.metadata.as_ref().expect("metadata")["k"], json!(1));
    }

    #[test]
    fn what_the_producer_would_refuse_is_made_valid_and_flagged() {
        let e = event(r#"{"message":"m","level":"loud","timestamp":"2999-01-01T00:00:00Z"}"#);
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.timestamp, ctx(None).now);
        let md = e.metadata.expect("metadata");
        assert_eq!(md["originalLevel"], json!("loud"));
        assert_eq!(md["originalTimestamp"], json!("2999-01-01T00:00:00Z"));

        let e = event("nul \0 inside");
        assert_eq!(e.message.as_str(), "nul \u{FFFD} inside");

        let big = format!(r#"{{"message":"m","blob":"{}"}}"#, "x".repeat(20_000));
        let md = event(&big).metadata.expect("metadata");
        assert_eq!(md["metadataDropped"], json!(true));
        assert!(md.get("blob").is_none());

        let long = "é".repeat(MAX_MESSAGE_BYTES);
        assert!(event(&long).message.as_str().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn every_built_event_passes_the_producers_validation() {
        for text in [
            "plain",
            "{\"message\":\"\",\"level\":7}",
            "{\"msg\":{\"nested\":true},\"traceId\":5}",
            "{not json",
        ] {
            let e = event(text);
            let json = serde_json::to_value(&e).expect("serialise");
            LogEvent::from_json(json, log_common::ids::mint_event_id, ctx(None).now)
                .expect("valid");
        }
    }
}
