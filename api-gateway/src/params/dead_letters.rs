//! The admin dead-letter endpoints' parameters and bodies, validated into the store's
//! filter; every 400 names its parameter or field.

use chrono::{DateTime, Utc};
use log_common::error::ApiError;
use log_common::event::parse_timestamp;
use log_store::dead_letters::{DeadLetterFilter, ReasonKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// Largest page of `GET /admin/dead-letters`.
pub const MAX_DEAD_LETTER_PAGE: i64 = 100;
pub const DEFAULT_DEAD_LETTER_PAGE: i64 = 20;
/// Most dead letters one bulk replay sends.
pub const MAX_BULK_REPLAY: i64 = 1000;
pub const DEFAULT_BULK_REPLAY: i64 = 100;
/// Deepest page (so `page * size` stays small).
const MAX_PAGE: i64 = 1_000_000;

const KINDS: &str = "empty, not_json, invalid_event, too_old or rejected_by_database";

/// The reason kinds, as the OpenAPI document lists them (the parameter itself is
/// read as a string, so a wrong one is a 400 naming it).
#[derive(Debug, Clone, Copy, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ReasonKindName {
    Empty,
    NotJson,
    InvalidEvent,
    TooOld,
    RejectedByDatabase,
}

/// `GET /admin/dead-letters` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeadLetterListParams {
    /// Only this kind of reason.
    #[param(value_type = Option<ReasonKindName>)]
    pub reason_kind: Option<String>,
    /// Failed at or after this instant: RFC 3339 or `2024-01-01T00:00:00` (UTC).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// Failed before this instant.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// 0-based page number.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 1000000)]
    pub page: Option<String>,
    /// Page size, 1..100. Default 20.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub size: Option<String>,
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterQuery {
    pub filter: DeadLetterFilter,
    pub page: i64,
    pub size: i64,
}

impl DeadLetterListParams {
    pub fn validate(self) -> Result<DeadLetterQuery, ApiError> {
        let filter = filter(
            self.reason_kind.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
        )?;
        let page = whole_number("page", self.page.as_deref(), 0, 0, MAX_PAGE)?;
        let size = whole_number(
            "size",
            self.size.as_deref(),
            DEFAULT_DEAD_LETTER_PAGE,
            1,
            MAX_DEAD_LETTER_PAGE,
        )?;
        Ok(DeadLetterQuery { filter, page, size })
    }
}

/// `POST /admin/dead-letters/replay`: which unreplayed dead letters to send again, as
/// they are (oldest first).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkReplayRequest {
    /// Only this kind of reason.
    #[schema(value_type = Option<ReasonKindName>)]
    pub reason_kind: Option<Value>,
    /// Failed at or after this instant (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub from: Option<Value>,
    /// Failed before this instant (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub to: Option<Value>,
    /// How many to replay at most, 1..1000. Default 100.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<Value>,
}

/// A validated bulk replay.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkReplay {
    pub filter: DeadLetterFilter,
    pub limit: i64,
}

impl BulkReplayRequest {
    pub fn validate(self) -> Result<BulkReplay, ApiError> {
        let text = |name: &str, v: Option<Value>| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid_field(name, "must be a string")),
        };
        let kind = text("reasonKind", self.reason_kind)?;
        let from = text("from", self.from)?;
        let to = text("to", self.to)?;
        let filter = filter(kind.as_deref(), from.as_deref(), to.as_deref())?;
        let limit = match self.limit {
            None | Some(Value::Null) => DEFAULT_BULK_REPLAY,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(n) if (1..=MAX_BULK_REPLAY).contains(&n) => n,
                _ => return Err(limit_error()),
            },
            Some(_) => return Err(limit_error()),
        };
        Ok(BulkReplay { filter, limit })
    }
}

fn limit_error() -> ApiError {
    ApiError::invalid_field(
        "limit",
        format!("must be a whole number from 1 to {MAX_BULK_REPLAY}"),
    )
}

/// `POST /admin/dead-letters/{id}/replay`'s optional body: a corrected event to send
/// instead of the original payload.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReplayBody {
    /// The corrected event (a JSON object in the ingest schema). Its `id` is replaced
    /// by the dead letter's deterministic id. Absent: the original payload as it is.
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
}

impl ReplayBody {
    /// The corrected event, if any; from the raw body, which may be empty or `null`.
    pub fn parse(body: &[u8]) -> Result<Option<Map<String, Value>>, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let parsed: Option<ReplayBody> = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
        match parsed.and_then(|body| body.event) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(event)) => Ok(Some(event)),
            Some(_) => Err(ApiError::invalid_field(
                "event",
                "must be a JSON object (an event in the ingest schema)",
            )),
        }
    }
}

fn filter(
    kind: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<DeadLetterFilter, ApiError> {
    let reason_kind = match kind.map(str::trim).filter(|k| !k.is_empty()) {
        None => None,
        Some(k) => Some(ReasonKind::parse(k).ok_or_else(|| {
            ApiError::invalid_field("reasonKind", format!("must be one of {KINDS}, got '{k}'"))
        })?),
    };
    let from = instant("from", from)?;
    let to = instant("to", to)?;
    if let (Some(from), Some(to)) = (from, to) {
        if to < from {
            return Err(ApiError::invalid_field("to", "must not be before from"));
        }
    }
    Ok(DeadLetterFilter {
        reason_kind,
        from,
        to,
    })
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_timestamp(v).map(Some).ok_or_else(|| {
            ApiError::invalid_field(
                name,
                format!("'{v}' is not RFC 3339 (2024-01-01T12:00:00Z) or 2024-01-01T12:00:00"),
            )
        }),
    }
}

fn whole_number(
    name: &str,
    value: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match value {
        None => Ok(default),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_field(
                name,
                format!("must be a whole number from {min} to {max}, got '{v}'"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::Validation { errors, .. } => errors[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn list(
        kind: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        size: Option<&str>,
    ) -> Result<DeadLetterQuery, ApiError> {
        DeadLetterListParams {
            reason_kind: kind.map(str::to_owned),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            page: None,
            size: size.map(str::to_owned),
        }
        .validate()
    }

    #[test]
    fn list_defaults_and_bounds() {
        let q = list(None, None, None, None).expect("defaults");
        assert_eq!((q.page, q.size), (0, DEFAULT_DEAD_LETTER_PAGE));
        assert_eq!(q.filter, DeadLetterFilter::default());
        assert_eq!(list(None, None, None, Some("100")).expect("max").size, 100);
        for bad in ["0", "101", "x", "-1"] {
            assert_eq!(
                field_of(list(None, None, None, Some(bad)).expect_err(bad)),
                "size"
            );
        }
    }

    #[test]
    fn each_invalid_parameter_is_named() {
        assert_eq!(
            field_of(list(Some("loud"), None, None, None).expect_err("kind")),
            "reasonKind"
        );
        assert_eq!(
            field_of(list(None, Some("yesterday"), None, None).expect_err("from")),
            "from"
        );
        assert_eq!(
            field_of(
                list(
                    None,
                    Some("2026-11-29T12:00:00Z"),
                    Some("2026-11-29T11:00:00Z"),
                    None
                )
                .expect_err("to")
            ),
            "to"
        );
        let q = list(Some("not_json"), Some("2026-11-29T00:00:00"), None, None).expect("valid");
        assert_eq!(q.filter.reason_kind, Some(ReasonKind::NotJson));
        assert!(q.filter.from.is_some());
    }

    #[test]
    fn bulk_replay_limits_and_fields() {
        let bulk = |v: Value| {
            serde_json::from_value::<BulkReplayRequest>(v)
                .expect("shape")
                .validate()
        };
        assert_eq!(
            bulk(json!({})).expect("defaults").limit,
            DEFAULT_BULK_REPLAY
        );
        assert_eq!(bulk(json!({"limit": 1000})).expect("max").limit, 1000);
        for bad in [
            json!({"limit": 1001}),
            json!({"limit": 0}),
            json!({"limit": "5"}),
            json!({"limit": 1.5}),
        ] {
            assert_eq!(
                field_of(bulk(bad.clone()).expect_err("limit")),
                "limit",
                "{bad}"
            );
        }
        assert_eq!(
            field_of(bulk(json!({"reasonKind": 3})).expect_err("kind")),
            "reasonKind"
        );
        assert_eq!(field_of(bulk(json!({"to": "soon"})).expect_err("to")), "to");
    }

    #[test]
    fn a_replay_body_is_optional_and_its_event_an_object() {
        assert_eq!(ReplayBody::parse(b"").expect("empty"), None);
        assert_eq!(ReplayBody::parse(b"{}").expect("no event"), None);
        assert_eq!(ReplayBody::parse(b"null").expect("null"), None);
        let event = ReplayBody::parse(br#"{"event":{"level":"INFO"}}"#).expect("event");
        assert_eq!(event.expect("some")["level"], "INFO");
        assert_eq!(
            field_of(ReplayBody::parse(br#"{"event":[1]}"#).expect_err("array")),
            "event"
        );
        assert!(matches!(
            ReplayBody::parse(b"{nope").expect_err("json"),
            ApiError::BadRequest(_)
        ));
    }
}
