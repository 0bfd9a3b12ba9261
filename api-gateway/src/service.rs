//! The query service: owns the Redis cache, the PostgreSQL pool and its circuit
//! breaker, and is the one place where a store error becomes an [`ApiError`].
//! The routes validate parameters and call it; nothing else reaches the database.

use crate::api::{Histogram, LogPage, Stats};
use crate::cache::{AnswerSource, Cache};
use crate::metrics::GatewayMetrics;
use crate::params::{HistogramRequest, LogFilter, Paging, StatsWindow};
use crate::settings::{CacheSettings, QueryLimits, TailSettings};
use chrono::{DateTime, Duration, Utc};
use diesel::PgConnection;
use log_common::breaker::CircuitBreaker;
use log_common::error::ApiError;
use log_common::event::LogEvent;
use log_store::error::QueryError;
use log_store::pool::set_local_statement_timeout;
use log_store::queries::{Conditions, TailCursor, TailPoll};
use log_store::{queries, PgPool};
use std::time::Instant;
use uuid::Uuid;

/// Built by `startup` field by field (named, so no argument can land in the wrong slot).
/// Cheap to clone (pools, breaker and cache are shared), so a cache reload can own one.
#[derive(Clone)]
pub struct QueryService {
    pub pool: PgPool,
    pub breaker: CircuitBreaker,
    pub limits: QueryLimits,
    pub cache: Cache,
    pub cache_settings: CacheSettings,
    pub metrics: GatewayMetrics,
}

impl QueryService {
    pub fn database_breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub async fn ping(&self) -> Result<(), ApiError> {
        self.run(QueryClass::Lookup, queries::ping).await
    }

    /// A page of `/logs` or `/search` (`endpoint`), from the cache or PostgreSQL.
    pub async fn page(
        &self,
        endpoint: &'static str,
        filter: LogFilter,
        paging: Paging,
    ) -> Result<LogPage, ApiError> {
        let started = Instant::now();
        let ttl = self.ttl_for(&filter, Utc::now());
        let key = page_key(endpoint, &filter, &paging);
        let budgets = queries::Budgets {
            search_walk: std::time::Duration::from_millis(self.limits.search_walk_budget_ms),
            count: std::time::Duration::from_millis(self.limits.count_budget_ms),
        };
        let service = self.clone();
        let load = async move {
            let query = filter.query;
            let class = QueryClass::of(&query);
            let result = service
                .run(class, move |conn| {
                    queries::page(conn, &query, paging, Utc::now(), budgets)
                })
                .await?;
            Ok(LogPage::new(result, paging))
        };
        let (page, source) = self.cache.get_or_load(&key, ttl, load).await?;
        self.observe(endpoint, source, started);
        Ok(page)
    }

    /// Statistics of a window, from the rollups.
    pub async fn stats(&self, window: StatsWindow) -> Result<Stats, ApiError> {
        let started = Instant::now();
        let now = Utc::now();
        // A window that ends now is keyed by its length, so the cache can serve it for
        // the stats TTL; a closed one by its bounds.
        let (since, until, key) = match window {
            StatsWindow::HoursBack(hours) => {
                (now - Duration::hours(hours), now, format!("stats:{hours}h"))
            }
            StatsWindow::Range {
                since,
                until,
                open_ended: true,
            } => (
                since,
                until,
                format!("stats:{}..", since.timestamp_micros()),
            ),
            StatsWindow::Range { since, until, .. } => (
                since,
                until,
                format!(
                    "stats:{}..{}",
                    since.timestamp_micros(),
                    until.timestamp_micros()
                ),
            ),
        };
        let ttl = std::time::Duration::from_secs(self.cache_settings.ttl_stats_secs);
        let service = self.clone();
        let load = async move {
            let rows = service
                .run(QueryClass::Aggregate, move |conn| {
                    queries::stats(conn, since, until, now)
                })
                .await?;
            Ok(Stats::assemble(since, until, rows))
        };
        let (stats, source) = self.cache.get_or_load(&key, ttl, load).await?;
        self.observe("stats", source, started);
        Ok(stats)
    }

    /// Events per bucket and level over the request's (snapped) window.
    pub async fn histogram(&self, request: HistogramRequest) -> Result<Histogram, ApiError> {
        let started = Instant::now();
        let ttl = self.ttl_for(&request.filter, Utc::now());
        let key = format!(
            "histogram:{}:{}",
            request.interval.0,
            serde_json::to_string(&request.filter.query).unwrap_or_default()
        );
        let service = self.clone();
        let load = async move {
            let query = request.filter.query;
            let (start, end) = (query.start, query.end);
            let width = request.interval.1;
            let class = match query.text {
                Some(_) => QueryClass::Search,
                None => QueryClass::Aggregate,
            };
            let counts = service
                .run(class, move |conn| queries::histogram(conn, &query, width))
                .await?;
            Ok(Histogram::assemble(start, end, request.interval, counts))
        };
        let (histogram, source) = self.cache.get_or_load(&key, ttl, load).await?;
        self.observe("histogram", source, started);
        Ok(histogram)
    }

    /// One event by id (never cached: the primary key is already the fastest path).
    pub async fn find(&self, id: Uuid) -> Result<Option<LogEvent>, ApiError> {
        let started = Instant::now();
        let event = self
            .run(QueryClass::Lookup, move |conn| queries::find(conn, id))
            .await?;
        self.observe("log_by_id", AnswerSource::Database, started);
        Ok(event)
    }

    /// The tail cursor of "from now on": every partition's stored next offset.
    pub async fn tail_start(&self, tail: &TailSettings) -> Result<TailCursor, ApiError> {
        let (group, topics) = (tail.group_id.clone(), tail.topics());
        self.run(QueryClass::Lookup, move |conn| {
            queries::tail::stored_offsets(conn, &group, &topics)
        })
        .await
    }

    /// The events matching `conditions` stored past `from` (never cached: a tail
    /// wants what was committed a moment ago).
    pub async fn tail_poll(
        &self,
        tail: &TailSettings,
        from: TailCursor,
        conditions: Conditions,
    ) -> Result<TailPoll, ApiError> {
        let (group, topics, batch) = (tail.group_id.clone(), tail.topics(), tail.batch);
        let class = if conditions.text.is_some() {
            QueryClass::Search
        } else {
            QueryClass::Page
        };
        let poll = self
            .run(class, move |conn| {
                queries::tail::poll(conn, &group, &topics, &from, &conditions, batch)
            })
            .await?;
        for invalid in &poll.invalid {
            self.metrics
                .invalid_rows
                .with_label_values(&[invalid.column])
                .inc();
            tracing::error!(event_id = ?invalid.id, column = invalid.column, reason = %invalid.reason,
                "a stored row is not a valid event; the live tail passes over it");
        }
        Ok(poll)
    }

    /// Freshness bound: a window reaching into the recent past can still change
    /// (late events), so it is cached only seconds; a closed window, minutes.
    fn ttl_for(&self, filter: &LogFilter, now: DateTime<Utc>) -> std::time::Duration {
        let recent = Duration::seconds(self.cache_settings.recent_window_secs as i64);
        let secs = if filter.open_ended || filter.query.end > now - recent {
            self.cache_settings.ttl_recent_secs
        } else {
            self.cache_settings.ttl_closed_secs
        };
        std::time::Duration::from_secs(secs)
    }

    fn observe(&self, endpoint: &str, source: AnswerSource, started: Instant) {
        self.metrics.queries.with_label_values(&[endpoint]).inc();
        self.metrics
            .query_duration
            .with_label_values(&[endpoint, source.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }

    /// How long a statement of `class` may run.
    pub fn limit(&self, class: QueryClass) -> std::time::Duration {
        let limits = &self.limits;
        std::time::Duration::from_millis(match class {
            QueryClass::Lookup => limits.lookup_ms,
            QueryClass::Page => limits.page_ms,
            QueryClass::Search => limits.search_ms,
            QueryClass::Aggregate => limits.aggregate_ms,
        })
    }

    /// Runs `work` on a pooled connection off the async threads, behind the breaker,
    /// in one read-only `REPEATABLE READ` transaction (so a total assembled from
    /// rollups and rows sees one snapshot) whose statements may each run for the
    /// limit of `class`.
    async fn run<T, F>(&self, class: QueryClass, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, QueryError> + Send + 'static,
    {
        if !self.breaker.permits() {
            return Err(
                self.unavailable("PostgreSQL is unavailable (circuit breaker open)".to_owned())
            );
        }
        let pool = self.pool.clone();
        let timeout = self.limit(class);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            let started = Instant::now();
            conn.build_transaction()
                .repeatable_read()
                .read_only()
                .run(|conn| {
                    set_local_statement_timeout(conn, timeout)?;
                    work(conn)
                })
                .map_err(|e: QueryError| e.with_elapsed(started.elapsed(), Some(timeout)))
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("query task failed: {e}")))?;
        match result {
            Ok(value) => {
                self.breaker.record_success();
                Ok(value)
            }
            Err(e) => Err(api_error(e, &self.breaker, class, timeout, &self.metrics)),
        }
    }

    fn unavailable(&self, message: String) -> ApiError {
        ApiError::Unavailable {
            message,
            retry_after_secs: self.breaker.retry_after_secs(),
        }
    }
}

/// The cache key of a page of `endpoint`: every validated filter (levels, source,
/// correlation id, trace id, full text, window) and the paging, serialised.
fn page_key(endpoint: &str, filter: &LogFilter, paging: &Paging) -> String {
    // "Until now" is keyed as such, not by the moving instant, or no two
    // requests would share an entry; such entries live only seconds (`ttl_for`).
    let mut keyed = filter.clone();
    if keyed.open_ended {
        keyed.query.end = DateTime::<Utc>::UNIX_EPOCH;
    }
    if keyed.default_start {
        keyed.query.start = DateTime::<Utc>::UNIX_EPOCH;
    }
    format!(
        "{endpoint}:{}",
        serde_json::to_string(&(&keyed, paging)).unwrap_or_default()
    )
}

/// The classes of query, each with its own time limit (`QueryLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryClass {
    Lookup,
    Page,
    Search,
    Aggregate,
}

impl QueryClass {
    /// The class of a page: full text is a search, a correlation or trace id a lookup.
    pub fn of(filter: &queries::EventFilter) -> QueryClass {
        if filter.text.is_some() {
            QueryClass::Search
        } else if filter.correlation_id.is_some() || filter.trace_id.is_some() {
            QueryClass::Lookup
        } else {
            QueryClass::Page
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QueryClass::Lookup => "lookup",
            QueryClass::Page => "page",
            QueryClass::Search => "search",
            QueryClass::Aggregate => "aggregate",
        }
    }

    /// The setting that holds the limit.
    pub fn setting(self) -> &'static str {
        match self {
            QueryClass::Lookup => "QUERY_TIMEOUT_LOOKUP_MS",
            QueryClass::Page => "QUERY_TIMEOUT_PAGE_MS",
            QueryClass::Search => "QUERY_TIMEOUT_SEARCH_MS",
            QueryClass::Aggregate => "QUERY_TIMEOUT_AGGREGATE_MS",
        }
    }
}

/// The one conversion from the store's errors to the API's, with what each means for
/// the breaker: only an unreachable database or a broken connection counts against
/// it; a query that was too costly or failed says nothing about its health.
pub(crate) fn api_error(
    error: QueryError,
    breaker: &CircuitBreaker,
    class: QueryClass,
    limit: std::time::Duration,
    metrics: &GatewayMetrics,
) -> ApiError {
    match error {
        QueryError::Unreachable(_) | QueryError::ConnectionLost(_) => {
            breaker.record_failure();
            ApiError::Unavailable {
                message: error.to_string(),
                retry_after_secs: breaker.retry_after_secs(),
            }
        }
        QueryError::TimedOut(_) => {
            metrics
                .query_timeouts
                .with_label_values(&[class.as_str()])
                .inc();
            ApiError::Unavailable {
                message: format!(
                    "the {} query ran past its {} ms limit ({}) and was stopped; \
                     narrow the time window or add filters",
                    class.as_str(),
                    limit.as_millis(),
                    class.setting()
                ),
                retry_after_secs: 1,
            }
        }
        QueryError::Failed(e) => {
            breaker.record_success();
            ApiError::Internal(anyhow::Error::new(e).context("query failed"))
        }
        QueryError::TooDeep { .. } => ApiError::invalid_field("page", error.to_string()),
        QueryError::InvalidRow(invalid) => {
            breaker.record_success();
            metrics
                .invalid_rows
                .with_label_values(&[invalid.column])
                .inc();
            tracing::error!(event_id = ?invalid.id, column = invalid.column, reason = %invalid.reason,
                "a stored row is not a valid event; answering 500 rather than guessing");
            ApiError::Internal(anyhow::Error::new(invalid))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error as DieselError};
    use log_store::error::InvalidRow;
    use std::time::Duration;

    fn fixture() -> (CircuitBreaker, GatewayMetrics) {
        let metrics = GatewayMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let breaker = CircuitBreaker::new(
            "postgres",
            1,
            Duration::from_secs(2),
            Duration::from_secs(15),
            metrics.breaker_state.clone(),
        );
        (breaker, metrics)
    }

    fn database(kind: DatabaseErrorKind) -> DieselError {
        DieselError::DatabaseError(kind, Box::new("from the server".to_owned()))
    }

    /// `error` as a search query with a 300 ms limit answers it.
    fn mapped(error: QueryError, breaker: &CircuitBreaker, metrics: &GatewayMetrics) -> ApiError {
        api_error(
            error,
            breaker,
            QueryClass::Search,
            Duration::from_millis(300),
            metrics,
        )
    }

    fn filter_of(query: &str) -> (LogFilter, Paging) {
        actix_web::web::Query::<crate::params::LogsParams>::from_query(query)
            .expect("params")
            .into_inner()
            .validate(Utc::now())
            .expect("valid")
    }

    #[test]
    fn the_page_key_tells_ids_apart() {
        let key = |query: &str| {
            let (filter, paging) = filter_of(query);
            page_key("logs", &filter, &paging)
        };
        let plain = key("level=ERROR");
        let traced = key("level=ERROR&traceId=t-1");
        let other_trace = key("level=ERROR&traceId=t-2");
        let correlated = key("level=ERROR&correlationId=t-1");
        assert_ne!(plain, traced, "{traced}");
        assert_ne!(traced, other_trace);
        assert_ne!(
            traced, correlated,
            "the same value as a trace and a correlation id"
        );
        assert_ne!(plain, correlated);
        // Normalised like every parameter: the same filter, the same entry.
        assert_eq!(traced, key("traceId=%20t-1%20&level=error"));
        assert_eq!(plain, key("level=ERROR&traceId="));
    }

    #[test]
    fn an_id_filter_is_a_lookup() {
        let class = |query: &str| QueryClass::of(&filter_of(query).0.query);
        assert_eq!(class("level=ERROR"), QueryClass::Page);
        assert_eq!(class("correlationId=c-1"), QueryClass::Lookup);
        assert_eq!(class("traceId=t-1"), QueryClass::Lookup);
    }

    #[test]
    fn a_lost_connection_is_a_503_and_opens_the_breaker() {
        let (breaker, metrics) = fixture();
        let error = QueryError::from(database(DatabaseErrorKind::ClosedConnection));
        let mapped = mapped(error, &breaker, &metrics);
        assert!(matches!(mapped, ApiError::Unavailable { .. }), "{mapped:?}");
        assert!(!breaker.permits(), "one failure opens this breaker");
    }

    #[test]
    fn a_timeout_is_a_503_naming_the_limit_and_leaves_the_breaker_closed() {
        let (breaker, metrics) = fixture();
        let error = QueryError::TimedOut(database(DatabaseErrorKind::Unknown));
        match mapped(error, &breaker, &metrics) {
            ApiError::Unavailable {
                message,
                retry_after_secs,
            } => {
                assert!(message.contains("search query"), "{message}");
                assert!(message.contains("300 ms"), "{message}");
                assert!(message.contains("QUERY_TIMEOUT_SEARCH_MS"), "{message}");
                assert_eq!(retry_after_secs, 1);
            }
            other => panic!("expected a 503, got {other:?}"),
        }
        assert!(breaker.permits());
        assert_eq!(
            metrics.query_timeouts.with_label_values(&["search"]).get(),
            1
        );
    }

    #[test]
    fn a_failed_query_is_a_500_and_leaves_the_breaker_closed() {
        let (breaker, metrics) = fixture();
        let error = QueryError::Failed(database(DatabaseErrorKind::Unknown));
        let mapped = mapped(error, &breaker, &metrics);
        assert!(matches!(mapped, ApiError::Internal(_)), "{mapped:?}");
        assert!(breaker.permits());
    }

    #[test]
    fn an_invalid_stored_row_is_a_500_and_is_counted() {
        let (breaker, metrics) = fixture();
        let error = QueryError::InvalidRow(InvalidRow {
            id: Some(Uuid::now_v7()),
            column: "level",
            reason: "unknown level 'LOUD'".to_owned(),
        });
        let mapped = mapped(error, &breaker, &metrics);
        assert!(matches!(mapped, ApiError::Internal(_)), "{mapped:?}");
        assert_eq!(metrics.invalid_rows.with_label_values(&["level"]).get(), 1);
        assert!(breaker.permits());
    }
}
