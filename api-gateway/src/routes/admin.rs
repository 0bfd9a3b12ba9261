//! Admin handlers under `/gateway/api/admin` (admin scope when API keys are on): the
//! dead letters the consumer indexed: list, counts, one whole, replay (one, corrected
//! or as it is, or many), and the audit of the replays.

use crate::api::dead_letters::{
    BulkReplayResult, DeadLetterCounts, DeadLetterDetail, DeadLetterPage, ReplayAudit, ReplayResult,
};
use crate::dead_letters::{Caller, DeadLetterAdmin, ProducerAnswer};
use crate::params::dead_letters::{BulkReplayRequest, DeadLetterListParams, ReplayBody};
use actix_web::{web, HttpRequest, HttpResponse};
use log_common::auth::caller_fingerprint;
use log_common::error::{ApiError, ErrorBody, UnavailableBody};
use log_store::dead_letters::ReplayOutcome;

/// The `{id}` of a path, or a 400 naming it.
fn dead_letter_id(id: &str) -> Result<i64, ApiError> {
    id.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::invalid_field("id", format!("'{id}' is not a dead letter id")))
}

fn caller(req: &HttpRequest) -> Caller {
    Caller::new(caller_fingerprint(req), req.headers())
}

/// Dead letters the consumer recorded, newest first: why each failed, where it came
/// from, the start of its payload and whether it was replayed.
#[utoipa::path(get, path = "/gateway/api/admin/dead-letters", tag = "admin", params(DeadLetterListParams),
    responses(
        (status = 200, description = "A page of dead letters, newest first", body = DeadLetterPage),
        (status = 400, description = "A parameter is invalid; `errors` names it", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 403, description = "The key is valid but not an admin key", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn list(
    admin: web::Data<DeadLetterAdmin>,
    params: web::Query<DeadLetterListParams>,
) -> Result<HttpResponse, ApiError> {
    let query = params.into_inner().validate()?;
    Ok(HttpResponse::Ok().json(admin.list(query).await?))
}

/// Dead letters per reason kind (every kind, with zeros): all of them and those never
/// replayed with success.
#[utoipa::path(get, path = "/gateway/api/admin/dead-letters/counts", tag = "admin",
    responses(
        (status = 200, description = "Counts per reason kind", body = DeadLetterCounts),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 403, description = "The key is valid but not an admin key", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn counts(admin: web::Data<DeadLetterAdmin>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(admin.counts().await?))
}

/// One dead letter whole: its payload (text, or hex when it is not UTF-8) and key.
#[utoipa::path(get, path = "/gateway/api/admin/dead-letters/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The dead letter's id", minimum = 1)),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterDetail),
        (status = 400, description = "Not a dead letter id", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 403, description = "The key is valid but not an admin key", body = ErrorBody),
        (status = 404, description = "No dead letter with that id", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn detail(
    admin: web::Data<DeadLetterAdmin>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = dead_letter_id(&id)?;
    Ok(HttpResponse::Ok().json(admin.detail(id).await?))
}

/// Every replay attempt of one dead letter, oldest first: when, by which key
/// (fingerprint), what was sent and how the producer answered.
#[utoipa::path(get, path = "/gateway/api/admin/dead-letters/{id}/replays", tag = "admin",
    params(("id" = i64, Path, description = "The dead letter's id", minimum = 1)),
    responses(
        (status = 200, description = "The audit rows, oldest first", body = Vec<ReplayAudit>),
        (status = 400, description = "Not a dead letter id", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 403, description = "The key is valid but not an admin key", body = ErrorBody),
        (status = 404, description = "No dead letter with that id", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn replays(
    admin: web::Data<DeadLetterAdmin>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = dead_letter_id(&id)?;
    Ok(HttpResponse::Ok().json(admin.replays(id).await?))
}

/// Sends one dead letter again through the producer's ingest (its validation, its
/// publishing), with a deterministic event id, so replaying twice stores one event.
/// Without a body the original payload goes as it is; `{"event": {…}}` sends a
/// corrected event instead. Every attempt is audited. The producer's refusal is
/// answered with its status and reason; a producer that cannot be reached or fails,
/// with 503.
#[utoipa::path(post, path = "/gateway/api/admin/dead-letters/{id}/replay", tag = "admin",
    params(("id" = i64, Path, description = "The dead letter's id", minimum = 1)),
    request_body(content = Option<ReplayBody>, description = "Optional: a corrected event", content_type = "application/json"),
    responses(
        (status = 200, description = "Published: the producer took the event", body = ReplayResult),
        (status = 400, description = "Not a dead letter id, a malformed body, or the producer rejected the event (its reason in `message`, its field errors in `errors`)", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 403, description = "The key is valid but not an admin key", body = ErrorBody),
        (status = 404, description = "No dead letter with that id", body = ErrorBody),
        (status = 413, description = "The producer rejected the event as too large", body = ErrorBody),
        (status = 415, description = "The producer rejected the event's content type", body = ErrorBody),
        (status = 503, description = "The producer could not be reached or failed (outcome `failed`), or PostgreSQL is unavailable", body = UnavailableBody)))]
pub async fn replay(
    req: HttpRequest,
    admin: web::Data<DeadLetterAdmin>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = dead_letter_id(&id)?;
    let corrected = ReplayBody::parse(&body)?;
    let (result, answer) = admin.replay(id, corrected, &caller(&req)).await?;
    match answer.outcome {
        ReplayOutcome::Published => Ok(HttpResponse::Ok().json(result)),
        ReplayOutcome::Rejected => Err(rejected(&result, answer)),
        ReplayOutcome::Failed => Err(ApiError::Unavailable {
            message: format!(
                "the replay failed (audit {}): {}",
                result.replay_id, answer.detail
            ),
            retry_after_secs: answer.retry_after_secs.unwrap_or(5),
        }),
    }
}

/// The producer's refusal, with its status where the contract has one and its reason.
fn rejected(result: &ReplayResult, answer: ProducerAnswer) -> ApiError {
    let message = format!(
        "the producer rejected the event (audit {}): {}",
        result.replay_id, answer.detail
    );
    match answer.status {
        413 => ApiError::PayloadTooLarge(message),
        415 => ApiError::UnsupportedMediaType(message),
        _ if answer.errors.is_empty() => ApiError::BadRequest(message),
        _ => ApiError::Validation {
            message,
            errors: answer.errors,
        },
    }
}

/// Replays the dead letters never replayed with success that match (oldest first, at
/// most `limit`), each as it is, and answers the count of each outcome. Stops at the
/// first the producer fails on (`stoppedEarly`): the rest stay for a later call.
#[utoipa::path(post, path = "/gateway/api/admin/dead-letters/replay", tag = "admin",
    request_body(content = BulkReplayRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Counts per outcome, and each attempt", body = BulkReplayResult),
        (status = 400, description = "A field is invalid (`errors` names it) or the body is not JSON", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 403, description = "The key is valid but not an admin key", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn replay_many(
    req: HttpRequest,
    admin: web::Data<DeadLetterAdmin>,
    body: web::Json<BulkReplayRequest>,
) -> Result<HttpResponse, ApiError> {
    let bulk = body.into_inner().validate()?;
    Ok(HttpResponse::Ok().json(admin.replay_many(bulk, &caller(&req)).await?))
}
