//! The log event: parsing, validation and normalisation as the contract pins them.
//!
//! [`LogEvent`] is the one form an event has from the producer's request to the
//! gateway's answer: its fields are the newtypes of [`crate::domain`], so it can only
//! hold valid values, and its OpenAPI schema is the ingest endpoints' request body.
//!
//! Parsing a request works on a `serde_json::Value` rather than through serde so that
//! every rejection can name the field and say what was wrong with it (a derived
//! struct would stop at the first type error with serde's wording); the rules
//! themselves are the newtypes' `parse`, which serde uses too.

use crate::domain::NUL_MESSAGE;
pub use crate::domain::{
    EventId, Level, Message, Source, UnknownLevel, MAX_MESSAGE_BYTES, MAX_SOURCE_CHARS,
};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Largest accepted `metadata`, serialised, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Longest accepted correlation, request or trace id, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Largest accepted body of `/ingest`.
pub const MAX_SINGLE_BODY_BYTES: usize = 1024 * 1024;
/// Most events in one `/batch` or `/bulk` request.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest accepted body of `/batch` or `/bulk` (after decompression).
pub const MAX_BATCH_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One field that failed validation; appears in the error JSON's `errors` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated, normalised log event: what clients send (the schema of the ingest
/// request bodies), what goes to Kafka and what the gateway returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    /// UUID; assigned by the producer (time-ordered v7) when absent. Always present
    /// in answers.
    #[schema(value_type = Uuid, required = false)]
    pub id: EventId,
    /// TRACE, DEBUG, INFO, WARN, ERROR or FATAL. Also accepted: any case, and the
    /// aliases `warning`, `err`, `critical`, `crash` and `panic`.
    #[schema(example = "ERROR")]
    pub level: Level,
    /// Not blank; at most 32 KiB (UTF-8).
    #[schema(
        value_type = String,
        example = "Database connection failed",
        min_length = 1,
        max_length = 32768
    )]
    pub message: Message,
    /// Not blank; at most 100 characters.
    #[schema(value_type = String, example = "user-service", min_length = 1, max_length = 100)]
    pub source: Source,
    /// RFC 3339, or zone-less `2024-01-01T00:00:00` read as UTC; absent means the
    /// producer's receive time. Always RFC 3339 in UTC in answers.
    #[serde(serialize_with = "serialize_utc")]
    #[schema(required = false)]
    pub timestamp: DateTime<Utc>,
    /// Any JSON object, at most 16 KiB serialised.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Also accepted as `correlation_id`.
    #[serde(skip_serializing_if = "Option::is_none", alias = "correlation_id")]
    pub correlation_id: Option<String>,
    /// Also accepted as `request_id`.
    #[serde(skip_serializing_if = "Option::is_none", alias = "request_id")]
    pub request_id: Option<String>,
    /// Also accepted as `trace_id`.
    #[serde(skip_serializing_if = "Option::is_none", alias = "trace_id")]
    pub trace_id: Option<String>,
}

fn serialize_utc<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// How far ahead of its receive time an event may be dated: clock skew, not a date
/// typed wrong (which would open a storage partition for a day years away).
pub const MAX_FUTURE: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl LogEvent {
    /// Validates and normalises one event from its JSON form.
    ///
    /// `default_id` and `received_at` fill `id` and `timestamp` when the client left
    /// them out: the producer passes its receive time and [`crate::ids::mint_event_id`],
    /// which is given the event's timestamp, so the id names the event's time.
    pub fn from_json(
        value: Value,
        default_id: impl FnOnce(DateTime<Utc>) -> Uuid,
        received_at: DateTime<Utc>,
    ) -> Result<LogEvent, Vec<FieldError>> {
        let Value::Object(mut object) = value else {
            return Err(vec![FieldError::new(
                "$",
                format!("expected a JSON object, got {}", json_type(&value)),
            )]);
        };
        let mut errors = Vec::new();

        // `None` inside: absent, minted once the timestamp is known.
        let id = match take(&mut object, "id", None) {
            None => Some(None),
            Some(Value::String(s)) => check("id", EventId::parse(&s), &mut errors).map(Some),
            Some(other) => {
                errors.push(type_error("id", "a UUID string", &other));
                None
            }
        };
        let level = required_string(&mut object, "level", &mut errors).and_then(|s| {
            check(
                "level",
                s.parse::<Level>().map_err(|e| e.to_string()),
                &mut errors,
            )
        });
        let message = required_string(&mut object, "message", &mut errors)
            .and_then(|s| check("message", Message::parse(s), &mut errors));
        let source = required_string(&mut object, "source", &mut errors)
            .and_then(|s| check("source", Source::parse(s), &mut errors));

        let timestamp = match take(&mut object, "timestamp", None) {
            None => Some(received_at),
            Some(Value::String(s)) => match parse_timestamp(&s) {
                Some(t) if t > received_at + MAX_FUTURE => {
                    errors.push(FieldError::new(
                        "timestamp",
                        "must be at most one day after the time the event is received",
                    ));
                    None
                }
                Some(t) => Some(t),
                None => {
                    errors.push(FieldError::new(
                        "timestamp",
                        "must be RFC 3339 (2024-01-01T12:00:00Z) or 2024-01-01T12:00:00 (UTC)",
                    ));
                    None
                }
            },
            Some(other) => {
                errors.push(type_error("timestamp", "a string", &other));
                None
            }
        };

        let metadata = match take(&mut object, "metadata", None) {
            None => None,
            Some(Value::Object(map)) => {
                let serialised = serde_json::to_string(&map).unwrap_or_default();
                let size = serialised.len();
                if serialised.contains("\\u0000") {
                    errors.push(FieldError::new("metadata", NUL_MESSAGE));
                } else if size > MAX_METADATA_BYTES {
                    errors.push(FieldError::new(
                        "metadata",
                        format!(
                            "must be at most {MAX_METADATA_BYTES} bytes serialised, got {size}"
                        ),
                    ));
                }
                Some(map)
            }
            Some(other) => {
                errors.push(type_error("metadata", "a JSON object", &other));
                None
            }
        };

        let correlation_id =
            optional_id(&mut object, "correlationId", "correlation_id", &mut errors);
        let request_id = optional_id(&mut object, "requestId", "request_id", &mut errors);
        let trace_id = optional_id(&mut object, "traceId", "trace_id", &mut errors);

        match (id, level, message, source, timestamp) {
            (Some(id), Some(level), Some(message), Some(source), Some(timestamp))
                if errors.is_empty() =>
            {
                Ok(LogEvent {
                    id: id.unwrap_or_else(|| EventId::from(default_id(timestamp))),
                    level,
                    message,
                    source,
                    timestamp,
                    metadata,
                    correlation_id,
                    request_id,
                    trace_id,
                })
            }
            _ => Err(errors),
        }
    }
}

/// A newtype's verdict on one field, its error recorded under the field's name.
fn check<T>(field: &str, parsed: Result<T, String>, errors: &mut Vec<FieldError>) -> Option<T> {
    parsed
        .map_err(|message| errors.push(FieldError::new(field, message)))
        .ok()
}

/// Removes a field, trying its snake_case alias when the camelCase name is absent.
/// An explicit `null` counts as absent.
fn take(object: &mut Map<String, Value>, name: &str, alias: Option<&str>) -> Option<Value> {
    let value = object
        .remove(name)
        .or_else(|| alias.and_then(|a| object.remove(a)));
    value.filter(|v| !v.is_null())
}

/// A field that must be present and a string; what the string may hold is the
/// business of its newtype.
fn required_string(
    object: &mut Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match take(object, name, None) {
        None => {
            errors.push(FieldError::new(name, "is required"));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push(type_error(name, "a string", &other));
            None
        }
    }
}

fn optional_id(
    object: &mut Map<String, Value>,
    name: &str,
    alias: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match take(object, name, Some(alias)) {
        None => None,
        Some(Value::String(s)) if s.chars().count() > MAX_ID_CHARS => {
            errors.push(FieldError::new(
                name,
                format!("must be at most {MAX_ID_CHARS} characters"),
            ));
            None
        }
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.contains('\0') => {
            errors.push(FieldError::new(name, NUL_MESSAGE));
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errors.push(type_error(name, "a string", &other));
            None
        }
    }
}

fn type_error(field: &str, expected: &str, got: &Value) -> FieldError {
    FieldError::new(field, format!("must be {expected}, got {}", json_type(got)))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 3339 with any offset, or the seed's zone-less form read as UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<LogEvent, Vec<FieldError>> {
        LogEvent::from_json(value, crate::ids::mint_event_id, Utc::now())
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn minimal_event_gets_id_and_timestamp() {
        let now = Utc::now();
        let fixed = Uuid::now_v7();
        let event = LogEvent::from_json(
            json!({"level": "warning", "message": "m", "source": " svc "}),
            |_| fixed,
            now,
        )
        .expect("valid");
        assert_eq!(event.id, fixed);
        assert_eq!(event.timestamp, now);
        assert_eq!(event.level, Level::Warn);
        assert_eq!(event.source, "svc");
    }

    #[test]
    fn a_minted_id_names_the_event_time_not_the_receive_time() {
        let event = parse(json!({"level": "INFO", "message": "m", "source": "s",
            "timestamp": "2026-01-02T03:04:05.678901Z"}))
        .expect("valid");
        assert!(crate::ids::id_names_its_time(
            event.id.as_uuid(),
            event.timestamp
        ));
        let given = Uuid::new_v4();
        let kept = parse(
            json!({"id": given.to_string(), "level": "INFO", "message": "m",
            "source": "s", "timestamp": "2026-01-02T03:04:05Z"}),
        )
        .expect("valid");
        assert_eq!(kept.id, given, "a given id is kept as it is");
    }

    #[test]
    fn snake_case_aliases_are_accepted() {
        let event = parse(json!({"level": "INFO", "message": "m", "source": "s",
            "correlation_id": "c-1", "request_id": "r-1", "trace_id": "t-1"}))
        .expect("valid");
        assert_eq!(event.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(event.request_id.as_deref(), Some("r-1"));
        assert_eq!(event.trace_id.as_deref(), Some("t-1"));
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let expected = "2024-01-01T10:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("literal");
        for input in [
            "2024-01-01T10:00:00Z",
            "2024-01-01T12:00:00+02:00",
            "2024-01-01T10:00:00",
        ] {
            assert_eq!(parse_timestamp(input), Some(expected), "{input}");
        }
        assert_eq!(parse_timestamp("yesterday"), None);
        let err =
            parse(json!({"level": "INFO", "message": "m", "source": "s", "timestamp": "nope"}))
                .expect_err("invalid");
        assert_eq!(fields(err), ["timestamp"]);
    }

    #[test]
    fn a_timestamp_more_than_a_day_after_receipt_is_refused() {
        let received = "2026-11-29T12:00:00Z"
            .parse::<DateTime<Utc>>()
            .expect("literal");
        let at = |ts: &str| {
            LogEvent::from_json(
                json!({"level": "INFO", "message": "m", "source": "s", "timestamp": ts}),
                crate::ids::mint_event_id,
                received,
            )
        };
        assert!(at("2026-11-30T12:00:00Z").is_ok(), "a day of clock skew");
        let err = at("2026-11-30T12:00:00.001Z").expect_err("too far ahead");
        assert_eq!(fields(err), ["timestamp"]);
    }

    #[test]
    fn every_missing_field_is_named() {
        let err = parse(json!({})).expect_err("invalid");
        assert_eq!(fields(err), ["level", "message", "source"]);
    }

    #[test]
    fn wrong_types_are_named() {
        let err = parse(json!({"id": 7, "level": 1, "message": [], "source": {}, "metadata": "x"}))
            .expect_err("invalid");
        assert_eq!(
            fields(err),
            ["id", "level", "message", "source", "metadata"]
        );
    }

    #[test]
    fn non_object_is_rejected() {
        let err = parse(json!([1, 2])).expect_err("invalid");
        assert_eq!(err[0].field, "$");
        assert!(err[0].message.contains("an array"));
    }

    #[test]
    fn limits_are_enforced_at_the_boundary() {
        let ok = parse(
            json!({"level": "INFO", "message": "a".repeat(MAX_MESSAGE_BYTES),
            "source": "s".repeat(MAX_SOURCE_CHARS)}),
        );
        assert!(ok.is_ok());
        let err = parse(
            json!({"level": "INFO", "message": "a".repeat(MAX_MESSAGE_BYTES + 1),
            "source": "s".repeat(MAX_SOURCE_CHARS + 1)}),
        )
        .expect_err("too long");
        assert_eq!(fields(err), ["message", "source"]);
        let big = json!({"k": "v".repeat(MAX_METADATA_BYTES)});
        let err = parse(json!({"level": "INFO", "message": "m", "source": "s", "metadata": big}))
            .expect_err("too big");
        assert_eq!(fields(err), ["metadata"]);
    }

    #[test]
    fn nul_characters_are_rejected_everywhere() {
        let err = parse(json!({"level": "INFO", "message": "a\0b", "source": "s",
            "correlationId": "\0", "metadata": {"k": "\0"}}))
        .expect_err("NUL");
        assert_eq!(fields(err), ["message", "metadata", "correlationId"]);
    }

    #[test]
    fn blank_required_strings_are_rejected() {
        let err =
            parse(json!({"level": "INFO", "message": "  ", "source": ""})).expect_err("blank");
        assert_eq!(fields(err), ["message", "source"]);
    }

    #[test]
    fn serialises_camel_case_rfc3339_utc() {
        let event = parse(json!({"level": "INFO", "message": "m", "source": "s",
            "timestamp": "2024-01-01T12:00:00+02:00", "correlationId": "c"}))
        .expect("valid");
        let out = serde_json::to_value(&event).expect("serialise");
        assert_eq!(out["timestamp"], "2024-01-01T10:00:00Z");
        assert_eq!(out["correlationId"], "c");
        assert!(out.get("metadata").is_none());
        let back: LogEvent = serde_json::from_value(out).expect("round trip");
        assert_eq!(back, event);
    }

    /// The ingest request body is this type's schema: it must not demand what the
    /// producer fills in itself.
    #[test]
    fn the_schema_requires_only_what_clients_must_send() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(LogEvent::schema()).expect("schema");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .expect("required")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["level", "message", "source"], "{schema}");
        for property in ["id", "timestamp", "metadata", "correlationId", "traceId"] {
            assert!(
                schema["properties"][property].is_object(),
                "{property}: {schema}"
            );
        }
        assert_eq!(schema["properties"]["source"]["maxLength"], 100, "{schema}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels, with the field names of an event
        /// over-represented so the validation branches are actually reached.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,40}".prop_map(Value::String),
                prop_oneof![
                    Just("INFO"),
                    Just("warning"),
                    Just("crash"),
                    Just("2024-01-01T00:00:00")
                ]
                .prop_map(|s| Value::String(s.to_owned())),
            ];
            leaf.prop_recursive(3, 48, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("id".to_owned()),
                            Just("level".to_owned()),
                            Just("message".to_owned()),
                            Just("source".to_owned()),
                            Just("timestamp".to_owned()),
                            Just("metadata".to_owned()),
                            Just("correlation_id".to_owned()),
                            "[a-zA-Z_]{1,12}",
                        ],
                        inner,
                        0..8,
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn parsing_never_panics_and_errors_always_name_a_field(value in any_json()) {
                if let Err(errors) = LogEvent::from_json(value, crate::ids::mint_event_id, Utc::now()) {
                    prop_assert!(!errors.is_empty());
                    prop_assert!(errors.iter().all(|e| !e.field.is_empty() && !e.message.is_empty()));
                }
            }

            #[test]
            fn accepted_events_round_trip_through_their_wire_form(
                level in prop::sample::select(vec!["trace", "DEBUG", "Info", "warning", "err", "FATAL", "panic"]),
                message in "[^\u{0}]{1,200}",
                source in "[a-z][a-z0-9-]{0,30}",
                millis in 0i64..1_764_000_000_000,
            ) {
                prop_assume!(!message.trim().is_empty());
                let timestamp = DateTime::<Utc>::from_timestamp_millis(millis).expect("in range");
                let input = serde_json::json!({"level": level, "message": message, "source": source,
                    "timestamp": timestamp.to_rfc3339()});
                let event = LogEvent::from_json(input, crate::ids::mint_event_id, Utc::now()).expect("valid");
                let wire = serde_json::to_value(&event).expect("serialise");
                let again = LogEvent::from_json(wire, crate::ids::mint_event_id, Utc::now()).expect("still valid");
                prop_assert_eq!(again, event);
            }
        }
    }
}
