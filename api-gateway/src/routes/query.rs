//! Query handlers: validate, build the cache key, answer from Redis or PostgreSQL.

use crate::cache::{AnswerSource, Cache};
use crate::metrics::GatewayMetrics;
use crate::params::{Cursor, LogFilter, LogsParams, Paging, SearchParams, StatsParams};
use crate::repository::{PageResult, Repository, Stats};
use crate::settings::CacheSettings;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use log_common::error::{ApiError, ErrorBody, UnavailableBody};
use log_common::event::LogEvent;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

pub struct QueryState {
    pub repository: Repository,
    pub cache: Cache,
    pub metrics: GatewayMetrics,
    pub cache_settings: CacheSettings,
}

/// A page in Spring Data's shape (so the seed's clients keep working), plus the
/// keyset cursor and whether the total is exact.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub content: Vec<LogEvent>,
    /// 0-based page number (0 when paging by cursor).
    pub number: i64,
    pub size: i64,
    /// Matches of the whole filter: exact up to 10,000, then 10,000 with
    /// `totalElementsExact: false` (counting further would cost more than the page).
    pub total_elements: i64,
    pub total_elements_exact: bool,
    pub total_pages: i64,
    pub number_of_elements: usize,
    pub first: bool,
    pub last: bool,
    pub empty: bool,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl LogPage {
    fn new(result: PageResult, paging: Paging) -> Self {
        let size = paging.size();
        let (number, first) = match paging {
            Paging::Offset { page, .. } => (page, page == 0),
            Paging::After { .. } => (0, false),
        };
        let count = result.events.len();
        let total_pages = (result.total + size - 1) / size;
        let last = match paging {
            Paging::Offset { page, .. } if result.total_exact => page + 1 >= total_pages,
            _ => (count as i64) < size,
        };
        let next_cursor = if last {
            None
        } else {
            result.events.last().map(|e| {
                Cursor {
                    timestamp: e.timestamp,
                    id: e.id.into(),
                }
                .encode()
            })
        };
        LogPage {
            number,
            size,
            total_elements: result.total,
            total_elements_exact: result.total_exact,
            total_pages,
            number_of_elements: count,
            first,
            last,
            empty: count == 0,
            next_cursor,
            content: result.events,
        }
    }
}

impl QueryState {
    /// Freshness bound: a window reaching into the recent past can still change
    /// (late events), so it is cached only seconds; a closed window, minutes.
    fn ttl_for(&self, filter: &LogFilter, now: DateTime<Utc>) -> std::time::Duration {
        let recent = Duration::seconds(self.cache_settings.recent_window_secs as i64);
        let secs = if filter.open_ended || filter.end > now - recent {
            self.cache_settings.ttl_recent_secs
        } else {
            self.cache_settings.ttl_closed_secs
        };
        std::time::Duration::from_secs(secs)
    }

    async fn page(
        &self,
        endpoint: &str,
        filter: LogFilter,
        paging: Paging,
    ) -> Result<HttpResponse, ApiError> {
        let started = Instant::now();
        let now = Utc::now();
        let ttl = self.ttl_for(&filter, now);
        // "Until now" is keyed as such, not by the moving instant, or no two
        // requests would share an entry; such entries live only seconds (`ttl_for`).
        let mut keyed = filter.clone();
        if keyed.open_ended {
            keyed.end = DateTime::<Utc>::UNIX_EPOCH;
        }
        if keyed.default_start {
            keyed.start = DateTime::<Utc>::UNIX_EPOCH;
        }
        let key = format!(
            "{endpoint}:{}",
            serde_json::to_string(&(&keyed, &paging)).unwrap_or_default()
        );
        let repository = &self.repository;
        let (page, source) = self
            .cache
            .get_or_load(&key, ttl, async move {
                let result = repository.page(filter, paging).await?;
                Ok(LogPage::new(result, paging))
            })
            .await?;
        self.observe(endpoint, source, started);
        Ok(HttpResponse::Ok().json(page))
    }

    fn observe(&self, endpoint: &str, source: AnswerSource, started: Instant) {
        self.metrics.queries.with_label_values(&[endpoint]).inc();
        self.metrics
            .query_duration
            .with_label_values(&[endpoint, source.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Events in a time window (default: the last 24 h), newest first; every filter
/// combines with every other.
#[utoipa::path(get, path = "/gateway/api/query/logs", tag = "query", params(LogsParams),
    responses(
        (status = 200, description = "A page of events, newest first", body = LogPage),
        (status = 400, description = "A parameter is invalid; `errors` names it", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable; see Retry-After", body = UnavailableBody)))]
pub async fn logs(
    state: web::Data<QueryState>,
    params: web::Query<LogsParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, paging) = params.into_inner().validate(Utc::now())?;
    state.page("logs", filter, paging).await
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
    state: web::Data<QueryState>,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let (filter, paging) = params.into_inner().validate(Utc::now())?;
    state.page("search", filter, paging).await
}

/// Counts by level and source, error rate, hourly histogram by level and
/// percentiles of `metadata.duration`, over the last `hoursBack` hours.
#[utoipa::path(get, path = "/gateway/api/query/stats", tag = "query", params(StatsParams),
    responses(
        (status = 200, description = "Statistics (cached about 30 s)", body = Stats),
        (status = 400, description = "hoursBack out of 1..168", body = ErrorBody),
        (status = 401, description = "API keys are configured and none, or a wrong one, was sent", body = ErrorBody),
        (status = 503, description = "PostgreSQL unavailable", body = UnavailableBody)))]
pub async fn stats(
    state: web::Data<QueryState>,
    params: web::Query<StatsParams>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let hours = params.hours_back()?;
    let until = Utc::now();
    let since = until - Duration::hours(hours);
    let ttl = std::time::Duration::from_secs(state.cache_settings.ttl_stats_secs);
    let repository = &state.repository;
    let (stats, source) = state
        .cache
        .get_or_load(
            &format!("stats:{hours}"),
            ttl,
            repository.stats(since, until),
        )
        .await?;
    state.observe("stats", source, started);
    Ok(HttpResponse::Ok().json(stats))
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
    state: web::Data<QueryState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::invalid_field("id", format!("'{id}' is not a UUID")))?;
    let event = state.repository.find(id).await?;
    state.observe("log_by_id", AnswerSource::Database, started);
    match event {
        Some(event) => Ok(HttpResponse::Ok().json(event)),
        None => Err(ApiError::NotFound(format!("no log event with id {id}"))),
    }
}
