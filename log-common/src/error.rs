//! The one error type at the HTTP boundary, and the contract's error JSON.
//!
//! Handlers return `Result<_, ApiError>`; extractor failures (bad JSON, bad query
//! strings, oversized bodies) are turned into `ApiError` by the configs in
//! [`json_config`] and [`query_config`]. [`crate::http::error_path`] then fills in the
//! request path, which `ResponseError` alone cannot see.

use crate::event::FieldError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with the list of offending fields.
    #[error("{message}")]
    Validation {
        message: String,
        errors: Vec<FieldError>,
    },
    /// 400 for a request that is malformed as a whole (not JSON, empty body …).
    #[error("{0}")]
    BadRequest(String),
    /// 401: no API key, or not one of ours.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid key without the scope the route needs (the admin endpoints).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 413 naming the limit that was crossed.
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("rate limit exceeded: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503: a dependency is down or a circuit breaker is open. Answered at once so
    /// clients back off instead of piling up requests.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// 500: logged with its cause; the client sees only a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let message = match errors.as_slice() {
            [one] => format!("validation failed: {} {}", one.field, one.message),
            many => format!("validation failed for {} fields", many.len()),
        };
        ApiError::Validation { message, errors }
    }

    /// A 400 naming one parameter or field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiError::validation(vec![FieldError::new(field, message)])
    }

    /// The same answer, for another request: when several requests waited on one
    /// load that failed, each answers with its error (an `Internal` cause is kept as
    /// text; it is logged where it happened).
    pub fn replay(&self) -> ApiError {
        match self {
            ApiError::Validation { message, errors } => ApiError::Validation {
                message: message.clone(),
                errors: errors.clone(),
            },
            ApiError::BadRequest(m) => ApiError::BadRequest(m.clone()),
            ApiError::Unauthorized(m) => ApiError::Unauthorized(m.clone()),
            ApiError::Forbidden(m) => ApiError::Forbidden(m.clone()),
            ApiError::NotFound(m) => ApiError::NotFound(m.clone()),
            ApiError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(m.clone()),
            ApiError::PayloadTooLarge(m) => ApiError::PayloadTooLarge(m.clone()),
            ApiError::RateLimited { retry_after_secs } => ApiError::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            ApiError::Unavailable {
                message,
                retry_after_secs,
            } => ApiError::Unavailable {
                message: message.clone(),
                retry_after_secs: *retry_after_secs,
            },
            ApiError::Internal(e) => ApiError::Internal(anyhow::anyhow!("{e:#}")),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The response body for this error at `path`.
    pub fn to_body(&self, path: &str) -> ErrorBody {
        let status = self.status_code();
        let message = match self {
            ApiError::Internal(_) => "internal error; see the service log".to_owned(),
            other => other.to_string(),
        };
        let errors = match self {
            ApiError::Validation { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        ErrorBody::new(status, message, path, errors)
    }

    pub fn response_at(&self, path: &str) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after() {
            builder.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let ApiError::Unauthorized(_) = self {
            builder.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        let body = self.to_body(path);
        if let ApiError::Unavailable {
            retry_after_secs, ..
        } = self
        {
            // The contract's 503 says `"status":"unavailable"` so clients can tell a
            // deliberate shed from a crash; the rest of the error shape stays.
            return builder.json(UnavailableBody {
                status: "unavailable",
                timestamp: body.timestamp,
                error: body.error,
                message: body.message,
                path: body.path,
                retry_after_seconds: *retry_after_secs,
            });
        }
        builder.json(body)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        // The path is filled in by the `error_path` middleware.
        self.response_at("")
    }
}

/// Spring Boot's error shape, which clients of the seed already parse.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub timestamp: DateTime<Utc>,
    pub status: u16,
    /// The HTTP reason phrase, e.g. "Bad Request".
    pub error: String,
    pub message: String,
    pub path: String,
    /// Present on validation errors: each offending field or parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ErrorBody {
    pub fn new(status: StatusCode, message: String, path: &str, errors: Vec<FieldError>) -> Self {
        ErrorBody {
            timestamp: Utc::now(),
            status: status.as_u16(),
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            message,
            path: path.to_owned(),
            errors,
        }
    }
}

/// The 503 answer when a breaker is open or a dependency is down.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnavailableBody {
    /// Always "unavailable".
    pub status: &'static str,
    pub timestamp: DateTime<Utc>,
    pub error: String,
    pub message: String,
    pub path: String,
    pub retry_after_seconds: u64,
}

/// JSON body extractor config: a body that is not JSON, has the wrong content type or
/// is too large becomes the contract's error instead of actix's plain text.
pub fn json_config(limit: usize) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| json_error(err).into())
}

fn json_error(err: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::OverflowKnownLength { length, limit } => ApiError::PayloadTooLarge(format!(
            "body is {length} bytes; the limit is {limit} bytes"
        )),
        E::Overflow { limit } => {
            ApiError::PayloadTooLarge(format!("body is larger than the limit of {limit} bytes"))
        }
        E::ContentType => {
            ApiError::UnsupportedMediaType("Content-Type must be application/json".to_owned())
        }
        E::Deserialize(e) if e.is_eof() && e.line() == 1 && e.column() == 0 => {
            ApiError::BadRequest("request body is empty; expected JSON".to_owned())
        }
        E::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
        other => ApiError::BadRequest(format!("could not read the body: {other}")),
    }
}

/// Query-string extractor config: names the parameter that failed to parse.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|err, _req| {
        let text = err.to_string();
        // serde_urlencoded says e.g. "Query deserialize error: invalid digit found in
        // string"; the field name is only in its "unknown/missing field `x`" variants.
        ApiError::BadRequest(format!("invalid query string: {text}")).into()
    })
}

/// Path extractor config, e.g. a malformed UUID in `/logs/{id}`.
pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|err, _req| {
        ApiError::BadRequest(format!("invalid path parameter: {err}")).into()
    })
}

/// The default service: unknown routes get the JSON 404, never an empty body.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    #[actix_web::test]
    async fn a_replayed_error_answers_exactly_like_the_original() {
        let errors = [
            ApiError::invalid_field("size", "must be at most 1000"),
            ApiError::BadRequest("not JSON".into()),
            ApiError::Unauthorized("no key".into()),
            ApiError::Forbidden("no admin scope".into()),
            ApiError::NotFound("no such event".into()),
            ApiError::UnsupportedMediaType("text/plain".into()),
            ApiError::PayloadTooLarge("over 1 MiB".into()),
            ApiError::RateLimited {
                retry_after_secs: 3,
            },
            ApiError::Unavailable {
                message: "PostgreSQL unavailable".into(),
                retry_after_secs: 7,
            },
            ApiError::Internal(anyhow::anyhow!("disk full")),
        ];
        for original in errors {
            let replayed = original.replay();
            let (a, b) = (original.response_at("/p"), replayed.response_at("/p"));
            assert_eq!(a.status(), b.status(), "{original}");
            assert_eq!(
                a.headers().get(header::RETRY_AFTER),
                b.headers().get(header::RETRY_AFTER),
                "{original}"
            );
            let (mut a, mut b) = (body_json(a).await, body_json(b).await);
            a["timestamp"] = serde_json::Value::Null;
            b["timestamp"] = serde_json::Value::Null;
            assert_eq!(a, b, "{original}");
        }
    }

    async fn body_json(resp: HttpResponse) -> serde_json::Value {
        let bytes = to_bytes(resp.into_body()).await.expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[actix_web::test]
    async fn validation_error_has_spring_shape_and_field_list() {
        let err = ApiError::invalid_field("size", "must be between 1 and 1000");
        let resp = err.response_at("/gateway/api/query/logs");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let json = body_json(resp).await;
        assert_eq!(json["status"], 400);
        assert_eq!(json["error"], "Bad Request");
        assert_eq!(json["path"], "/gateway/api/query/logs");
        assert_eq!(json["errors"][0]["field"], "size");
        assert!(json["message"].as_str().expect("message").contains("size"));
        assert!(json["timestamp"].is_string());
    }

    #[actix_web::test]
    async fn unavailable_says_so_with_retry_after() {
        let err = ApiError::Unavailable {
            message: "kafka is down".into(),
            retry_after_secs: 5,
        };
        let resp = err.response_at("/p");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
        let json = body_json(resp).await;
        assert_eq!(json["status"], "unavailable");
        assert_eq!(json["retryAfterSeconds"], 5);
    }

    #[actix_web::test]
    async fn rate_limited_has_retry_after() {
        let resp = ApiError::RateLimited {
            retry_after_secs: 2,
        }
        .response_at("/p");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(body_json(resp).await["status"], 429);
    }

    #[actix_web::test]
    async fn internal_errors_hide_their_cause() {
        let resp = ApiError::Internal(anyhow::anyhow!("password=hunter2")).response_at("/p");
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let json = body_json(resp).await;
        assert!(!json.to_string().contains("hunter2"));
        assert!(json.get("errors").is_none());
    }
}
