//! A page of events newest first, by offset or by keyset cursor, and the total of
//! all matches: exact from the rollups for time, level and source filters; counted up
//! to a cap within a time budget for full text and correlation ids.

use crate::error::QueryError;
use crate::models::EventRow;
use crate::pool::set_local_statement_timeout;
use crate::queries::cover::{cover, Span};
use crate::queries::filter::EventFilter;
use crate::rollups::ALL;
use crate::schema::log_events;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Json, Text, Timestamptz, Uuid as SqlUuid};
use log_common::event::LogEvent;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// A total that has to count rows (full text, correlation id) is exact up to this
/// many matches; past it the count stops and the total is not exact.
pub const COUNT_CAP: i64 = 10_000;

/// A page of several levels is read level by level and merged while it lies within
/// this many rows of the newest match; deeper offsets are one statement (`OFFSET`),
/// so memory stays bounded.
const PER_LEVEL_MERGE_MAX: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Paging {
    Offset { page: i64, size: i64 },
    After { cursor: Cursor, size: i64 },
}

impl Paging {
    pub fn size(&self) -> i64 {
        match self {
            Paging::Offset { size, .. } | Paging::After { size, .. } => *size,
        }
    }
}

/// A position in "newest first, then id descending" order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub timestamp: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// Opaque to clients: microseconds since the epoch and the id.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.timestamp.timestamp_micros(), self.id.simple())
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('_')?;
        Some(Cursor {
            timestamp: DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// One page of events plus what the Spring page shape needs.
#[derive(Debug)]
pub struct PageResult {
    pub events: Vec<LogEvent>,
    pub total: i64,
    pub total_exact: bool,
}

/// A page, newest first with id as tie-break, so walking pages never repeats or
/// skips an event; plus the total of all matches ([`total`]). `count_budget` bounds
/// the time a total that counts rows may take. Run it in one `REPEATABLE READ`
/// transaction: the total's parts must see one snapshot to add up.
pub fn page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    paging: Paging,
    now: DateTime<Utc>,
    count_budget: Duration,
) -> Result<PageResult, QueryError> {
    let (size, offset) = match paging {
        Paging::Offset { page, size } => (size, page * size),
        Paging::After { size, .. } => (size, 0),
    };
    let cursor = match paging {
        Paging::After { cursor, .. } => Some(cursor),
        Paging::Offset { .. } => None,
    };
    let rows = if filter.levels.len() > 1 && offset + size <= PER_LEVEL_MERGE_MAX {
        // One index-ordered read per level, merged here: `level = ANY(…)` of several
        // levels cannot walk the `(level, timestamp, id)` index in order, and the plan
        // that walks time instead filters its way through every other level (an INFO
        // flood before the first ERROR).
        let mut merged = Vec::new();
        for level in &filter.levels {
            let one = EventFilter {
                levels: vec![*level],
                ..filter.clone()
            };
            merged.extend(newest_first(conn, &one, cursor, offset + size, 0)?);
        }
        merged.sort_by(|a: &EventRow, b: &EventRow| (b.timestamp, b.id).cmp(&(a.timestamp, a.id)));
        merged
            .into_iter()
            .skip(offset as usize)
            .take(size as usize)
            .collect()
    } else {
        newest_first(conn, filter, cursor, size, offset)?
    };
    let events = rows
        .into_iter()
        .map(LogEvent::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    // The total last: a budgeted count may leave its `statement_timeout` set.
    let seen = offset + events.len() as i64;
    let (total, total_exact) = total(conn, filter, now, count_budget, seen)?;
    Ok(PageResult {
        events,
        total,
        total_exact,
    })
}

/// The number of events matching `filter`, and whether it is exact:
/// - time, level and source filters: exact, from the rollups and the rows of the
///   partial minutes at the window's edges ([`cover`]);
/// - full text or a correlation id: counted up to [`COUNT_CAP`] within
///   `count_budget`. Past the cap it is the cap, not exact; past the budget, the
///   planner's estimate (at least the `seen` matches, at most the cap), not exact.
pub fn total(
    conn: &mut PgConnection,
    filter: &EventFilter,
    now: DateTime<Utc>,
    count_budget: Duration,
    seen: i64,
) -> Result<(i64, bool), QueryError> {
    if filter.text.is_none() && filter.correlation_id.is_none() {
        return Ok((rollup_total(conn, filter, now)?, true));
    }
    let capped = CappedCount(
        log_events::table
            .select(sql::<Integer>("1"))
            .filter(filter.predicate())
            .limit(COUNT_CAP + 1),
    );
    match within(conn, count_budget, |conn| capped.get_result::<i64>(conn))? {
        Some(counted) => Ok((counted.min(COUNT_CAP), counted <= COUNT_CAP)),
        None => {
            let estimate = planner_estimate(
                conn,
                log_events::table
                    .select(sql::<Integer>("1"))
                    .filter(filter.predicate()),
            )?;
            Ok((estimate.clamp(seen.min(COUNT_CAP), COUNT_CAP), false))
        }
    }
}

/// Runs `work` in a savepoint under `statement_timeout = budget`: `None` when the
/// budget ran out (the savepoint is rolled back, and with it the timeout). On success
/// the timeout stays set until the transaction ends, so call this last.
fn within<T>(
    conn: &mut PgConnection,
    budget: Duration,
    work: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> Result<Option<T>, QueryError> {
    let started = std::time::Instant::now();
    let attempt = conn.transaction(|conn| {
        set_local_statement_timeout(conn, budget)?;
        work(conn)
    });
    match attempt.map_err(|e| QueryError::from(e).with_elapsed(started.elapsed(), Some(budget))) {
        Ok(value) => Ok(Some(value)),
        Err(QueryError::TimedOut(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// The planner's estimate of the rows `query` returns (`EXPLAIN`, nothing run): for
/// full text it comes from the `search_vector` statistics.
fn planner_estimate<Q: QueryFragment<Pg>>(
    conn: &mut PgConnection,
    query: Q,
) -> Result<i64, QueryError> {
    let plan = Explain(query).get_result::<serde_json::Value>(conn)?;
    Ok(plan[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0).round() as i64)
}

#[derive(QueryableByName)]
struct Sum {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The exact total of a filter without full text or correlation id.
fn rollup_total(
    conn: &mut PgConnection,
    filter: &EventFilter,
    now: DateTime<Utc>,
) -> Result<i64, QueryError> {
    // The rollups keep (level, source) pairs, each level over every source and each
    // source over every level, under [`ALL`] for "every".
    let levels: Vec<&str> = if filter.levels.is_empty() {
        vec![ALL]
    } else {
        filter.levels.iter().map(|l| l.as_str()).collect()
    };
    let source = filter.source.as_deref().unwrap_or(ALL);
    let rollup = |conn: &mut PgConnection, table: &str, from, to| -> QueryResult<i64> {
        // Raw SQL for the `sum(…)::int8`: diesel's sum of a bigint is a numeric.
        diesel::sql_query(format!(
            "SELECT coalesce(sum(events), 0)::int8 AS n FROM {table} \
             WHERE level = ANY($1) AND bucket >= $2 AND bucket < $3 AND source = $4"
        ))
        .bind::<Array<Text>, _>(&levels)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .bind::<Text, _>(source)
        .get_result::<Sum>(conn)
        .map(|sum| sum.n)
    };
    let rows = |conn: &mut PgConnection, from, to: DateTime<Utc>| -> QueryResult<i64> {
        let edge = EventFilter {
            start: from,
            end: to - TimeDelta::microseconds(1),
            ..filter.clone()
        };
        log_events::table
            .filter(edge.predicate())
            .count()
            .get_result(conn)
    };
    let mut total = 0;
    // The filter's end is inclusive; timestamps are stored to the microsecond.
    for span in cover(filter.start, filter.end + TimeDelta::microseconds(1), now) {
        total += match span {
            Span::Days(from, to) => rollup(conn, "log_rollup_day", from, to)?,
            Span::Hours(from, to) => rollup(conn, "log_rollup_hour", from, to)?,
            Span::Minutes(from, to) => rollup(conn, "log_rollup_minute", from, to)?,
            Span::Rows(from, to) => rows(conn, from, to)?,
            Span::LessRows(from, to) => -rows(conn, from, to)?,
        };
    }
    Ok(total)
}

/// `EXPLAIN (FORMAT JSON) <inner>`: the plan as JSON, the query not run.
struct Explain<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("EXPLAIN (FORMAT JSON) ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for Explain<Q> {
    type SqlType = Json;
}

impl<Q> RunQueryDsl<PgConnection> for Explain<Q> {}

/// `filter`'s events after `cursor` (if any), newest first, `offset` skipped, at most
/// `limit`. Shaped for the `(timestamp DESC, id DESC)` indexes of `migrations/`.
fn newest_first(
    conn: &mut PgConnection,
    filter: &EventFilter,
    cursor: Option<Cursor>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<EventRow>> {
    use log_events::dsl as e;
    let mut query = e::log_events
        .select(EventRow::as_select())
        .filter(filter.predicate())
        .into_boxed();
    if let Some(cursor) = cursor {
        // A row comparison, which diesel's DSL lacks: as one range condition it walks
        // the index from the cursor, where the OR of two would not.
        query = query.filter(
            sql::<Bool>("(\"timestamp\", id) < (")
                .bind::<Timestamptz, _>(cursor.timestamp)
                .sql(", ")
                .bind::<SqlUuid, _>(cursor.id)
                .sql(")"),
        );
    }
    query
        .order((e::timestamp.desc(), e::id.desc()))
        .limit(limit)
        .offset(offset)
        .load::<EventRow>(conn)
}

/// `SELECT count(*) FROM (<inner>) AS capped`: counts the rows of a LIMITed query,
/// so the count stops at the limit. diesel has no subquery in FROM; this is its
/// documented way to add one (a custom `QueryFragment`).
struct CappedCount<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for CappedCount<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT count(*) FROM (");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(") AS capped");
        Ok(())
    }
}

impl<Q> QueryId for CappedCount<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for CappedCount<Q> {
    type SqlType = BigInt;
}

impl<Q> RunQueryDsl<PgConnection> for CappedCount<Q> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor = Cursor {
            timestamp: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).expect("ts"),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("garbage"), None);
    }

    #[test]
    fn the_count_is_a_limited_subquery() {
        let filter = EventFilter {
            start: DateTime::<Utc>::UNIX_EPOCH,
            end: Utc::now(),
            levels: Vec::new(),
            source: Some("s".to_owned()),
            correlation_id: None,
            text: None,
        };
        let count = CappedCount(
            log_events::table
                .select(sql::<Integer>("1"))
                .filter(filter.predicate())
                .limit(COUNT_CAP + 1),
        );
        let sql = diesel::debug_query::<Pg, _>(&count).to_string();
        assert!(
            sql.starts_with("SELECT count(*) FROM (SELECT 1 FROM \"log_events\" WHERE"),
            "{sql}"
        );
        assert!(sql.contains("LIMIT $4) AS capped"), "{sql}");
        assert!(sql.contains("10001"), "{sql}");
    }
}
