//! `GET /tail`: the live tail as Server-Sent Events (see [`crate::tail`]).

use crate::params::TailParams;
use crate::tail::Tails;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse};
use log_common::error::{ApiError, ErrorBody, UnavailableBody};
use log_store::queries::TailCursor;

/// The header a reconnecting `EventSource` sends: the `id:` of the last event it saw.
pub const LAST_EVENT_ID: &str = "Last-Event-ID";

/// Follows new events as they are stored, as Server-Sent Events. Each event's `id:`
/// is a cursor of per-partition Kafka offsets; reconnecting with `Last-Event-ID` (as
/// `EventSource` does by itself) resumes with no gap and no duplicate, whatever the
/// events' timestamps. The first message is `event: ready` (its `id:` is the start);
/// `: heartbeat` comments keep idle streams open; `event: tail-error` reports that
/// PostgreSQL cannot be read while the stream keeps trying. Without `Last-Event-ID`
/// the stream starts at what is stored now. New rows are found by polling
/// (`TAIL_POLL_MS`, 250 ms). With API keys on, the key goes in `X-API-Key` or
/// `Authorization: Bearer` like every query (the explorer reads the stream with
/// `fetch`, so no key is ever put in a URL).
#[utoipa::path(get, path = "/gateway/api/query/tail", tag = "query", params(TailParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event: the `id:` of the last event received")),
    responses(
        (status = 200, description = "An endless `text/event-stream`: `data:` is a log event as JSON", content_type = "text/event-stream", body = String),
        (status = 400, description = "A parameter is invalid, or `Last-Event-ID` is not an id this service sent; `errors` names it", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 503, description = "TAIL_MAX_CLIENTS streams are open, or PostgreSQL is unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn tail(
    request: HttpRequest,
    tails: web::Data<Tails>,
    params: web::Query<TailParams>,
) -> Result<HttpResponse, ApiError> {
    let conditions = params.into_inner().validate()?;
    let resume = match request.headers().get(LAST_EVENT_ID) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(TailCursor::decode)
                .ok_or_else(|| {
                    ApiError::invalid_field(LAST_EVENT_ID, "is not an event id this service sent")
                })?,
        ),
    };
    let receiver = tails.open(conditions, resume).await?;
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        let message = receiver.recv().await?;
        Some((Ok::<_, actix_web::Error>(message), receiver))
    });
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
