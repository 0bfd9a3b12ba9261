//! OTLP/HTTP logs: `POST /producer/v1/logs`, so an exporter whose endpoint is
//! `http://host:8081/producer` finds it by appending `/v1/logs` itself.
//!
//! Both encodings of the spec: `application/x-protobuf` (the exporters' default) and
//! `application/json` (OTLP's JSON: hex ids, `stringValue`-style values, enums as
//! numbers); `Content-Encoding: gzip` is undone by the server before the 16 MiB limit.
//! The answer is an `ExportLogsServiceResponse` in the request's encoding; records
//! refused one by one are counted in its `partial_success` and the rest are stored.
//!
//! Mapping (README, "Point your agent at us"):
//! - `body` → `message`; a body that is not a string is written as JSON text; an empty
//!   body takes the `event_name`.
//! - `severity_number` → level by ranges (1–4 TRACE … 21–24 FATAL), else
//!   `severity_text`, else INFO.
//! - resource `service.name` → `source` (`unknown_service` without one; a name that is
//!   not a string stays in `metadata.resource`).
//! - `time_unix_nano`, or `observed_time_unix_nano` when it is 0 → `timestamp`.
//! - `trace_id` → `traceId`.
//! - `metadata`: `attributes` (the record's), `resource` (the resource's attributes
//!   but `service.name`), `scope` (`name`, `version`, `attributes`), `spanId`, `flags`,
//!   `severityNumber`, `severityText` (when it is not just the level's name),
//!   `eventName`; each only when set.

use super::{
    content_id, level_named, publish_records, reshape_errors, time_from_nanos, Record,
    UNKNOWN_SERVICE,
};
use crate::routes::ingest::{joined, IngestState, Outcome};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use log_common::domain::Level;
use log_common::error::ApiError;
use log_common::ids::timed_content_id;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{Map, Value};
use std::time::Instant;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The protocol's name in metrics and in its records' content ids.
pub const PROTOCOL: &str = "otlp";

/// How many refused records a partial success names in its message.
const NAMED_REFUSALS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From `Content-Type`; 415 for anything but the two encodings of the spec.
    pub fn of(req: &HttpRequest) -> Result<Encoding, ApiError> {
        let mime = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim();
        if mime.eq_ignore_ascii_case(PROTOBUF) {
            Ok(Encoding::Protobuf)
        } else if mime.eq_ignore_ascii_case(JSON) {
            Ok(Encoding::Json)
        } else {
            Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type must be {PROTOBUF} or {JSON}, got '{mime}'"
            )))
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }

    /// The request, or a 400 saying why it does not decode.
    pub fn decode(self, body: &[u8]) -> Result<ExportLogsServiceRequest, ApiError> {
        match self {
            Encoding::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| {
                ApiError::BadRequest(format!("body is not an OTLP ExportLogsServiceRequest: {e}"))
            }),
            Encoding::Json => serde_json::from_slice(body).map_err(|e| {
                ApiError::BadRequest(format!(
                    "body is not an OTLP/JSON ExportLogsServiceRequest: {e}"
                ))
            }),
        }
    }

    fn encode(self, response: &ExportLogsServiceResponse) -> Vec<u8> {
        match (self, &response.partial_success) {
            (Encoding::Protobuf, _) => response.encode_to_vec(),
            // A full success is `{}`, not `{"partialSuccess": null}`.
            (Encoding::Json, None) => b"{}".to_vec(),
            (Encoding::Json, Some(_)) => serde_json::to_vec(response).unwrap_or_default(),
        }
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP gives every 4xx and 5xx (its `details`
/// are left empty).
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The gRPC code of an HTTP status, as the OTLP spec pairs them.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// Middleware (via `from_fn`) for `/producer/v1`: our error answers as a
/// `google.rpc.Status` in the request's encoding (protobuf unless it sent JSON).
pub async fn status_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?;
    reshape_errors(response, |req, status, message| {
        let body = Status {
            code: grpc_code(status),
            message: message.to_owned(),
        };
        match Encoding::of(req) {
            Ok(Encoding::Json) => (
                HeaderValue::from_static(JSON),
                serde_json::to_vec(&body).unwrap_or_default(),
            ),
            _ => (HeaderValue::from_static(PROTOBUF), body.encode_to_vec()),
        }
    })
    .await
}

/// `POST /producer/v1/logs`.
pub async fn export(
    req: HttpRequest,
    state: web::Data<IngestState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let encoding = Encoding::of(&req)?;
    let request = encoding.decode(&body)?;
    let records = records_of(request);
    let total = records.len();
    let mut response = ExportLogsServiceResponse::default();
    // A request without records is valid in OTLP: nothing to store, nothing refused.
    if total > 0 {
        let outcomes = publish_records(&req, &state, PROTOCOL, records).await?;
        response.partial_success = partial_success(&outcomes, total);
    }
    state.observe(PROTOCOL, started);
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        ))
        .body(encoding.encode(&response)))
}

/// `None` when every record was stored; else how many were not and why, the first few
/// by their position in the request.
fn partial_success(
    outcomes: &[(usize, Outcome)],
    total: usize,
) -> Option<ExportLogsPartialSuccess> {
    let refused: Vec<String> = outcomes
        .iter()
        .filter_map(|(index, outcome)| match outcome {
            Outcome::Stored(_) => None,
            Outcome::Invalid(errors) => Some(format!("log record {index}: {}", joined(errors))),
            Outcome::Undelivered(_, reason) => {
                Some(format!("log record {index}: not delivered: {reason}"))
            }
        })
        .collect();
    if refused.is_empty() {
        return None;
    }
    let mut message = format!("{} of {total} log records refused: ", refused.len());
    message.push_str(&refused[..refused.len().min(NAMED_REFUSALS)].join("; "));
    if refused.len() > NAMED_REFUSALS {
        message.push_str("; …");
    }
    Some(ExportLogsPartialSuccess {
        rejected_log_records: refused.len() as i64,
        error_message: message,
    })
}

/// Every log record of the request in order, as a record or why it cannot be one.
pub fn records_of(request: ExportLogsServiceRequest) -> Vec<Result<Record, String>> {
    let mut records = Vec::new();
    for resource_logs in request.resource_logs {
        let resource_bytes = resource_logs
            .resource
            .clone()
            .map(|mut resource| {
                in_key_order(&mut resource.attributes);
                resource.encode_to_vec()
            })
            .unwrap_or_default();
        let mut resource = attributes_json(
            resource_logs
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        // `service.name` is the source; the resource's other attributes stay as
        // metadata.
        let source = match resource.remove("service.name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name,
            Some(other) => {
                resource.insert("service.name".to_owned(), other);
                UNKNOWN_SERVICE.to_owned()
            }
            None => UNKNOWN_SERVICE.to_owned(),
        };
        for scope_logs in resource_logs.scope_logs {
            let scope_bytes = scope_logs
                .scope
                .clone()
                .map(|mut scope| {
                    in_key_order(&mut scope.attributes);
                    scope.encode_to_vec()
                })
                .unwrap_or_default();
            let scope = scope_json(scope_logs.scope);
            for mut log_record in scope_logs.log_records {
                let id = identity(&resource_bytes, &scope_bytes, &mut log_record);
                records.push(record_of(id, log_record, &source, &resource, &scope));
            }
        }
    }
    records
}

/// Attributes sorted by key, nested maps too, as an id hashes them: OTLP attributes are
/// a map, and an agent may send one record's attributes in another order each time
/// (the Collector's `json_parser` follows Go's random map order), so the same record
/// would otherwise get another id when it is read again.
fn in_key_order(attributes: &mut [KeyValue]) {
    attributes.sort_by(|a, b| a.key.cmp(&b.key));
    for attribute in attributes {
        if let Some(value) = attribute.value.as_mut() {
            value_in_key_order(value);
        }
    }
}

fn value_in_key_order(value: &mut AnyValue) {
    match value.value.as_mut() {
        Some(any_value::Value::KvlistValue(list)) => in_key_order(&mut list.values),
        Some(any_value::Value::ArrayValue(array)) => {
            array.values.iter_mut().for_each(value_in_key_order);
        }
        _ => {}
    }
}

/// A record's id: its resource, scope and itself, re-encoded (the same bytes whichever
/// encoding the request came in, attributes in key order). A record with a time of its own is hashed without
/// its observed time: that is when the agent read it, so a Collector that reads a file
/// again after a restart (its default without a storage extension) would otherwise
/// send every record under a new id.
/// (The record is hashed in place, its observed time put back after.)
fn identity(resource: &[u8], scope: &[u8], record: &mut LogRecord) -> uuid::Uuid {
    in_key_order(&mut record.attributes);
    if let Some(body) = record.body.as_mut() {
        value_in_key_order(body);
    }
    let observed = record.observed_time_unix_nano;
    if record.time_unix_nano != 0 {
        record.observed_time_unix_nano = 0;
    }
    let id = content_id(PROTOCOL, &[resource, scope, &record.encode_to_vec()]);
    record.observed_time_unix_nano = observed;
    id
}

fn record_of(
    id: uuid::Uuid,
    log: LogRecord,
    source: &str,
    resource: &Map<String, Value>,
    scope: &Map<String, Value>,
) -> Result<Record, String> {
    let message = match log.body.and_then(|b| b.value) {
        Some(any_value::Value::StringValue(text)) if !text.is_empty() => text,
        Some(other) if !matches!(other, any_value::Value::StringValue(_)) => {
            serde_json::to_string(&any_json(Some(other))).unwrap_or_default()
        }
        _ if !log.event_name.is_empty() => log.event_name.clone(),
        _ => return Err("body: the log record has no body and no event_name".to_owned()),
    };
    let nanos = match log.time_unix_nano {
        0 => log.observed_time_unix_nano,
        set => set,
    };
    let timestamp = match nanos {
        0 => None,
        set => Some(time_from_nanos(set).map_err(|e| format!("time_unix_nano: {e}"))?),
    };

    let mut metadata = Map::new();
    let attributes = attributes_json(log.attributes);
    insert_object(&mut metadata, "attributes", attributes);
    insert_object(&mut metadata, "resource", resource.clone());
    insert_object(&mut metadata, "scope", scope.clone());
    if is_valid_id(&log.span_id) {
        metadata.insert("spanId".into(), Value::String(hex(&log.span_id)));
    }
    if log.flags != 0 {
        metadata.insert("flags".into(), Value::from(log.flags));
    }
    let level = level_of(log.severity_number, &log.severity_text);
    // The text only when it says more than the level does (`WARN` for WARN does not).
    if !log.severity_text.is_empty() && !log.severity_text.eq_ignore_ascii_case(level.as_str()) {
        metadata.insert(
            "severityText".into(),
            Value::String(log.severity_text.clone()),
        );
    }
    if log.severity_number != 0 {
        metadata.insert("severityNumber".into(), Value::from(log.severity_number));
    }
    if !log.event_name.is_empty() {
        metadata.insert("eventName".into(), Value::String(log.event_name));
    }
    Ok(Record {
        // The record's time (or, without one, the time the agent read it) in front.
        id: timed_content_id(id, timestamp),
        level,
        message,
        source: source.to_owned(),
        timestamp,
        trace_id: is_valid_id(&log.trace_id).then(|| hex(&log.trace_id)),
        metadata,
    })
}

/// The spec's ranges of `severity_number`; outside them, the text; else INFO.
pub fn level_of(severity_number: i32, severity_text: &str) -> Level {
    match severity_number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=20 => Level::Error,
        21..=24 => Level::Fatal,
        _ => level_named(severity_text).unwrap_or(Level::Info),
    }
}

/// OTLP: an id of all zeroes, or of no bytes, is no id.
fn is_valid_id(id: &[u8]) -> bool {
    id.iter().any(|b| *b != 0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn insert_object(into: &mut Map<String, Value>, key: &str, object: Map<String, Value>) {
    if !object.is_empty() {
        into.insert(key.to_owned(), Value::Object(object));
    }
}

fn scope_json(scope: Option<InstrumentationScope>) -> Map<String, Value> {
    let mut json = Map::new();
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            json.insert("name".into(), Value::String(scope.name));
        }
        if !scope.version.is_empty() {
            json.insert("version".into(), Value::String(scope.version));
        }
        insert_object(&mut json, "attributes", attributes_json(scope.attributes));
    }
    json
}

fn attributes_json(attributes: Vec<KeyValue>) -> Map<String, Value> {
    attributes
        .into_iter()
        .map(|kv| (kv.key, any_json(kv.value.and_then(|v| v.value))))
        .collect()
}

/// An OTLP value as plain JSON: maps become objects, bytes base64 text, and a float
/// JSON cannot hold (NaN, ±∞) its name.
fn any_json(value: Option<any_value::Value>) -> Value {
    use any_value::Value as Any;
    match value {
        None | Some(Any::StringValueStrindex(_)) => Value::Null,
        Some(Any::StringValue(s)) => Value::String(s),
        Some(Any::BoolValue(b)) => Value::Bool(b),
        Some(Any::IntValue(i)) => Value::from(i),
        Some(Any::DoubleValue(f)) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Some(Any::BytesValue(bytes)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(Any::ArrayValue(array)) => Value::Array(
            array
                .values
                .into_iter()
                .map(|v: AnyValue| any_json(v.value))
                .collect(),
        ),
        Some(Any::KvlistValue(list)) => Value::Object(attributes_json(list.values)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::KeyValueList;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn string(s: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.to_owned())),
        })
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value,
            ..KeyValue::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", string("checkout"))],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.payments".to_owned(),
                        version: "1.2".to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    #[test]
    fn severity_numbers_map_by_ranges_then_the_text_then_info() {
        let cases = [
            (1, "", Level::Trace),
            (4, "", Level::Trace),
            (5, "", Level::Debug),
            (9, "", Level::Info),
            (13, "", Level::Warn),
            (16, "", Level::Warn),
            (17, "", Level::Error),
            (21, "", Level::Fatal),
            (24, "", Level::Fatal),
            (0, "warning", Level::Warn),
            (0, "CRITICAL", Level::Fatal),
            (0, "", Level::Info),
            (0, "verbose", Level::Info),
            (99, "error", Level::Error),
        ];
        for (number, text, level) in cases {
            assert_eq!(level_of(number, text), level, "{number} {text}");
        }
    }

    #[test]
    fn a_record_maps_to_our_fields_and_the_documented_metadata() {
        let log = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_123,
            observed_time_unix_nano: 1_800_000_000_000_000_000,
            severity_number: 17,
            severity_text: "ERROR".to_owned(),
            body: string("payment declined"),
            attributes: vec![
                kv(
                    "order.id",
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(42)),
                    }),
                ),
                kv(
                    "card",
                    Some(AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![kv("brand", string("visa"))],
                        })),
                    }),
                ),
            ],
            trace_id: (1..=16).collect(),
            span_id: vec![0xab; 8],
            flags: 1,
            ..LogRecord::default()
        };
        let records = records_of(request(vec![log]));
        let record = records[0].clone().expect("valid");
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.message, "payment declined");
        assert_eq!(record.source, "checkout");
        assert_eq!(
            record.trace_id.as_deref(),
            Some("0102030405060708090a0b0c0d0e0f10")
        );
        assert_eq!(
            record.timestamp,
            Some(time_from_nanos(1_700_000_000_000_000_123).expect("in range"))
        );
        assert_eq!(
            Value::Object(record.metadata),
            serde_json::json!({
                "attributes": {"order.id": 42, "card": {"brand": "visa"}},
                "scope": {"name": "app.payments", "version": "1.2"},
                "spanId": "abababababababab",
                "flags": 1,
                "severityNumber": 17
            })
        );
    }

    #[test]
    fn bodies_times_and_ids_at_their_edges() {
        let structured = LogRecord {
            observed_time_unix_nano: 5,
            body: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(
                    opentelemetry_proto::tonic::common::v1::ArrayValue {
                        values: vec![
                            string("a").expect("some"),
                            AnyValue {
                                value: Some(any_value::Value::DoubleValue(f64::NAN)),
                            },
                        ],
                    },
                )),
            }),
            trace_id: vec![0; 16],
            ..LogRecord::default()
        };
        let named_event = LogRecord {
            event_name: "session.start".to_owned(),
            ..LogRecord::default()
        };
        let empty = LogRecord::default();
        let far = LogRecord {
            time_unix_nano: u64::MAX,
            body: string("x"),
            ..LogRecord::default()
        };
        let records = records_of(request(vec![structured, named_event, empty, far]));
        let first = records[0].clone().expect("valid");
        assert_eq!(first.message, r#"["a","NaN"]"#);
        assert_eq!(first.timestamp, Some(time_from_nanos(5).expect("in range")));
        assert_eq!(first.trace_id, None, "an all-zero trace id is none");
        let second = records[1].clone().expect("valid");
        assert_eq!(second.message, "session.start");
        assert_eq!(second.timestamp, None, "no time: the receive time");
        assert!(records[2].clone().expect_err("no body").starts_with("body"));
        assert!(records[3]
            .clone()
            .expect_err("range")
            .starts_with("time_unix_nano"));
    }

    #[test]
    fn a_record_has_the_same_id_in_either_encoding_and_another_when_anything_differs() {
        let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
            "scopeLogs":[{"logRecords":[{"timeUnixNano":"1700000000000000000","body":{"stringValue":"a"}},
            {"timeUnixNano":"1700000000000000001","body":{"stringValue":"a"}}]}]}]}"#;
        let request = Encoding::Json.decode(json.as_bytes()).expect("decodes");
        let again = Encoding::Protobuf
            .decode(&request.encode_to_vec())
            .expect("decodes");
        let ids = |request| -> Vec<uuid::Uuid> {
            records_of(request)
                .into_iter()
                .map(|r| r.expect("valid").id)
                .collect()
        };
        let first = ids(request);
        assert_eq!(first, ids(again), "JSON and protobuf give the same ids");
        assert_ne!(first[0], first[1], "a nanosecond apart");
        // The content's digest behind the record's own millisecond.
        assert_eq!(first[0].get_version_num(), 8);
        assert_eq!(
            log_common::ids::id_time_millis(first[0]),
            Some(1_700_000_000_000)
        );
    }

    #[test]
    fn attributes_in_another_order_are_the_same_record() {
        let pair = |key: &str, value: any_value::Value| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        };
        let text = |s: &str| any_value::Value::StringValue(s.to_owned());
        let nested = |pairs: Vec<KeyValue>| {
            any_value::Value::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
                values: pairs,
            })
        };
        let record = |attributes| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000,
            body: string("GET /health 200"),
            attributes,
            ..LogRecord::default()
        };
        let id = |record| {
            records_of(request(vec![record]))[0]
                .as_ref()
                .expect("valid")
                .id
        };
        let one = record(vec![
            pair("level", text("info")),
            pair(
                "http",
                nested(vec![
                    pair("method", text("GET")),
                    pair("status", text("200")),
                ]),
            ),
            pair("time", text("t")),
        ]);
        let other = record(vec![
            pair("time", text("t")),
            pair(
                "http",
                nested(vec![
                    pair("status", text("200")),
                    pair("method", text("GET")),
                ]),
            ),
            pair("level", text("info")),
        ]);
        assert_eq!(id(one), id(other));
        let changed = record(vec![pair("level", text("warn")), pair("time", text("t"))]);
        assert_ne!(
            id(changed),
            id(record(vec![
                pair("level", text("info")),
                pair("time", text("t"))
            ]))
        );
    }

    #[test]
    fn a_record_read_again_later_has_the_same_id_when_it_has_a_time_of_its_own() {
        let record = |time_unix_nano, observed_time_unix_nano| LogRecord {
            time_unix_nano,
            observed_time_unix_nano,
            body: string("GET /health 200"),
            ..LogRecord::default()
        };
        let id = |record| {
            let records = records_of(request(vec![record]));
            records[0].as_ref().expect("valid").id
        };
        let first_read = id(record(1_700_000_000_000_000_000, 1_800_000_000_000_000_000));
        let read_again = id(record(1_700_000_000_000_000_000, 1_800_000_000_500_000_000));
        assert_eq!(first_read, read_again, "the observed time is left out");
        assert_ne!(
            first_read,
            id(record(1_700_000_000_000_000_001, 1_800_000_000_000_000_000)),
            "another time is another record"
        );
        // Without a time of its own, the observed time is the record's only time: two
        // reads at different times are two records.
        assert_ne!(
            id(record(0, 1_800_000_000_000_000_000)),
            id(record(0, 1_800_000_000_500_000_000))
        );
    }

    #[test]
    fn without_service_name_the_source_is_unknown_service() {
        let mut request = request(vec![LogRecord {
            body: string("x"),
            ..LogRecord::default()
        }]);
        request.resource_logs[0].resource = None;
        let record = records_of(request)[0].clone().expect("valid");
        assert_eq!(record.source, UNKNOWN_SERVICE);
    }

    #[test]
    fn the_json_encoding_reads_hex_ids_and_string_times() {
        let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
            "scopeLogs":[{"scope":{"name":"s"},"logRecords":[{"timeUnixNano":"1700000000000000000",
            "severityNumber":13,"body":{"stringValue":"slow"},"traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","attributes":[{"key":"n","value":{"intValue":"7"}}]}]}]}]}"#;
        let request = Encoding::Json.decode(body.as_bytes()).expect("decodes");
        let record = records_of(request)[0].clone().expect("valid");
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.source, "web");
        assert_eq!(
            record.trace_id.as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(record.metadata["attributes"]["n"], 7);
        assert!(Encoding::Json.decode(b"{\"resourceLogs\": 3}").is_err());
        assert!(Encoding::Protobuf.decode(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_partial_success_counts_and_names_the_refused_records() {
        let outcomes = vec![
            (0, Outcome::Stored(uuid::Uuid::nil())),
            (
                1,
                Outcome::Invalid(vec![log_common::event::FieldError::new(
                    "message", "too long",
                )]),
            ),
        ];
        let partial = partial_success(&outcomes, 2).expect("one refused");
        assert_eq!(partial.rejected_log_records, 1);
        assert_eq!(
            partial.error_message,
            "1 of 2 log records refused: log record 1: message: too long"
        );
        assert_eq!(partial_success(&outcomes[..1], 1), None);
    }
}
