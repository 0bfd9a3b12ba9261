//! Query handlers: validate the parameters, ask the query service, answer.

use crate::api::{Histogram, LogPage, Stats};
use crate::params::{HistogramParams, LogsParams, SearchParams, StatsParams};
use crate::service::QueryService;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use log_common::error::{ApiError, ErrorBody, UnavailableBody};
use log_common::event::LogEvent;
use uuid::Uuid;

/// Events in a time window (default: the last 24 h), newest first; every filter
/// combines with every other.
#[utoipa::path(get, path = "/gateway/api/query/logs", tag = "query", params(LogsParams),
    responses(
        (status = 200, description = "A page of events, newest first", body = LogPage),
        (status = 400, description = "A parameter is invalid; `errors` names it", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn logs(
    service: web::Data<QueryService>,
    params: web::Query<LogsParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, paging) = params.into_inner().validate(Utc::now())?;
    let page = service.page("logs", filter, paging).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Full-text search over messages (PostgreSQL `websearch_to_tsquery`, English
/// stemming): `database error` (both words), `"connection refused"` (phrase),
/// `timeout -retry` (exclude), `timeout or refused` (either). Combines with the
/// time window and the filters of `/logs`.
#[utoipa::path(get, path = "/gateway/api/query/search", tag = "query", params(SearchParams),
    responses(
        (status = 200, description = "A page of matching events, newest first", body = LogPage),
        (status = 400, description = "A parameter is invalid (e.g. empty `query`)", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable", body = UnavailableBody)))]
pub async fn search(
    service: web::Data<QueryService>,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, paging) = params.into_inner().validate(Utc::now())?;
    let page = service.page("search", filter, paging).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Counts by level and source, error rate, hourly histogram by level and
/// percentiles of `metadata.duration`, over the last `hoursBack` hours.
#[utoipa::path(get, path = "/gateway/api/query/stats", tag = "query", params(StatsParams),
    responses(
        (status = 200, description = "Statistics (cached about 30 s)", body = Stats),
        (status = 400, description = "hoursBack out of 1..168, a bad startTime/endTime, or both kinds of window", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable", body = UnavailableBody)))]
pub async fn stats(
    service: web::Data<QueryService>,
    params: web::Query<StatsParams>,
) -> Result<HttpResponse, ApiError> {
    let window = params.into_inner().window(chrono::Utc::now())?;
    let stats = service.stats(window).await?;
    Ok(HttpResponse::Ok().json(stats))
}

/// Events per time bucket and level (the chart above an explorer's results). Without
/// `query` it is read from exact per-minute counts the consumer keeps with the rows;
/// with `query` the matching events are counted, up to 100,000 (`exact: false` past
/// that). The window is widened to bucket boundaries; every bucket is listed.
#[utoipa::path(get, path = "/gateway/api/query/histogram", tag = "query", params(HistogramParams),
    responses(
        (status = 200, description = "Counts per bucket and level", body = Histogram),
        (status = 400, description = "A parameter is invalid; `errors` names it", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn histogram(
    service: web::Data<QueryService>,
    params: web::Query<HistogramParams>,
) -> Result<HttpResponse, ApiError> {
    let request = params.into_inner().validate(Utc::now())?;
    let histogram = service.histogram(request).await?;
    Ok(HttpResponse::Ok().json(histogram))
}

/// One event by id.
#[utoipa::path(get, path = "/gateway/api/query/logs/{id}", tag = "query",
    params(("id" = Uuid, Path, description = "The event id")),
    responses(
        (status = 200, description = "The event", body = LogEvent),
        (status = 400, description = "Not a UUID", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 404, description = "No event with that id", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable", body = UnavailableBody)))]
pub async fn log_by_id(
    service: web::Data<QueryService>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::invalid_field("id", format!("'{id}' is not a UUID")))?;
    match service.find(id).await? {
        Some(event) => Ok(HttpResponse::Ok().json(event)),
        None => Err(ApiError::NotFound(format!("no log event with id {id}"))),
    }
}
