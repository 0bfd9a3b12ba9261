//! The total of a page's filter: exact from the rollups for time, level and source
//! filters; counted up to a cap within a time budget for full text, correlation
//! ids and trace ids, else estimated.

use crate::error::QueryError;
use crate::queries::budget::within;
use crate::queries::cover::{cover, Span};
use crate::queries::filter::EventFilter;
use crate::rollups::ALL;
use crate::schema::log_events;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Integer, Json, Text, Timestamptz};
use std::time::Duration;

/// A total that has to count rows (full text, correlation id, trace id) is exact up to this
/// many matches; past it the count stops and the total is not exact.
pub const COUNT_CAP: i64 = 10_000;

/// The number of events matching `filter`, and whether it is exact:
/// - time, level and source filters: exact, from the rollups and the rows of the
///   partial minutes at the window's edges ([`cover`]);
/// - full text, a correlation id or a trace id: counted up to [`COUNT_CAP`] within
///   `count_budget`. Past the cap it is the cap, not exact; past the budget, the
///   planner's estimate (at least the `seen` matches, at most the cap), not exact.
pub fn total(
    conn: &mut PgConnection,
    filter: &EventFilter,
    now: DateTime<Utc>,
    count_budget: Duration,
    seen: i64,
) -> Result<(i64, bool), QueryError> {
    if filter.text.is_none() && filter.correlation_id.is_none() && filter.trace_id.is_none() {
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

/// The planner's estimate of the rows `query` returns (`EXPLAIN`, nothing run): for
/// full text it comes from the `search_vector` statistics.
pub(crate) fn planner_estimate<Q: QueryFragment<Pg>>(
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

/// The exact total of a filter without full text, correlation id or trace id (the
/// rollups keep neither id), the partial minutes at its edges counted in `log_events`.
fn rollup_total(
    conn: &mut PgConnection,
    filter: &EventFilter,
    now: DateTime<Utc>,
) -> Result<i64, QueryError> {
    rollup_total_counting_edges(conn, filter, now, count_rows)
}

/// The rows matching `filter` (a window of a minute or less: an edge of a total).
pub(crate) fn count_rows(conn: &mut PgConnection, filter: &EventFilter) -> Result<i64, QueryError> {
    Ok(log_events::table
        .filter(filter.predicate())
        .count()
        .get_result(conn)?)
}

/// The exact total of a filter without full text, correlation id or trace id, from the
/// rollups, with `count_edge` counting the events of a partial minute at the window's
/// edges (the rollups hold whole minutes): the rows', or the blocks'.
pub(crate) fn rollup_total_counting_edges(
    conn: &mut PgConnection,
    filter: &EventFilter,
    now: DateTime<Utc>,
    mut count_edge: impl FnMut(&mut PgConnection, &EventFilter) -> Result<i64, QueryError>,
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
    let mut rows = |conn: &mut PgConnection, from, to: DateTime<Utc>| {
        let edge = EventFilter {
            start: from,
            end: to - TimeDelta::microseconds(1),
            ..filter.clone()
        };
        count_edge(conn, &edge)
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
    use crate::queries::filter::EventFilter;

    #[test]
    fn the_count_is_a_limited_subquery() {
        let filter = EventFilter {
            start: DateTime::<Utc>::UNIX_EPOCH,
            end: Utc::now(),
            levels: Vec::new(),
            source: Some("s".to_owned()),
            correlation_id: None,
            trace_id: None,
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
