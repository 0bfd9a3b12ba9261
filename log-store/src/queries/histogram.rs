//! Events per time bucket and level: from the rollups, or, with a full-text query,
//! from the matching events, rows and blocks (capped).

use crate::blocks::{self, read::scan};
use crate::error::QueryError;
use crate::queries::filter::EventFilter;
use crate::queries::layouts;
use crate::rollups::ALL;
use crate::schema::log_events;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// At most this many matching rows are counted for a full-text histogram; past it the
/// answer says it is not exact.
pub const TEXT_MATCH_CAP: i64 = 100_000;

/// Counts per bucket start and level.
#[derive(Debug, Default, PartialEq)]
pub struct BucketCounts {
    pub counts: BTreeMap<DateTime<Utc>, BTreeMap<String, i64>>,
    /// False when a full-text count stopped at [`TEXT_MATCH_CAP`].
    pub exact: bool,
}

/// Counts of `filter`'s events per `bucket` from `filter.start` (a bucket boundary)
/// up to, not including, `filter.end` (also one). Without full text this reads the
/// rollups (hourly ones when the buckets are whole hours), so `bucket` must be whole
/// minutes; the correlation and trace id filters are not kept there and are not used.
pub fn histogram(
    conn: &mut PgConnection,
    filter: &EventFilter,
    bucket: TimeDelta,
) -> Result<BucketCounts, QueryError> {
    match &filter.text {
        None => from_rollups(conn, filter, bucket),
        Some(_) => from_matching_events(conn, filter, bucket),
    }
}

fn from_rollups(
    conn: &mut PgConnection,
    filter: &EventFilter,
    bucket: TimeDelta,
) -> Result<BucketCounts, QueryError> {
    use diesel::sql_types::{Array, BigInt, Text, Timestamptz};
    #[derive(QueryableByName)]
    struct RollupCount {
        #[diesel(sql_type = Timestamptz)]
        bucket: DateTime<Utc>,
        #[diesel(sql_type = Text)]
        level: String,
        #[diesel(sql_type = BigInt)]
        events: i64,
    }
    let levels: Vec<&str> = filter.levels.iter().map(|l| l.as_str()).collect();
    let hour = TimeDelta::hours(1);
    let whole_hours = |t: TimeDelta| t.num_seconds() % hour.num_seconds() == 0;
    let table = if whole_hours(bucket) && whole_hours(filter.start - DateTime::UNIX_EPOCH) {
        "log_rollup_hour"
    } else {
        "log_rollup_minute"
    };
    // One source's rows, or the rows of every source ([`ALL`]); summed over
    // partitions. Raw SQL for the `sum(…)::int8`: diesel's sum of a bigint is a numeric.
    let rows: Vec<RollupCount> = diesel::sql_query(format!(
        "SELECT bucket, level, sum(events)::int8 AS events FROM {table} \
         WHERE bucket >= $1 AND bucket < $2 AND source = $3 AND level <> '' \
           AND (cardinality($4::text[]) = 0 OR level = ANY($4)) \
         GROUP BY bucket, level"
    ))
    .bind::<Timestamptz, _>(filter.start)
    .bind::<Timestamptz, _>(filter.end)
    .bind::<Text, _>(filter.source.as_deref().unwrap_or(ALL))
    .bind::<Array<Text>, _>(levels)
    .load(conn)?;
    let mut result = BucketCounts {
        exact: true,
        ..BucketCounts::default()
    };
    for row in rows {
        add(
            &mut result,
            bucket_of(row.bucket, filter.start, bucket),
            row.level,
            row.events,
        );
    }
    Ok(result)
}

/// The matching events' times and levels, from the rows and the blocks (whichever
/// hold events, [`layouts`]), at most [`TEXT_MATCH_CAP`] + 1 of them.
fn from_matching_events(
    conn: &mut PgConnection,
    filter: &EventFilter,
    bucket: TimeDelta,
) -> Result<BucketCounts, QueryError> {
    use log_events::dsl as e;
    // The filter's window is inclusive; the histogram's end is not (timestamps are
    // stored to the microsecond).
    let mut window = filter.clone();
    window.end = filter.end - TimeDelta::microseconds(1);
    let stored = layouts::stored(conn)?;
    let cap = TEXT_MATCH_CAP as usize;
    let mut matches: Vec<(DateTime<Utc>, String)> = Vec::new();
    if stored.read_rows() {
        matches = log_events::table
            .filter(window.predicate())
            .select((e::timestamp, e::level))
            .limit(TEXT_MATCH_CAP + 1)
            .load(conn)?;
    }
    if stored.blocks && matches.len() <= cap {
        scan(
            conn,
            &blocks::query::scan_filter(&window, None),
            |scanned| {
                let event = &scanned.event;
                if let (Some(at), Some(level)) = (
                    DateTime::from_timestamp_micros(event.timestamp_micros),
                    ::log_blocks::LEVELS.get(usize::from(event.level)),
                ) {
                    matches.push((at, (*level).to_owned()));
                }
                if matches.len() > cap {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )?;
    }
    let mut result = BucketCounts {
        exact: matches.len() <= cap,
        ..BucketCounts::default()
    };
    for (at, level) in matches.into_iter().take(cap) {
        add(&mut result, bucket_of(at, filter.start, bucket), level, 1);
    }
    Ok(result)
}

fn add(result: &mut BucketCounts, bucket: DateTime<Utc>, level: String, events: i64) {
    *result
        .counts
        .entry(bucket)
        .or_default()
        .entry(level)
        .or_insert(0) += events;
}

/// The start of the bucket `at` falls in, buckets counted from `origin`.
pub fn bucket_of(at: DateTime<Utc>, origin: DateTime<Utc>, bucket: TimeDelta) -> DateTime<Utc> {
    let width = bucket.num_microseconds().unwrap_or(i64::MAX).max(1);
    let offset = (at - origin).num_microseconds().unwrap_or(0);
    origin + TimeDelta::microseconds(offset.div_euclid(width) * width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    #[test]
    fn an_instant_belongs_to_the_bucket_that_starts_at_or_before_it() {
        let origin = at("2026-11-29T10:00:00Z");
        let five = TimeDelta::minutes(5);
        assert_eq!(bucket_of(at("2026-11-29T10:00:00Z"), origin, five), origin);
        assert_eq!(
            bucket_of(at("2026-11-29T10:04:59.999999Z"), origin, five),
            origin
        );
        assert_eq!(
            bucket_of(at("2026-11-29T10:05:00Z"), origin, five),
            at("2026-11-29T10:05:00Z")
        );
        assert_eq!(
            bucket_of(at("2026-11-29T11:03:00Z"), origin, TimeDelta::hours(1)),
            at("2026-11-29T11:00:00Z")
        );
    }
}
