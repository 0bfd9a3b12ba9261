//! Loki's push API: `POST /producer/loki/api/v1/push`, answered 204 like Loki.
//!
//! Two encodings, chosen by `Content-Type` as Loki does:
//! - `application/x-protobuf`: a `logproto.PushRequest` compressed with snappy (block
//!   format), the default of Promtail, Alloy and Vector;
//! - `application/json`: `{"streams": [{"stream": {labels}, "values": [["<ns>",
//!   "<line>"], ["<ns>", "<line>", {structured metadata}]]}]}`, gzip accepted.
//!
//! Mapping: a `level`, `detected_level` or `severity` label gives the level, else the
//! line's leading keyword, else INFO; `service_name`, `service`, `app` or `job` gives
//! the source (`unknown_service` without one); structured metadata `trace_id` (or
//! `traceID`, `traceId`) gives the trace id; `metadata.labels` holds the other labels
//! and `metadata.structuredMetadata` the rest of the structured metadata.
//!
//! Like Loki, a push whose stream labels are malformed or over Loki's default limits is
//! refused whole (400); entries refused one by one (a timestamp out of range, a line too
//! long) get a 400 naming them while the other entries are stored.

use super::loki_push::PushRequest;
use super::{
    content_id, leading_level, level_named, publish_records, time_from_nanos, Record,
    UNKNOWN_SERVICE,
};
use crate::routes::ingest::{joined, IngestState, Outcome};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use log_common::domain::Level;
use log_common::error::ApiError;
use log_common::event::MAX_BATCH_BODY_BYTES;
use log_common::ids::timed_content_id;
use prost::Message;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// The protocol's name in metrics and in its records' content ids.
pub const PROTOCOL: &str = "loki";

/// Loki's default limits on a stream's labels (`max_label_names_per_series`,
/// `max_label_name_length`, `max_label_value_length`).
pub const MAX_LABELS: usize = 15;
pub const MAX_LABEL_NAME_BYTES: usize = 1024;
pub const MAX_LABEL_VALUE_BYTES: usize = 2048;

/// Labels that name the level, and the service, in the order they are looked for.
const LEVEL_LABELS: [&str; 3] = ["level", "detected_level", "severity"];
const SOURCE_LABELS: [&str; 4] = ["service_name", "service", "app", "job"];
const TRACE_KEYS: [&str; 3] = ["trace_id", "traceID", "traceId"];

/// How many refused entries a 400 names.
const NAMED_REFUSALS: usize = 5;

/// One stream of a push, whichever encoding it came in.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub labels: BTreeMap<String, String>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Nanoseconds since the epoch, or why the entry's time is not one.
    pub nanos: Result<u64, String>,
    pub line: String,
    pub structured_metadata: BTreeMap<String, String>,
}

/// `POST /producer/loki/api/v1/push`.
pub async fn push(
    req: HttpRequest,
    state: web::Data<IngestState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let streams = decode(&req, &body)?;
    let records = records_of(streams)?;
    let total = records.len();
    if total > 0 {
        let outcomes = publish_records(&req, &state, PROTOCOL, records).await?;
        if let Some(message) = refusals(&outcomes, total) {
            state.observe(PROTOCOL, started);
            return Err(ApiError::BadRequest(message));
        }
    }
    state.observe(PROTOCOL, started);
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /producer/loki/ready`: Vector's loki sink checks it before sending.
pub async fn ready() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ready")
}

/// The streams of a push body; 415 for another content type, 400 when it does not
/// decode, 413 when snappy would inflate it past the body limit.
pub fn decode(req: &HttpRequest, body: &[u8]) -> Result<Vec<Stream>, ApiError> {
    let mime = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" => decode_protobuf(body),
        "application/json" => decode_json(body),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/x-protobuf (snappy-compressed) or \
             application/json, got '{other}'"
        ))),
    }
}

/// A snappy-compressed `PushRequest`.
pub fn decode_protobuf(body: &[u8]) -> Result<Vec<Stream>, ApiError> {
    let inflated_len = snap::raw::decompress_len(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not snappy-compressed: {e}")))?;
    if inflated_len > MAX_BATCH_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the push inflates to {inflated_len} bytes; the limit is {MAX_BATCH_BODY_BYTES}"
        )));
    }
    let inflated = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not snappy-compressed: {e}")))?;
    let request = PushRequest::decode(inflated.as_slice())
        .map_err(|e| ApiError::BadRequest(format!("body is not a Loki PushRequest: {e}")))?;
    request
        .streams
        .into_iter()
        .map(|stream| {
            let labels = parse_labels(&stream.labels).map_err(|e| {
                ApiError::BadRequest(format!("stream labels '{}': {e}", stream.labels))
            })?;
            let entries = stream
                .entries
                .into_iter()
                .map(|entry| Entry {
                    nanos: entry
                        .timestamp
                        .ok_or_else(|| "timestamp: missing".to_owned())
                        .and_then(|t| nanos_of(t.seconds, t.nanos)),
                    line: entry.line,
                    structured_metadata: entry
                        .structured_metadata
                        .into_iter()
                        .map(|pair| (pair.name, pair.value))
                        .collect(),
                })
                .collect();
            Ok(Stream { labels, entries })
        })
        .collect()
}

fn nanos_of(seconds: i64, nanos: i32) -> Result<u64, String> {
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    u64::try_from(total)
        .ok()
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| format!("timestamp: {seconds} s {nanos} ns is out of range"))
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    stream: BTreeMap<String, String>,
    values: Vec<JsonEntry>,
}

/// `["<ns>", "<line>"]` or `["<ns>", "<line>", {structured metadata}]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonEntry {
    Plain(JsonTime, String),
    WithMetadata(JsonTime, String, BTreeMap<String, String>),
}

/// Loki sends nanoseconds as a string; a number is taken too.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonTime {
    Text(String),
    Number(Value),
}

impl JsonTime {
    fn nanos(&self) -> Result<u64, String> {
        let text = match self {
            JsonTime::Text(text) => text.clone(),
            JsonTime::Number(number) => number.to_string(),
        };
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .ok_or_else(|| {
                format!("timestamp: '{text}' is not nanoseconds since the epoch in range")
            })
    }
}

pub fn decode_json(body: &[u8]) -> Result<Vec<Stream>, ApiError> {
    let push: JsonPush = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body is not a Loki push: {e} (expected {{\"streams\": [{{\"stream\": {{labels}}, \
             \"values\": [[\"<ns>\", \"<line>\"]]}}]}})"
        ))
    })?;
    Ok(push
        .streams
        .into_iter()
        .map(|stream| Stream {
            labels: stream.stream,
            entries: stream
                .values
                .into_iter()
                .map(|value| {
                    let (time, line, structured_metadata) = match value {
                        JsonEntry::Plain(time, line) => (time, line, BTreeMap::new()),
                        JsonEntry::WithMetadata(time, line, metadata) => (time, line, metadata),
                    };
                    Entry {
                        nanos: time.nanos(),
                        line,
                        structured_metadata,
                    }
                })
                .collect(),
        })
        .collect())
}

/// A Prometheus label set as Loki writes it: `{name="value", …}`, values in double
/// quotes with `\\`, `\"`, `\n` and `\t` escapes.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.trim().chars().peekable();
    if chars.next() != Some('{') {
        return Err("a label set starts with '{'".to_owned());
    }
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'}') {
            chars.next();
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.peek().copied() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("a label name is [a-zA-Z_][a-zA-Z0-9_]*".to_owned());
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(format!("label '{name}': expected =\"value\""));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("label '{name}': the value is not closed")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    _ => return Err(format!("label '{name}': unknown escape in the value")),
                },
                Some(c) => value.push(c),
            }
        }
        if labels.insert(name.clone(), value).is_some() {
            return Err(format!("label '{name}' is given twice"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(',') => continue,
            Some('}') => break,
            _ => return Err(format!("label '{name}': expected ',' or '}}' after it")),
        }
    }
    if chars.any(|c| !c.is_whitespace()) {
        return Err("text after the closing '}'".to_owned());
    }
    Ok(labels)
}

/// Loki's default limits; the whole push is refused over them, as Loki does.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.is_empty() {
        return Err("a stream needs at least one label".to_owned());
    }
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels; the limit is {MAX_LABELS} per stream",
            labels.len()
        ));
    }
    for (name, value) in labels {
        if name.len() > MAX_LABEL_NAME_BYTES {
            return Err(format!(
                "label name '{}…' is over {MAX_LABEL_NAME_BYTES} bytes",
                name.chars().take(32).collect::<String>()
            ));
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(format!(
                "the value of label '{name}' is over {MAX_LABEL_VALUE_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

/// Every entry of the push in order, as a record or why it cannot be one; 400 for a
/// stream whose labels break the limits.
pub fn records_of(streams: Vec<Stream>) -> Result<Vec<Result<Record, String>>, ApiError> {
    let mut records = Vec::new();
    for (position, stream) in streams.into_iter().enumerate() {
        check_labels(&stream.labels)
            .map_err(|e| ApiError::BadRequest(format!("stream {position}: {e}")))?;
        // The stream's part of its entries' ids: every label, sorted, as sent.
        let stream_key = pairs_key(&stream.labels);
        let mut labels = stream.labels;
        let label_level = take_first(&mut labels, &LEVEL_LABELS, |v| level_named(v).is_some())
            .and_then(|v| level_named(&v));
        let source = take_first(&mut labels, &SOURCE_LABELS, |v| !v.trim().is_empty())
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
        let labels = Value::Object(
            labels
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
        for entry in stream.entries {
            records.push(record_of(entry, &stream_key, label_level, &source, &labels));
        }
    }
    Ok(records)
}

/// Takes out of `labels` the first of `names` whose value `fits`.
fn take_first(
    labels: &mut BTreeMap<String, String>,
    names: &[&str],
    fits: impl Fn(&str) -> bool,
) -> Option<String> {
    let name = names
        .iter()
        .find(|name| labels.get(**name).is_some_and(|v| fits(v)))?;
    labels.remove(*name)
}

/// Name–value pairs (sorted already, by the map) as bytes for an id: each piece
/// length-prefixed, so no two different sets give the same bytes.
fn pairs_key(pairs: &BTreeMap<String, String>) -> Vec<u8> {
    let mut key = Vec::new();
    for (name, value) in pairs {
        for piece in [name, value] {
            key.extend_from_slice(&(piece.len() as u64).to_be_bytes());
            key.extend_from_slice(piece.as_bytes());
        }
    }
    key
}

fn record_of(
    entry: Entry,
    stream_key: &[u8],
    label_level: Option<Level>,
    source: &str,
    labels: &Value,
) -> Result<Record, String> {
    let nanos = entry.nanos?;
    let timestamp = time_from_nanos(nanos)?;
    // Its stream, nanosecond, line and structured metadata: Loki likewise keeps one of
    // two entries with the same stream, time and line.
    let id = timed_content_id(
        content_id(
            PROTOCOL,
            &[
                stream_key,
                &nanos.to_be_bytes(),
                entry.line.as_bytes(),
                &pairs_key(&entry.structured_metadata),
            ],
        ),
        Some(timestamp),
    );
    let mut structured = entry.structured_metadata;
    let trace_id = TRACE_KEYS
        .iter()
        .find_map(|key| structured.remove(*key))
        .filter(|id| !id.is_empty());
    let mut metadata = Map::new();
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        metadata.insert("labels".into(), labels.clone());
    }
    if !structured.is_empty() {
        metadata.insert(
            "structuredMetadata".into(),
            Value::Object(
                structured
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            ),
        );
    }
    Ok(Record {
        id,
        level: label_level
            .or_else(|| leading_level(&entry.line))
            .unwrap_or(Level::Info),
        message: entry.line,
        source: source.to_owned(),
        timestamp: Some(timestamp),
        trace_id,
        metadata,
    })
}

/// A 400's message naming the refused entries (by their position among the push's
/// entries), or `None` when all were stored.
fn refusals(outcomes: &[(usize, Outcome)], total: usize) -> Option<String> {
    let refused: Vec<String> = outcomes
        .iter()
        .filter_map(|(index, outcome)| match outcome {
            Outcome::Invalid(errors) => Some(format!("entry {index}: {}", joined(errors))),
            _ => None,
        })
        .collect();
    if refused.is_empty() {
        return None;
    }
    let mut message = format!(
        "{} of {total} entries refused (the others are stored): ",
        refused.len()
    );
    message.push_str(&refused[..refused.len().min(NAMED_REFUSALS)].join("; "));
    if refused.len() > NAMED_REFUSALS {
        message.push_str("; …");
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::agents::loki_push::{
        EntryAdapter, LabelPairAdapter, StreamAdapter, Timestamp,
    };

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_sets_parse_as_loki_writes_them() {
        assert_eq!(
            parse_labels(r#"{job="api", level="error",  path="C:\\x \"q\"\n"}"#),
            Ok(labels(&[
                ("job", "api"),
                ("level", "error"),
                ("path", "C:\\x \"q\"\n")
            ]))
        );
        assert_eq!(parse_labels("{}"), Ok(BTreeMap::new()));
        for bad in [
            r#"job="api""#,
            r#"{job="api""#,
            r#"{job=api}"#,
            r#"{1job="a"}"#,
            r#"{job="a",job="b"}"#,
            r#"{job="a"} trailing"#,
            r#"{job="a\q"}"#,
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn level_source_trace_and_metadata_come_from_labels_and_the_line() {
        let streams = vec![
            Stream {
                labels: labels(&[
                    ("job", "nginx"),
                    ("app", "web"),
                    ("level", "warning"),
                    ("env", "prod"),
                ]),
                entries: vec![Entry {
                    nanos: Ok(1_700_000_000_000_000_007),
                    line: "ERROR upstream timed out".into(),
                    structured_metadata: labels(&[("trace_id", "abc"), ("user", "u1")]),
                }],
            },
            Stream {
                labels: labels(&[("env", "dev"), ("level", "unknown")]),
                entries: vec![
                    Entry {
                        nanos: Ok(1),
                        line: "[error] db down".into(),
                        structured_metadata: BTreeMap::new(),
                    },
                    Entry {
                        nanos: Ok(2),
                        line: "plain".into(),
                        structured_metadata: BTreeMap::new(),
                    },
                ],
            },
        ];
        let records: Vec<Record> = records_of(streams)
            .expect("labels fine")
            .into_iter()
            .map(|r| r.expect("valid"))
            .collect();
        assert_eq!(
            records[0].level,
            Level::Warn,
            "a level label beats the line"
        );
        assert_eq!(records[0].source, "web", "app comes before job");
        assert_eq!(records[0].trace_id.as_deref(), Some("abc"));
        assert_eq!(
            Value::Object(records[0].metadata.clone()),
            serde_json::json!({"labels": {"env": "prod", "job": "nginx"},
                "structuredMetadata": {"user": "u1"}})
        );
        assert_eq!(
            records[1].level,
            Level::Error,
            "no usable label: the line's keyword"
        );
        assert_eq!(records[1].source, UNKNOWN_SERVICE);
        assert_eq!(records[1].metadata["labels"]["level"], "unknown");
        assert_eq!(records[2].level, Level::Info);
    }

    #[test]
    fn an_entry_id_depends_on_its_stream_time_line_and_metadata_only() {
        let stream =
            |labels_: &[(&str, &str)], nanos: u64, line: &str, meta: &[(&str, &str)]| Stream {
                labels: labels(labels_),
                entries: vec![Entry {
                    nanos: Ok(nanos),
                    line: line.into(),
                    structured_metadata: labels(meta),
                }],
            };
        let id = |s: Stream| {
            records_of(vec![s]).expect("fine")[0]
                .clone()
                .expect("valid")
                .id
        };
        let base = id(stream(&[("job", "a"), ("env", "p")], 5, "x", &[("k", "v")]));
        assert_eq!(
            base,
            id(stream(&[("env", "p"), ("job", "a")], 5, "x", &[("k", "v")]))
        );
        assert_ne!(
            base,
            id(stream(&[("job", "a"), ("env", "q")], 5, "x", &[("k", "v")]))
        );
        assert_ne!(
            base,
            id(stream(&[("job", "a"), ("env", "p")], 6, "x", &[("k", "v")]))
        );
        assert_ne!(
            base,
            id(stream(&[("job", "a"), ("env", "p")], 5, "y", &[("k", "v")]))
        );
        assert_ne!(base, id(stream(&[("job", "a"), ("env", "p")], 5, "x", &[])));
    }

    #[test]
    fn labels_over_loki_limits_refuse_the_push() {
        let many: BTreeMap<String, String> =
            (0..16).map(|i| (format!("l{i}"), "v".to_owned())).collect();
        let long_value = labels(&[("job", &"v".repeat(MAX_LABEL_VALUE_BYTES + 1))]);
        for stream_labels in [many, long_value, BTreeMap::new()] {
            let streams = vec![Stream {
                labels: stream_labels,
                entries: vec![],
            }];
            assert!(matches!(records_of(streams), Err(ApiError::BadRequest(_))));
        }
    }

    fn push_bytes(seconds: i64) -> Vec<u8> {
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="api"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp { seconds, nanos: 5 }),
                    line: "hello".into(),
                    structured_metadata: vec![LabelPairAdapter {
                        name: "k".into(),
                        value: "v".into(),
                    }],
                }],
            }],
        };
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("compresses")
    }

    #[test]
    fn snappy_protobuf_decodes_and_bad_bodies_are_400s() {
        let streams = decode_protobuf(&push_bytes(1_700_000_000)).expect("decodes");
        assert_eq!(streams[0].labels, labels(&[("job", "api")]));
        assert_eq!(streams[0].entries[0].nanos, Ok(1_700_000_000_000_000_005));
        assert_eq!(
            streams[0].entries[0].structured_metadata,
            labels(&[("k", "v")])
        );
        let far = decode_protobuf(&push_bytes(i64::MAX / 2)).expect("decodes");
        assert!(far[0].entries[0].nanos.is_err(), "out of range");
        // Raw protobuf without snappy, and snappy around garbage.
        let raw = PushRequest::default().encode_to_vec();
        assert!(matches!(
            decode_protobuf(b"\xff\xff\xff\xff"),
            Err(ApiError::BadRequest(_))
        ));
        let garbage = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .expect("compresses");
        assert!(matches!(
            decode_protobuf(&garbage),
            Err(ApiError::BadRequest(_))
        ));
        assert!(decode_protobuf(&raw).map(|s| s.is_empty()).unwrap_or(true));
    }

    #[test]
    fn json_pushes_with_and_without_structured_metadata() {
        let body = br#"{"streams":[{"stream":{"job":"a"},"values":[["1700000000000000001","x"],
            ["1700000000000000002","y",{"trace_id":"t"}],[1700000000000000003,"z"]]}]}"#;
        let streams = decode_json(body).expect("decodes");
        let entries = &streams[0].entries;
        assert_eq!(entries[0].nanos, Ok(1_700_000_000_000_000_001));
        assert_eq!(entries[1].structured_metadata, labels(&[("trace_id", "t")]));
        assert_eq!(entries[2].nanos, Ok(1_700_000_000_000_000_003));
        let bad_time =
            decode_json(br#"{"streams":[{"stream":{"job":"a"},"values":[["soon","x"]]}]}"#)
                .expect("decodes");
        assert!(bad_time[0].entries[0].nanos.is_err());
        for bad in [
            &br#"{"streams":[{"stream":{"job":1},"values":[]}]}"#[..],
            br#"{"streams":[{"stream":{"job":"a"},"values":[["1"]]}]}"#,
            br#"{"stream":[]}"#,
            b"\xff",
        ] {
            assert!(matches!(decode_json(bad), Err(ApiError::BadRequest(_))));
        }
    }
}
