//! Ingest endpoints: one event, one event queued, a JSON array, an NDJSON body.
//!
//! Order of checks on every request: parse the body (4xx for malformed input), charge
//! the client's rate limit by event count (429), ask the Kafka breaker (503), validate
//! each event (400 / per-item errors), publish and await the acknowledgements.

use crate::metrics::ProducerMetrics;
use crate::publisher::{PublishError, Publisher};
use crate::rate_limit::ClientRateLimiter;
use crate::routes::ndjson;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use log_common::auth::presented_key;
use log_common::error::{ApiError, ErrorBody, UnavailableBody};
use log_common::event::{FieldError, LogEvent, MAX_BATCH_EVENTS};
use log_common::ids::mint_event_id;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

pub struct IngestState {
    pub publisher: Arc<Publisher>,
    pub limiter: ClientRateLimiter,
    pub metrics: ProducerMetrics,
    /// True when API keys are required: only then does a key name the client.
    pub limit_by_api_key: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestResponse {
    /// "accepted" (Kafka acknowledged) or "queued" (async: in the producer's queue).
    #[schema(example = "accepted")]
    pub status: &'static str,
    pub log_id: Uuid,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    #[schema(example = "completed")]
    pub status: &'static str,
    pub total_events: usize,
    /// Events Kafka acknowledged.
    pub success_count: usize,
    /// Events rejected as invalid or not delivered; each one is listed in `errors`.
    pub failure_count: usize,
    pub errors: Vec<BatchItemError>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemError {
    /// Position in the array (`/batch`) or 0-based line number (`/bulk`).
    pub index: usize,
    /// The event's id when it got far enough to have one.
    pub log_id: Option<Uuid>,
    pub message: String,
}

impl IngestState {
    /// Rate limit, counted in events, keyed by API key or else the client's IP.
    fn charge(&self, req: &HttpRequest, endpoint: &str, events: usize) -> Result<(), ApiError> {
        self.charge_client(&client_key(req, self.limit_by_api_key), endpoint, events)
    }

    /// The rate limit of `client` (a bucket's name: `key:…`, `ip:…`), charged `events`.
    fn charge_client(&self, client: &str, endpoint: &str, events: usize) -> Result<(), ApiError> {
        self.limiter.check(client, events).map_err(|retry| {
            self.metrics
                .rate_limited
                .with_label_values(&[endpoint])
                .inc();
            self.metrics
                .rejected
                .with_label_values(&["rate_limited"])
                .inc_by(events as u64);
            ApiError::RateLimited {
                retry_after_secs: retry.0.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    /// The checks before one event is published, in the module's order: the rate limit,
    /// the breaker, then the event itself.
    fn take_one(
        &self,
        req: &HttpRequest,
        endpoint: &str,
        body: Value,
    ) -> Result<LogEvent, ApiError> {
        self.charge(req, endpoint, 1)?;
        self.check_breaker(1)?;
        parse_event(body).map_err(|e| self.invalid(e))
    }

    fn check_breaker(&self, events: usize) -> Result<(), ApiError> {
        self.publisher
            .check_available()
            .map_err(|e| self.unavailable(e, events))
    }

    fn unavailable(&self, error: PublishError, events: usize) -> ApiError {
        self.unavailable_because(error.to_string(), events)
    }

    /// 503 with `Retry-After`, counting the request's `events` as refused.
    pub fn unavailable_because(&self, message: String, events: usize) -> ApiError {
        self.metrics
            .rejected
            .with_label_values(&["unavailable"])
            .inc_by(events as u64);
        ApiError::Unavailable {
            message,
            retry_after_secs: self.publisher.retry_after_secs(),
        }
    }

    fn invalid(&self, errors: Vec<FieldError>) -> ApiError {
        self.metrics
            .rejected
            .with_label_values(&["validation"])
            .inc();
        ApiError::validation(errors)
    }

    /// One event accepted by `protocol` (see `ProducerMetrics::by_protocol`).
    fn counted_in(&self, protocol: &str) {
        self.metrics
            .by_protocol
            .with_label_values(&[protocol])
            .inc();
    }

    pub fn observe(&self, endpoint: &str, started: Instant) {
        self.metrics
            .duration
            .with_label_values(&[endpoint])
            .observe(started.elapsed().as_secs_f64());
    }
}

fn client_key(req: &HttpRequest, by_api_key: bool) -> String {
    // With API keys on, only valid keys get this far, so a key names a client. With
    // them off, a key is any string a client makes up (a fresh bucket per request),
    // so the IP decides.
    if let Some(key) = presented_key(req.headers()).filter(|_| by_api_key) {
        return format!("key:{key}");
    }
    // The socket's peer, not X-Forwarded-For: a header any client can forge would
    // let it pick its own bucket.
    req.peer_addr()
        .map(|a| format!("ip:{}", a.ip()))
        .unwrap_or_else(|| "ip:unknown".to_owned())
}

fn parse_event(value: Value) -> Result<LogEvent, Vec<FieldError>> {
    LogEvent::from_json(value, mint_event_id, Utc::now())
}

/// Ingest one event; answers after Kafka acknowledged it (acks=all).
#[utoipa::path(post, path = "/producer/api/logs/ingest", tag = "ingest", request_body = LogEvent,
    responses(
        (status = 200, description = "Kafka acknowledged the event", body = IngestResponse),
        (status = 400, description = "Invalid event; `errors` names each field", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded; see Retry-After", body = ErrorBody),
        (status = 503, description = "Kafka unavailable, or the producer at its in-flight limit; see Retry-After", body = UnavailableBody)))]
pub async fn ingest(
    req: HttpRequest,
    state: web::Data<IngestState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let event = state.take_one(&req, "ingest", body.into_inner())?;
    state
        .publisher
        .publish(&event)
        .await
        .map_err(|e| state.unavailable(e, 1))?;
    state.counted_in("ingest");
    state.observe("ingest", started);
    Ok(HttpResponse::Ok().json(IngestResponse {
        status: "accepted",
        log_id: event.id.into(),
        message: "Log event accepted".to_owned(),
    }))
}

/// Queue one event and answer at once. 202 means the event is in this producer's
/// queue, not yet acknowledged by Kafka: it can still be lost if the producer dies
/// before delivery. Use `/ingest` when that matters.
#[utoipa::path(post, path = "/producer/api/logs/ingest/async", tag = "ingest", request_body = LogEvent,
    responses(
        (status = 202, description = "Queued in the producer (not yet acknowledged by Kafka)", body = IngestResponse),
        (status = 400, description = "Invalid event", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody),
        (status = 503, description = "Kafka unavailable, queue full, or the producer at its in-flight limit", body = UnavailableBody)))]
pub async fn ingest_async(
    req: HttpRequest,
    state: web::Data<IngestState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let event = state.take_one(&req, "ingest_async", body.into_inner())?;
    let id = event.id.into();
    state
        .publisher
        .publish_in_background(event)
        .map_err(|e| state.unavailable(e, 1))?;
    state.counted_in("ingest_async");
    state.observe("ingest_async", started);
    Ok(HttpResponse::Accepted().json(IngestResponse {
        status: "queued",
        log_id: id,
        message: "Log event queued for delivery".to_owned(),
    }))
}

/// Ingest a JSON array of events, all sent concurrently.
///
/// Valid events are published even when others in the batch are invalid; the answer
/// lists each failure by index. 400 when no event is valid, 503 when Kafka took none.
#[utoipa::path(post, path = "/producer/api/logs/batch", tag = "ingest", request_body = Vec<LogEvent>,
    responses(
        (status = 200, description = "Every valid event was offered to Kafka; failures listed", body = BatchResponse),
        (status = 400, description = "Not an array, empty, or no valid event", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 413, description = "Over 10,000 events or 16 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody),
        (status = 503, description = "Kafka unavailable, or the producer at its in-flight limit", body = UnavailableBody)))]
pub async fn batch(
    req: HttpRequest,
    state: web::Data<IngestState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let Value::Array(items) = body.into_inner() else {
        return Err(ApiError::BadRequest(
            "body must be a JSON array of log events".to_owned(),
        ));
    };
    let items = items.into_iter().map(Ok).collect();
    let response = ingest_many(&req, &state, "batch", items).await?;
    state.observe("batch", started);
    Ok(response)
}

/// Ingest NDJSON: one event per line (blank lines skipped). `Content-Encoding: gzip`
/// or `zstd` bodies are decompressed; the 16 MiB limit applies after decompression.
#[utoipa::path(post, path = "/producer/api/logs/bulk", tag = "ingest",
    request_body(content = Vec<LogEvent>, content_type = "application/x-ndjson",
        description = "One JSON event per line (the schema is that of the events, as a list)"),
    responses(
        (status = 200, description = "Every valid line was offered to Kafka; failures listed by line", body = BatchResponse),
        (status = 400, description = "Empty body or no valid line", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 413, description = "Over 10,000 events or 16 MiB", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 429, description = "Rate limit exceeded", body = ErrorBody),
        (status = 503, description = "Kafka unavailable, or the producer at its in-flight limit", body = UnavailableBody)))]
pub async fn bulk(
    req: HttpRequest,
    state: web::Data<IngestState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    ndjson::check_content_type(&req)?;
    let items = ndjson::lines(&body);
    let response = ingest_many_indexed(&req, &state, "bulk", items).await?;
    state.observe("bulk", started);
    Ok(response)
}

async fn ingest_many(
    req: &HttpRequest,
    state: &IngestState,
    endpoint: &str,
    items: Vec<Result<Value, String>>,
) -> Result<HttpResponse, ApiError> {
    ingest_many_indexed(
        req,
        state,
        endpoint,
        items.into_iter().enumerate().collect(),
    )
    .await
}

async fn ingest_many_indexed(
    req: &HttpRequest,
    state: &IngestState,
    endpoint: &str,
    items: Vec<(usize, Result<Value, String>)>,
) -> Result<HttpResponse, ApiError> {
    let total = items.len();
    let outcomes = publish_many(req, state, endpoint, items, MAX_BATCH_EVENTS).await?;
    let mut field_errors = Vec::new();
    let mut errors = Vec::new();
    let mut delivered = 0;
    for (index, outcome) in outcomes {
        match outcome {
            Outcome::Stored(_) => delivered += 1,
            Outcome::Invalid(errs) => {
                errors.push(BatchItemError {
                    index,
                    log_id: None,
                    message: joined(&errs),
                });
                field_errors.extend(
                    errs.into_iter()
                        .map(|e| FieldError::new(format!("[{index}].{}", e.field), e.message)),
                );
            }
            Outcome::Undelivered(id, message) => errors.push(BatchItemError {
                index,
                log_id: Some(id),
                message,
            }),
        }
    }
    if delivered == 0 && errors.iter().all(|e| e.log_id.is_none()) {
        return Err(ApiError::validation(field_errors));
    }
    Ok(HttpResponse::Ok().json(BatchResponse {
        status: "completed",
        total_events: total,
        success_count: delivered,
        failure_count: total - delivered,
        errors,
    }))
}

/// What became of one record of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Kafka acknowledged it, under this id.
    Stored(Uuid),
    /// It is not a valid event; nothing was published.
    Invalid(Vec<FieldError>),
    /// It was valid but Kafka did not take it.
    Undelivered(Uuid, String),
}

/// `field: message; …`: one line for a record's field errors (a whole-record error,
/// field `$`, is its message alone).
pub fn joined(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| match e.field.as_str() {
            "$" => e.message.clone(),
            field => format!("{field}: {}", e.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The path every multi-record request takes, whatever its wire format: `items` are
/// the request's records in our event's JSON form (or why one could not be read), each
/// with its position. In the module's order: the request's count limits (400 when
/// empty, 413 over `max_records`), the rate limit charged per record (429), the
/// breaker (503), each record's validation, then publishing the valid ones and awaiting
/// their acknowledgements. 503 when there were valid records and Kafka took none;
/// otherwise each record's [`Outcome`], in request order, for the caller to answer in
/// its protocol's shape.
pub async fn publish_many(
    req: &HttpRequest,
    state: &IngestState,
    endpoint: &str,
    items: Vec<(usize, Result<Value, String>)>,
    max_records: usize,
) -> Result<Vec<(usize, Outcome)>, ApiError> {
    let client = client_key(req, state.limit_by_api_key);
    publish_many_as(&client, state, endpoint, items, max_records).await
}

/// [`publish_many`] for a client named by its rate-limit bucket rather than by an HTTP
/// request (the syslog listeners: `ip:` and the peer's address).
pub async fn publish_many_as(
    client: &str,
    state: &IngestState,
    endpoint: &str,
    items: Vec<(usize, Result<Value, String>)>,
    max_records: usize,
) -> Result<Vec<(usize, Outcome)>, ApiError> {
    let total = items.len();
    if total == 0 {
        return Err(ApiError::BadRequest(
            "no events: the body holds no log event".to_owned(),
        ));
    }
    if total > max_records {
        return Err(ApiError::PayloadTooLarge(format!(
            "{total} events; the limit is {max_records} per request"
        )));
    }
    state.charge_client(client, endpoint, total)?;
    state.check_breaker(total)?;

    let mut outcomes = Vec::with_capacity(total);
    let mut valid = Vec::with_capacity(total);
    for (index, item) in items {
        match item
            .map_err(|m| vec![FieldError::new("$", m)])
            .and_then(parse_event)
        {
            Ok(event) => valid.push((index, event)),
            Err(errs) => outcomes.push((index, Outcome::Invalid(errs))),
        }
    }
    if !outcomes.is_empty() {
        state
            .metrics
            .rejected
            .with_label_values(&["validation"])
            .inc_by(outcomes.len() as u64);
    }
    if valid.is_empty() {
        return Ok(outcomes);
    }

    let (positions, events) = split_positions(valid);
    let results = state.publisher.publish_all(&events).await;
    let mut delivered = 0;
    let mut last_failure = None;
    for ((index, event), result) in positions.into_iter().zip(&events).zip(results) {
        let id = event.id.into();
        match result {
            Ok(()) => {
                delivered += 1;
                outcomes.push((index, Outcome::Stored(id)));
            }
            Err(e) => {
                outcomes.push((index, Outcome::Undelivered(id, e.to_string())));
                last_failure = Some(e);
            }
        }
    }
    state
        .metrics
        .by_protocol
        .with_label_values(&[endpoint])
        .inc_by(delivered);
    if delivered == 0 {
        if let Some(e) = last_failure {
            return Err(state.unavailable(e, events.len()));
        }
    }
    outcomes.sort_by_key(|(index, _)| *index);
    Ok(outcomes)
}

/// Separates the valid events from their positions in the request by moving them: a
/// request's events are held once, within the bytes admission reserved for it, not
/// once more as copies for the publisher.
fn split_positions(valid: Vec<(usize, LogEvent)>) -> (Vec<usize>, Vec<LogEvent>) {
    valid.into_iter().unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_valid_events_go_to_the_publisher_moved_not_copied() {
        let valid: Vec<(usize, LogEvent)> = [0, 2, 5]
            .into_iter()
            .map(|index| {
                let event = serde_json::json!({
                    "level": "INFO", "message": format!("event {index}"), "source": "svc",
                    "metadata": {"k": "v"}
                });
                (index, parse_event(event).expect("valid"))
            })
            .collect();
        let buffers = |events: &mut dyn Iterator<Item = &LogEvent>| -> Vec<(*const u8, *const u8)> {
            events
                .map(|e| (e.message.as_str().as_ptr(), e.source.as_str().as_ptr()))
                .collect()
        };
        let parsed = buffers(&mut valid.iter().map(|(_, e)| e));

        let (positions, events) = split_positions(valid);
        assert_eq!(positions, [0, 2, 5]);
        assert_eq!(
            buffers(&mut events.iter()),
            parsed,
            "the publisher gets the parsed events' own buffers, not copies of them"
        );
    }
}
