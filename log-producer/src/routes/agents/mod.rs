//! The protocols of the log agents people already run: OTLP/HTTP logs, the
//! Elasticsearch bulk API and Loki's push API.
//!
//! Each is an adapter, not a pipeline of its own: it decodes its wire format into
//! [`Record`]s, which become our event's JSON form and take the path of `/batch`
//! ([`publish_many`](super::ingest::publish_many): the rate limit counted in records,
//! the breaker, validation, Kafka), and it answers in its protocol's shape.
//!
//! A record that does not carry an id of its own gets a UUID v5 over its content
//! ([`content_id`]), so an agent that sends a request again after a timeout stores each
//! record once. When the record has a time, its millisecond replaces the id's first 48
//! bits ([`log_common::ids::timed_content_id`]): the consumer finds a copy of such an
//! event by its time, with no id memory of its own. Each adapter hashes its protocol's own canonical form (OTLP: the
//! resource, scope and record re-encoded as protobuf; Loki: the sorted labels, the
//! nanosecond, the line and the sorted structured metadata; a bulk document: its index
//! and bytes), never a JSON rendering, which would cost more than the rest of the
//! request. The consequence, documented in the README: two records with the same
//! stream or resource, the same nanosecond, line and attributes are one record.

pub mod elasticsearch;
pub mod loki;
pub mod loki_push;
pub mod otlp;

use super::ingest::{publish_many, IngestState, Outcome};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use log_common::domain::Level;
use log_common::error::ApiError;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use uuid::Uuid;

/// The source of a record whose agent names none: what OpenTelemetry SDKs and Loki
/// call a service that did not say its name.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// Records one agent request may carry. Agents batch by bytes (Promtail and Vector send
/// up to 1 MB), so a batch of short lines holds far more than `/batch`'s 10,000 events;
/// memory stays bounded by the 16 MiB body limit and admission.
pub const MAX_AGENT_RECORDS: usize = 100_000;

/// The path of an OTLP or Loki request's records: [`publish_many`] of their event
/// JSON, then a 503 with `Retry-After` when Kafka did not take every valid one. Those
/// agents send a whole request again after a 5xx and never after a partial answer;
/// the records Kafka did take have content ids and are stored once however often the
/// request comes back. (The Elasticsearch bulk answers per item instead.)
pub async fn publish_records(
    req: &HttpRequest,
    state: &IngestState,
    protocol: &str,
    records: Vec<Result<Record, String>>,
) -> Result<Vec<(usize, Outcome)>, ApiError> {
    let total = records.len();
    let items = records
        .into_iter()
        .enumerate()
        .map(|(index, record)| (index, record.map(Record::into_event_json)))
        .collect();
    let outcomes = publish_many(req, state, protocol, items, MAX_AGENT_RECORDS).await?;
    let undelivered = outcomes.iter().find_map(|(_, outcome)| match outcome {
        Outcome::Undelivered(_, reason) => Some(reason.clone()),
        _ => None,
    });
    match undelivered {
        Some(reason) => Err(state.unavailable_because(reason, total)),
        None => Ok(outcomes),
    }
}

/// The namespace of the ids derived from a record's content (fixed: changing it would
/// give a retried record a new id).
const CONTENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c0f_7a3e_52d1_4b8e_9a47_0e5c_3f21_d9b4);

/// A UUID v5 over a record's canonical content: the protocol's name, then each part
/// length-prefixed, so no two different part lists hash the same bytes.
pub fn content_id(protocol: &str, parts: &[&[u8]]) -> Uuid {
    let mut name = NameHasher::new(protocol);
    for part in parts {
        name.0.update((part.len() as u64).to_be_bytes());
        name.0.update(part);
    }
    name.finish()
}

/// The SHA-1 of a v5 UUID's namespace and name, fed piece by piece. `uuid`'s own v5
/// takes the name whole and uses a portable SHA-1; this one uses the CPU's SHA
/// instructions where it has them, and the ids are the same (`new_v5` in the tests).
struct NameHasher(Sha1);

impl NameHasher {
    fn new(protocol: &str) -> Self {
        let mut hasher = Sha1::new();
        hasher.update(CONTENT_ID_NAMESPACE.as_bytes());
        hasher.update(protocol.as_bytes());
        NameHasher(hasher)
    }

    fn finish(self) -> Uuid {
        let digest = self.0.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_sha1_bytes(bytes).into_uuid()
    }
}

/// One record read from an agent's request, in our event's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The id the agent gave the record (an Elasticsearch `_id`), or else one derived
    /// from its content ([`content_id`]).
    pub id: Uuid,
    pub level: Level,
    pub message: String,
    pub source: String,
    /// `None`: the producer's receive time.
    pub timestamp: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
    pub metadata: Map<String, Value>,
}

impl Record {
    /// Our event's JSON form; validation (lengths, the future bound) is that of every
    /// route.
    pub fn into_event_json(self) -> Value {
        let mut event = Map::new();
        event.insert("id".into(), Value::String(self.id.to_string()));
        event.insert("level".into(), Value::String(self.level.as_str().into()));
        event.insert("message".into(), Value::String(self.message));
        event.insert("source".into(), Value::String(self.source));
        if let Some(timestamp) = self.timestamp {
            event.insert(
                "timestamp".into(),
                Value::String(timestamp.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            );
        }
        if let Some(trace_id) = self.trace_id {
            event.insert("traceId".into(), Value::String(trace_id));
        }
        if !self.metadata.is_empty() {
            event.insert("metadata".into(), Value::Object(self.metadata));
        }
        Value::Object(event)
    }
}

/// A time in nanoseconds since the Unix epoch, or why it is not one we can store.
pub fn time_from_nanos(nanos: u64) -> Result<DateTime<Utc>, String> {
    i64::try_from(nanos)
        .map(DateTime::from_timestamp_nanos)
        .map_err(|_| format!("{nanos} ns since the epoch is out of range"))
}

/// The level a line starts with (`ERROR …`, `[warn] …`, `E: …`), the way Loki guesses
/// one when no label names it; `None` when the first word is not a level.
pub fn leading_level(line: &str) -> Option<Level> {
    let word = line
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == ':' || c == ']' || c == '|')
        .find(|w| !w.trim_start_matches('[').is_empty())?
        .trim_start_matches('[');
    word.parse().ok()
}

/// A level named by text an agent sent (`severity_text`, a label, a document field),
/// any case and our aliases; `None` when it names none.
pub fn level_named(text: &str) -> Option<Level> {
    text.trim().parse().ok()
}

/// Rewrites an error answer in our error JSON (every 4xx and 5xx of the routes and of
/// the key and admission checks before them) into a protocol's own error shape, which
/// its agents read: `shape` gets the status and our message and gives the content type
/// and body. Headers such as `Retry-After` are kept; any other answer passes as it is.
pub async fn reshape_errors<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
    shape: impl FnOnce(&HttpRequest, StatusCode, &str) -> (HeaderValue, Vec<u8>),
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(response.map_into_boxed_body());
    }
    let (req, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("error body unreadable"))?;
    let ours = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
        v.get("message")
            .and_then(Value::as_str)
            .filter(|_| v.get("error").is_some_and(Value::is_string))
            .map(str::to_owned)
    });
    let Some(message) = ours else {
        let response = head.set_body(BoxBody::new(bytes));
        return Ok(ServiceResponse::new(req, response));
    };
    let (content_type, body) = shape(&req, status, &message);
    // A new answer, not the old one with a new body: the old one still carries its
    // error, from which the service's outer error middleware would rebuild our JSON.
    let mut answer = HttpResponse::build(status);
    for (name, value) in head.headers() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            answer.append_header((name.clone(), value.clone()));
        }
    }
    answer.insert_header((CONTENT_TYPE, content_type));
    Ok(ServiceResponse::new(req, answer.body(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_id_depends_on_every_part_and_on_where_parts_end() {
        let id = content_id("loki", &[b"{job=\"a\"}", b"1", b"line"]);
        assert_eq!(id, content_id("loki", &[b"{job=\"a\"}", b"1", b"line"]));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, content_id("otlp", &[b"{job=\"a\"}", b"1", b"line"]));
        assert_ne!(id, content_id("loki", &[b"{job=\"a\"}", b"1", b"line!"]));
        assert_ne!(id, content_id("loki", &[b"{job=\"a\"}", b"2", b"line"]));
        // Moving a byte from one part to the next changes the id.
        assert_ne!(
            content_id("loki", &[b"ab", b"c"]),
            content_id("loki", &[b"a", b"bc"])
        );
    }

    #[test]
    fn a_record_becomes_our_events_json_with_nanoseconds() {
        let id = Uuid::new_v4();
        let record = Record {
            id,
            level: Level::Warn,
            message: "m".to_owned(),
            source: "svc".to_owned(),
            timestamp: Some(time_from_nanos(1_700_000_000_000_000_001).expect("in range")),
            trace_id: Some("t".to_owned()),
            metadata: Map::new(),
        };
        assert_eq!(
            record.into_event_json(),
            serde_json::json!({"id": id.to_string(), "level": "WARN", "message": "m",
                "source": "svc", "timestamp": "2023-11-14T22:13:20.000000001Z", "traceId": "t"})
        );
    }

    #[test]
    fn leading_levels_as_loki_guesses_them() {
        assert_eq!(leading_level("ERROR disk full"), Some(Level::Error));
        assert_eq!(leading_level("  [warn] slow"), Some(Level::Warn));
        assert_eq!(leading_level("fatal: out of memory"), Some(Level::Fatal));
        assert_eq!(leading_level("debug| x"), Some(Level::Debug));
        assert_eq!(leading_level("user ERROR later"), None);
        assert_eq!(leading_level(""), None);
    }

    #[test]
    fn nanosecond_times_keep_their_nanoseconds_or_say_why_not() {
        let t = time_from_nanos(1_700_000_000_123_456_789).expect("in range");
        assert_eq!(
            t.to_rfc3339_opts(SecondsFormat::Nanos, true),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert!(time_from_nanos(u64::MAX).is_err());
    }
}
