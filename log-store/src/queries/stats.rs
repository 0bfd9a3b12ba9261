//! The aggregates behind `/stats`: events per hour and level, the busiest sources,
//! and the sketch of `metadata.duration`, from the rollups, never from a scan of the
//! window's rows.
//!
//! A window is covered exactly by [`cover_by_hour`]: whole hours and minutes from the
//! rollups, only the partial minutes at its edges from the events (rows, blocks, or
//! both: [`layouts`]). (Not whole days: a
//! day's rollup cannot say which hour its events fell in.)

use crate::blocks::read::{scan, ScanFilter};
use crate::error::{InvalidRow, QueryError};
use crate::queries::cover::{cover_by_hour, floor, Span};
use crate::queries::layouts::{self, Stored};
use crate::rollups::ALL;
use crate::sketch::DurationSketch;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Nullable, Text, Timestamptz};
use log_common::event::Level;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// `sourceCounts` in stats lists at most this many sources (the busiest).
pub const STATS_MAX_SOURCES: usize = 100;

/// Events of one hour and one level.
#[derive(Debug, Clone, PartialEq)]
pub struct HourLevelCount {
    pub hour: DateTime<Utc>,
    pub level: Level,
    pub n: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceCount {
    pub source: String,
    pub n: i64,
}

/// What the stats of a window are assembled from.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRows {
    /// Oldest hour first.
    pub hourly: Vec<HourLevelCount>,
    /// Busiest first, at most [`STATS_MAX_SOURCES`].
    pub by_source: Vec<SourceCount>,
    /// Every numeric `metadata.duration` of the window.
    pub durations: DurationSketch,
}

/// Sums of one window, filled span by span.
#[derive(Default)]
struct Totals {
    hourly: BTreeMap<(DateTime<Utc>, String), i64>,
    sources: BTreeMap<String, i64>,
    durations: DurationSketch,
}

/// The aggregates of `since..=until` (both inclusive) at time `now`.
pub fn stats(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<StatsRows, QueryError> {
    let mut totals = Totals::default();
    let stored = layouts::stored(conn)?;
    // Timestamps are stored to the microsecond: `<= until` is `< until + 1 µs`.
    // By the hour at the coarsest: `hourly` breaks the counts down by hour.
    for span in cover_by_hour(since, until + TimeDelta::microseconds(1), now) {
        match span {
            Span::Days(from, to) => add_rollup(conn, &mut totals, "log_rollup_day", from, to)?,
            Span::Hours(from, to) => add_rollup(conn, &mut totals, "log_rollup_hour", from, to)?,
            Span::Minutes(from, to) => {
                add_rollup(conn, &mut totals, "log_rollup_minute", from, to)?
            }
            Span::Rows(from, to) => add_events(conn, stored, &mut totals, (from, to), 1)?,
            Span::LessRows(from, to) => add_events(conn, stored, &mut totals, (from, to), -1)?,
        }
    }
    let hourly = totals
        .hourly
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|((hour, level), n)| {
            let level = level
                .parse()
                .map_err(|e: log_common::event::UnknownLevel| InvalidRow {
                    id: None,
                    column: "level",
                    reason: e.to_string(),
                })?;
            Ok(HourLevelCount { hour, level, n })
        })
        .collect::<Result<Vec<_>, InvalidRow>>()?;
    let mut by_source: Vec<SourceCount> = totals
        .sources
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(source, n)| SourceCount { source, n })
        .collect();
    by_source.sort_by(|a, b| b.n.cmp(&a.n).then_with(|| a.source.cmp(&b.source)));
    by_source.truncate(STATS_MAX_SOURCES);
    Ok(StatsRows {
        hourly,
        by_source,
        durations: totals.durations,
    })
}

#[derive(QueryableByName)]
struct HourLevelRow {
    #[diesel(sql_type = Timestamptz)]
    hour: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    level: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct SourceRow {
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct SketchRow {
    #[diesel(sql_type = Array<BigInt>)]
    sketch: Vec<i64>,
}

/// Adds the buckets `from..to` of one rollup table: three index range scans, for the
/// per-level rows (every source), the per-source rows (every level) and the totals'
/// sketches.
fn add_rollup(
    conn: &mut PgConnection,
    totals: &mut Totals,
    table: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), QueryError> {
    // Raw SQL for the `sum(…)::int8`: diesel's sum of a bigint is a numeric.
    let levels: Vec<HourLevelRow> = diesel::sql_query(format!(
        "SELECT date_trunc('hour', bucket) AS hour, level, sum(events)::int8 AS n FROM {table} \
         WHERE bucket >= $1 AND bucket < $2 AND source = $3 AND level <> $3 GROUP BY 1, 2"
    ))
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Text, _>(ALL)
    .load(conn)?;
    for row in levels {
        *totals.hourly.entry((row.hour, row.level)).or_insert(0) += row.n;
    }
    let sources: Vec<SourceRow> = diesel::sql_query(format!(
        "SELECT source, sum(events)::int8 AS n FROM {table} \
         WHERE level = $3 AND bucket >= $1 AND bucket < $2 AND source <> $3 GROUP BY 1"
    ))
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Text, _>(ALL)
    .load(conn)?;
    for row in sources {
        *totals.sources.entry(row.source).or_insert(0) += row.n;
    }
    let sketches: Vec<SketchRow> = diesel::sql_query(format!(
        "SELECT sketch FROM {table} \
         WHERE bucket >= $1 AND bucket < $2 AND level = $3 AND source = $3 \
           AND sketch IS NOT NULL"
    ))
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .bind::<Text, _>(ALL)
    .load(conn)?;
    for row in sketches {
        let sketch = DurationSketch::from_pairs(&row.sketch).map_err(|reason| InvalidRow {
            id: None,
            column: "sketch",
            reason,
        })?;
        totals.durations.merge(&sketch);
    }
    Ok(())
}

#[derive(QueryableByName)]
struct EventRow {
    #[diesel(sql_type = Timestamptz)]
    timestamp: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    level: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Nullable<Double>)]
    duration: Option<f64>,
}

/// Adds (`sign` 1) or takes away (-1) the events of `from..to`, rows and blocks: the
/// edges of a window, at most a minute at each end.
fn add_events(
    conn: &mut PgConnection,
    stored: Stored,
    totals: &mut Totals,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    sign: i64,
) -> Result<(), QueryError> {
    let mut add = |timestamp: DateTime<Utc>, level: String, source: String, duration| {
        let hour = floor(timestamp, TimeDelta::hours(1));
        *totals.hourly.entry((hour, level)).or_insert(0) += sign;
        *totals.sources.entry(source).or_insert(0) += sign;
        if let Some(duration) = duration {
            totals.durations.add_n(duration, sign);
        }
    };
    if stored.blocks {
        let window = ScanFilter {
            window: Some((from, to)),
            ..ScanFilter::default()
        };
        scan(conn, &window, |scanned| {
            let event = scanned.event;
            let (Some(timestamp), Some(level)) = (
                DateTime::from_timestamp_micros(event.timestamp_micros),
                ::log_blocks::LEVELS.get(usize::from(event.level)),
            ) else {
                // Not a valid event: pages pass over it too.
                return ControlFlow::Continue(());
            };
            let duration = event
                .metadata
                .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
                .and_then(|m| m.get("duration").and_then(serde_json::Value::as_f64));
            add(timestamp, (*level).to_owned(), event.source, duration);
            ControlFlow::Continue(())
        })?;
    }
    if !stored.read_rows() {
        return Ok(());
    }
    let rows: Vec<EventRow> = diesel::sql_query(
        "SELECT \"timestamp\", level, source, \
                CASE WHEN jsonb_typeof(metadata->'duration') = 'number' \
                     THEN (metadata->>'duration')::float8 END AS duration \
         FROM log_events WHERE \"timestamp\" >= $1 AND \"timestamp\" < $2",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)?;
    for row in rows {
        add(row.timestamp, row.level, row.source, row.duration);
    }
    Ok(())
}
