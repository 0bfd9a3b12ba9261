//! The SQL behind every query, over a diesel r2d2 pool and behind a circuit breaker
//! (PostgreSQL down: 503 at once instead of every request waiting for a timeout).
//!
//! Queries are raw SQL with bound parameters (never string-built from input): the
//! filters, full-text search and keyset comparison read more plainly as SQL, and
//! each shape matches one of the indexes in `migrations/`.

use crate::params::{Cursor, LogFilter, Paging};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::{
    Array, BigInt, Double, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use log_common::breaker::CircuitBreaker;
use log_common::error::ApiError;
use log_common::event::{Level, LogEvent, Message, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// Raw SQL with numbered placeholders: diesel's `bind` attaches a value but the SQL
/// must still say `$n` for it, so this keeps the count.
struct Sql<'a> {
    query: BoxedSqlQuery<'a, Pg, SqlQuery>,
    binds: usize,
}

impl<'a> Sql<'a> {
    fn new(sql: &str) -> Self {
        Sql {
            query: diesel::sql_query(sql).into_boxed(),
            binds: 0,
        }
    }

    fn sql(mut self, sql: &str) -> Self {
        self.query = self.query.sql(sql);
        self
    }

    fn bind<T, V>(mut self, value: V) -> Self
    where
        Pg: diesel::sql_types::HasSqlType<T>,
        V: diesel::serialize::ToSql<T, Pg> + Send + 'a,
        T: Send + 'a,
    {
        self.binds += 1;
        self.query = self
            .query
            .sql(format!("${}", self.binds))
            .bind::<T, V>(value);
        self
    }
}

/// `totalElements` is exact up to this many matches; past it the count stops (so a
/// page over millions of rows stays cheap) and `totalElementsExact` is false.
pub const COUNT_CAP: i64 = 10_000;
/// `sourceCounts` in stats lists at most this many sources (the busiest).
pub const STATS_MAX_SOURCES: i64 = 100;
/// Percentiles of `metadata.duration` are exact up to this many events in the window.
pub const DURATION_SAMPLE_TARGET: i64 = 200_000;

const EVENT_COLUMNS: &str =
    "SELECT id, level, message, source, \"timestamp\", metadata, correlation_id, request_id, trace_id FROM log_events";

#[derive(Clone)]
pub struct Repository {
    pool: PgPool,
    breaker: CircuitBreaker,
    query_timeout_ms: u64,
}

/// Sets `statement_timeout` on every connection the pool opens, so no query can hold
/// a connection (and a blocking thread) longer than `QUERY_TIMEOUT_MS`.
#[derive(Debug)]
pub struct StatementTimeout(pub u64);

impl diesel::r2d2::CustomizeConnection<PgConnection, diesel::r2d2::Error> for StatementTimeout {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::sql_query(format!("SET statement_timeout = {}", self.0))
            .execute(conn)
            .map(|_| ())
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// PostgreSQL cancelled the query at `statement_timeout` (SQLSTATE 57014; diesel
/// exposes only the message).
fn is_statement_timeout(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info)
        if info.message().contains("statement timeout"))
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    level: String,
    #[diesel(sql_type = Text)]
    message: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Timestamptz)]
    timestamp: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    metadata: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    correlation_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    trace_id: Option<String>,
}

impl TryFrom<EventRow> for LogEvent {
    type Error = diesel::result::Error;

    /// A message or source that breaks the event's rules fails the query.
    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        let invalid = |column: &str, reason: String| {
            diesel::result::Error::DeserializationError(
                format!("stored event {} has an invalid {column}: {reason}", row.id).into(),
            )
        };
        Ok(LogEvent {
            id: row.id.into(),
            // The table's CHECK constraint admits only the six levels.
            level: row.level.parse().unwrap_or(Level::Info),
            message: Message::parse(row.message).map_err(|e| invalid("message", e))?,
            source: Source::parse(row.source).map_err(|e| invalid("source", e))?,
            timestamp: row.timestamp,
            metadata: match row.metadata {
                Some(serde_json::Value::Object(map)) => Some(map),
                _ => None,
            },
            correlation_id: row.correlation_id,
            request_id: row.request_id,
            trace_id: row.trace_id,
        })
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct KeyCount {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct HourLevelCount {
    #[diesel(sql_type = Timestamptz)]
    hour: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    level: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct DurationRow {
    #[diesel(sql_type = BigInt)]
    samples: i64,
    #[diesel(sql_type = Nullable<Double>)]
    p50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p95: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    p99: Option<f64>,
}

/// One page of events plus what the Spring page shape needs.
pub struct PageResult {
    pub events: Vec<LogEvent>,
    pub total: i64,
    pub total_exact: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total_logs: i64,
    /// Every level, zero included.
    pub level_counts: BTreeMap<String, i64>,
    /// Events per source (the busiest 100).
    pub source_counts: BTreeMap<String, i64>,
    pub time_range: TimeRange,
    /// ERROR + FATAL over all events in the window (0 when there are none).
    pub error_rate: f64,
    /// The ten busiest sources, busiest first.
    pub top_sources: Vec<SourceCount>,
    /// Events per hour and level, oldest hour first.
    pub hourly: Vec<HourlyCount>,
    /// Percentiles of `metadata.duration` over the events that carry a number there.
    pub duration: DurationPercentiles,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimeRange {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceCount {
    pub source: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HourlyCount {
    pub hour: DateTime<Utc>,
    pub counts: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DurationPercentiles {
    /// Events the percentiles were computed over.
    pub samples: i64,
    /// True when the window held more than 200,000 events and the percentiles were
    /// estimated from a block sample of about that many.
    pub estimated: bool,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Repository {
    pub fn new(pool: PgPool, breaker: CircuitBreaker, query_timeout_ms: u64) -> Self {
        Repository {
            pool,
            breaker,
            query_timeout_ms,
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Runs `work` on a pooled connection off the async threads. An open breaker or
    /// an unreachable database is a 503 with Retry-After.
    async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> QueryResult<T> + Send + 'static,
    {
        if !self.breaker.permits() {
            return Err(
                self.unavailable("PostgreSQL is unavailable (circuit breaker open)".to_owned())
            );
        }
        let pool = self.pool.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| Outcome::Unreachable(e.to_string()))?;
            work(&mut conn).map_err(Outcome::Query)
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("query task failed: {e}")))?;
        match result {
            Ok(value) => {
                self.breaker.record_success();
                Ok(value)
            }
            Err(Outcome::Unreachable(e)) => {
                self.breaker.record_failure();
                Err(self.unavailable(format!("PostgreSQL is unreachable: {e}")))
            }
            Err(Outcome::Query(e)) if is_statement_timeout(&e) => {
                // The database is up, the query was too costly: not the breaker's business.
                Err(ApiError::Unavailable {
                    message: format!(
                        "the query ran past the {} ms limit; narrow the time window or add filters",
                        self.query_timeout_ms
                    ),
                    retry_after_secs: 1,
                })
            }
            Err(Outcome::Query(e)) => {
                // A broken connection counts against the breaker; a query error does not.
                if matches!(
                    e,
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::ClosedConnection,
                        _
                    )
                ) {
                    self.breaker.record_failure();
                    return Err(self.unavailable(format!("PostgreSQL connection lost: {e}")));
                }
                self.breaker.record_success();
                Err(ApiError::Internal(
                    anyhow::anyhow!(e).context("query failed"),
                ))
            }
        }
    }

    fn unavailable(&self, message: String) -> ApiError {
        ApiError::Unavailable {
            message,
            retry_after_secs: self.breaker.retry_after_secs(),
        }
    }

    pub async fn ping(&self) -> Result<(), ApiError> {
        self.run(|conn| diesel::sql_query("SELECT 1").execute(conn).map(|_| ()))
            .await
    }

    pub async fn find(&self, id: Uuid) -> Result<Option<LogEvent>, ApiError> {
        self.run(move |conn| {
            diesel::sql_query(format!("{EVENT_COLUMNS} WHERE id = $1"))
                .bind::<SqlUuid, _>(id)
                .get_result::<EventRow>(conn)
                .optional()?
                .map(LogEvent::try_from)
                .transpose()
        })
        .await
    }

    /// A page, newest first with id as tie-break, so walking pages never repeats or
    /// skips an event; plus the capped count of all matches.
    pub async fn page(&self, filter: LogFilter, paging: Paging) -> Result<PageResult, ApiError> {
        self.run(move |conn| {
            let mut query = with_filter(Sql::new(EVENT_COLUMNS), &filter);
            let (limit, offset) = match paging {
                Paging::Offset { page, size } => (size, page * size),
                Paging::After {
                    cursor: Cursor { timestamp, id },
                    size,
                } => {
                    query = query
                        .sql(" AND (\"timestamp\", id) < (")
                        .bind::<Timestamptz, _>(timestamp)
                        .sql(", ")
                        .bind::<SqlUuid, _>(id)
                        .sql(")");
                    (size, 0)
                }
            };
            let events = query
                .sql(" ORDER BY \"timestamp\" DESC, id DESC LIMIT ")
                .bind::<BigInt, _>(limit)
                .sql(" OFFSET ")
                .bind::<BigInt, _>(offset)
                .query
                .load::<EventRow>(conn)?
                .into_iter()
                .map(LogEvent::try_from)
                .collect::<QueryResult<Vec<_>>>()?;
            let counted = with_filter(
                Sql::new("SELECT count(*) AS n FROM (SELECT 1 FROM log_events"),
                &filter,
            )
            .sql(" LIMIT ")
            .bind::<BigInt, _>(COUNT_CAP + 1)
            .sql(") AS capped")
            .query
            .get_result::<Count>(conn)?
            .n;
            Ok(PageResult {
                events,
                total: counted.min(COUNT_CAP),
                total_exact: counted <= COUNT_CAP,
            })
        })
        .await
    }

    pub async fn stats(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Stats, ApiError> {
        self.run(move |conn| {
            let window = |select: &str, sample: &str| {
                Sql::new(select)
                    .sql(" FROM log_events")
                    .sql(sample)
                    .sql(" WHERE \"timestamp\" >= ")
                    .bind::<Timestamptz, _>(since)
                    .sql(" AND \"timestamp\" <= ")
                    .bind::<Timestamptz, _>(until)
            };
            // One scan gives the hourly histogram; level counts and the total are its sums.
            let hourly = window("SELECT date_trunc('hour', \"timestamp\") AS hour, level, count(*) AS n", "")
                .sql(" GROUP BY 1, 2 ORDER BY 1")
                .query
                .load::<HourLevelCount>(conn)?;
            let by_source = window("SELECT source AS key, count(*) AS n", "")
                .sql(" GROUP BY source ORDER BY n DESC, source LIMIT ")
                .bind::<BigInt, _>(STATS_MAX_SOURCES)
                .query
                .load::<KeyCount>(conn)?;
            // Percentiles need a sort of every value: exact up to DURATION_SAMPLE_TARGET
            // events, estimated from a block sample of about that many beyond.
            let total: i64 = hourly.iter().map(|h| h.n).sum();
            let sample = if total > DURATION_SAMPLE_TARGET {
                let percent = (DURATION_SAMPLE_TARGET as f64 * 100.0 / total as f64).clamp(0.01, 100.0);
                format!(" TABLESAMPLE SYSTEM ({percent:.4})")
            } else {
                String::new()
            };
            let duration = window(
                "SELECT count(*) AS samples, \
                 percentile_cont(0.5) WITHIN GROUP (ORDER BY (metadata->>'duration')::float8) AS p50, \
                 percentile_cont(0.95) WITHIN GROUP (ORDER BY (metadata->>'duration')::float8) AS p95, \
                 percentile_cont(0.99) WITHIN GROUP (ORDER BY (metadata->>'duration')::float8) AS p99",
                &sample,
            )
            .sql(" AND jsonb_typeof(metadata->'duration') = 'number'")
            .query
            .get_result::<DurationRow>(conn)?;
            let estimated = !sample.is_empty();
            Ok(assemble_stats(since, until, by_source, hourly, duration, estimated))
        })
        .await
    }
}

enum Outcome {
    Unreachable(String),
    Query(diesel::result::Error),
}

/// Appends the WHERE clause every filter shape shares. All values are bound.
fn with_filter<'a>(query: Sql<'a>, filter: &LogFilter) -> Sql<'a> {
    let mut query = query
        .sql(" WHERE \"timestamp\" >= ")
        .bind::<Timestamptz, _>(filter.start)
        .sql(" AND \"timestamp\" <= ")
        .bind::<Timestamptz, _>(filter.end);
    if !filter.levels.is_empty() {
        let levels: Vec<String> = filter
            .levels
            .iter()
            .map(|l| l.as_str().to_owned())
            .collect();
        query = query
            .sql(" AND level = ANY(")
            .bind::<Array<Text>, _>(levels)
            .sql(")");
    }
    if let Some(source) = &filter.source {
        query = query.sql(" AND source = ").bind::<Text, _>(source.clone());
    }
    if let Some(correlation_id) = &filter.correlation_id {
        query = query
            .sql(" AND correlation_id = ")
            .bind::<Text, _>(correlation_id.clone());
    }
    if let Some(text) = &filter.text {
        query = query
            .sql(" AND search_vector @@ websearch_to_tsquery('english', ")
            .bind::<Text, _>(text.clone())
            .sql(")");
    }
    query
}

fn assemble_stats(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    by_source: Vec<KeyCount>,
    hourly: Vec<HourLevelCount>,
    duration: DurationRow,
    estimated: bool,
) -> Stats {
    let mut level_counts: BTreeMap<String, i64> = Level::ALL
        .iter()
        .map(|l| (l.as_str().to_owned(), 0))
        .collect();
    for row in &hourly {
        *level_counts.entry(row.level.clone()).or_default() += row.n;
    }
    let total_logs: i64 = level_counts.values().sum();
    let errors = level_counts.get("ERROR").copied().unwrap_or(0)
        + level_counts.get("FATAL").copied().unwrap_or(0);
    let top_sources = by_source
        .iter()
        .take(10)
        .map(|r| SourceCount {
            source: r.key.clone(),
            count: r.n,
        })
        .collect();
    let mut hours: BTreeMap<DateTime<Utc>, BTreeMap<String, i64>> = BTreeMap::new();
    for row in hourly {
        hours.entry(row.hour).or_default().insert(row.level, row.n);
    }
    Stats {
        total_logs,
        level_counts,
        source_counts: by_source.into_iter().map(|r| (r.key, r.n)).collect(),
        time_range: TimeRange { since, until },
        error_rate: if total_logs == 0 {
            0.0
        } else {
            errors as f64 / total_logs as f64
        },
        top_sources,
        hourly: hours
            .into_iter()
            .map(|(hour, counts)| HourlyCount { hour, counts })
            .collect(),
        duration: DurationPercentiles {
            samples: duration.samples,
            estimated,
            p50: duration.p50,
            p95: duration.p95,
            p99: duration.p99,
        },
    }
}
