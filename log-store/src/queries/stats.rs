//! The aggregates behind `/stats`: events per hour and level, the busiest sources,
//! and the sketch of `metadata.duration`, from the rollups, never from a scan of the
//! window's rows.
//!
//! A window is covered exactly ([`cover`]): its whole days from the day rollup, the
//! whole hours and then minutes at its edges from the hour and minute rollups, and
//! only the partial minutes at its very edges from the rows. A window that ends now
//! takes its last day from the day rollup less the rows dated after its end (events
//! from a clock a little ahead), which are few, instead of hours and minutes.

use crate::error::{InvalidRow, QueryError};
use crate::rollups::ALL;
use crate::sketch::DurationSketch;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Double, Nullable, Text, Timestamptz};
use log_common::event::Level;
use std::collections::BTreeMap;

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

/// A part of a window and where its events are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// Daily rollup buckets from `.0` (inclusive) to `.1` (exclusive).
    Days(DateTime<Utc>, DateTime<Utc>),
    /// Hourly rollup buckets, likewise.
    Hours(DateTime<Utc>, DateTime<Utc>),
    /// Minute rollup buckets, likewise.
    Minutes(DateTime<Utc>, DateTime<Utc>),
    /// Rows with `.0 <= timestamp < .1`.
    Rows(DateTime<Utc>, DateTime<Utc>),
    /// Rows with `.0 <= timestamp < .1`, taken away.
    LessRows(DateTime<Utc>, DateTime<Utc>),
}

fn floor(t: DateTime<Utc>, width: TimeDelta) -> DateTime<Utc> {
    t.duration_trunc(width).unwrap_or(t)
}

fn ceil(t: DateTime<Utc>, width: TimeDelta) -> DateTime<Utc> {
    let down = floor(t, width);
    if down == t {
        t
    } else {
        down + width
    }
}

/// Makes the span of one grain.
type SpanOf = fn(DateTime<Utc>, DateTime<Utc>) -> Span;

/// The rollup grains, coarsest first, and the span each makes.
const GRAINS: [(TimeDelta, SpanOf); 3] = [
    (TimeDelta::days(1), Span::Days),
    (TimeDelta::hours(1), Span::Hours),
    (TimeDelta::minutes(1), Span::Minutes),
];

/// The spans that count `since <= timestamp < end` exactly, given the time `now`: the
/// whole days from the day rollup, the whole hours around them from the hourly one,
/// the whole minutes around those from the minute one, and the rows of the partial
/// minutes at the very edges.
pub fn cover(since: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Span> {
    let mut spans = Vec::new();
    if since < end {
        fill(since, end, now, 0, &mut spans);
    }
    // Adjacent spans of one grain become one (one statement instead of two).
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match (merged.last_mut(), span) {
            (Some(Span::Days(_, end)), Span::Days(from, to)) if *end == from => *end = to,
            (Some(Span::Hours(_, end)), Span::Hours(from, to)) if *end == from => *end = to,
            (Some(Span::Minutes(_, end)), Span::Minutes(from, to)) if *end == from => *end = to,
            _ => merged.push(span),
        }
    }
    merged
}

/// Covers `from..to` with grain `level` and finer.
fn fill(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    level: usize,
    spans: &mut Vec<Span>,
) {
    let Some((width, span)) = GRAINS.get(level) else {
        spans.push(Span::Rows(from, to));
        return;
    };
    let (a, b) = (ceil(from, *width), floor(to, *width));
    // Ends now, inside a bucket that starts within the window: that bucket's rollup,
    // less what is dated after the end (events from a clock a little ahead: few).
    if to > b && to > now - TimeDelta::minutes(1) && from <= b {
        if from < b {
            fill(from, b, now, level, spans);
        }
        spans.push(span(b, b + *width));
        spans.push(Span::LessRows(to, b + *width));
        return;
    }
    if a >= b {
        // No whole bucket of this grain inside: finer ones.
        fill(from, to, now, level + 1, spans);
        return;
    }
    if from < a {
        fill(from, a, now, level + 1, spans);
    }
    spans.push(span(a, b));
    if b < to {
        fill(b, to, now, level + 1, spans);
    }
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
    // Timestamps are stored to the microsecond: `<= until` is `< until + 1 µs`.
    for span in cover(since, until + TimeDelta::microseconds(1), now) {
        match span {
            Span::Days(from, to) => add_rollup(conn, &mut totals, "log_rollup_day", from, to)?,
            Span::Hours(from, to) => add_rollup(conn, &mut totals, "log_rollup_hour", from, to)?,
            Span::Minutes(from, to) => {
                add_rollup(conn, &mut totals, "log_rollup_minute", from, to)?
            }
            Span::Rows(from, to) => add_rows(conn, &mut totals, from, to, 1)?,
            Span::LessRows(from, to) => add_rows(conn, &mut totals, from, to, -1)?,
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

/// Adds (`sign` 1) or takes away (-1) the rows of `from..to`: the edges of a window,
/// at most a minute at each end.
fn add_rows(
    conn: &mut PgConnection,
    totals: &mut Totals,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    sign: i64,
) -> Result<(), QueryError> {
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
        let hour = floor(row.timestamp, TimeDelta::hours(1));
        *totals.hourly.entry((hour, row.level)).or_insert(0) += sign;
        *totals.sources.entry(row.source).or_insert(0) += sign;
        if let Some(duration) = row.duration {
            totals.durations.add_n(duration, sign);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Span::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_week_ending_now_is_days_plus_edge_hours_minutes_and_rows() {
        let now = at("2026-11-29T15:42:10.5Z");
        let since = at("2026-11-22T15:42:10.5Z");
        assert_eq!(
            cover(since, now, now),
            [
                Rows(since, at("2026-11-22T15:43:00Z")),
                Minutes(at("2026-11-22T15:43:00Z"), at("2026-11-22T16:00:00Z")),
                Hours(at("2026-11-22T16:00:00Z"), at("2026-11-23T00:00:00Z")),
                Days(at("2026-11-23T00:00:00Z"), at("2026-11-30T00:00:00Z")),
                LessRows(now, at("2026-11-30T00:00:00Z")),
            ]
        );
        // Within today: the hour ending now, less what follows.
        let hour_ago = at("2026-11-29T14:42:10.5Z");
        assert_eq!(
            cover(hour_ago, now, now),
            [
                Rows(hour_ago, at("2026-11-29T14:43:00Z")),
                Minutes(at("2026-11-29T14:43:00Z"), at("2026-11-29T15:00:00Z")),
                Hours(at("2026-11-29T15:00:00Z"), at("2026-11-29T16:00:00Z")),
                LessRows(now, at("2026-11-29T16:00:00Z")),
            ]
        );
        // Within the hour: the minutes before this one and the minute ending now, in
        // one span, less what follows.
        let minutes_ago = at("2026-11-29T15:30:30Z");
        assert_eq!(
            cover(minutes_ago, now, now),
            [
                Rows(minutes_ago, at("2026-11-29T15:31:00Z")),
                Minutes(at("2026-11-29T15:31:00Z"), at("2026-11-29T15:43:00Z")),
                LessRows(now, at("2026-11-29T15:43:00Z")),
            ]
        );
    }

    #[test]
    fn a_closed_window_takes_its_tail_from_minutes_and_rows() {
        let now = at("2026-11-29T15:42:10Z");
        let (since, end) = (at("2026-11-29T08:00:00Z"), at("2026-11-29T10:30:30Z"));
        assert_eq!(
            cover(since, end, now),
            [
                Hours(since, at("2026-11-29T10:00:00Z")),
                Minutes(at("2026-11-29T10:00:00Z"), at("2026-11-29T10:30:00Z")),
                Rows(at("2026-11-29T10:30:00Z"), end),
            ]
        );
        // Inside one minute: only rows.
        let short = (at("2026-11-29T10:00:10Z"), at("2026-11-29T10:00:50Z"));
        assert_eq!(cover(short.0, short.1, now), [Rows(short.0, short.1)]);
        assert_eq!(cover(short.1, short.0, now), []);
    }

    /// Where an instant is counted: +1 for each span holding it, -1 for each taking
    /// it away.
    fn weight(spans: &[Span], t: DateTime<Utc>) -> i64 {
        let day = |t: DateTime<Utc>| floor(t, TimeDelta::days(1));
        let hour = |t: DateTime<Utc>| floor(t, TimeDelta::hours(1));
        let minute = |t: DateTime<Utc>| floor(t, TimeDelta::minutes(1));
        spans
            .iter()
            .map(|span| match *span {
                Days(a, b) => i64::from(day(t) >= a && day(t) < b),
                Hours(a, b) => i64::from(hour(t) >= a && hour(t) < b),
                Minutes(a, b) => i64::from(minute(t) >= a && minute(t) < b),
                Rows(a, b) => i64::from(t >= a && t < b),
                LessRows(a, b) => -i64::from(t >= a && t < b),
            })
            .sum()
    }

    proptest! {
        #[test]
        fn every_instant_is_counted_once_inside_the_window_and_never_outside(
            start in 0i64..400_000_000,
            length in 0i64..700_000_000,
            now_after_end in prop_oneof![Just(0i64), 0i64..100_000_000],
            probe in -100_000_000i64..1_300_000_000,
        ) {
            let base = at("2026-11-20T00:00:00Z");
            let since = base + TimeDelta::milliseconds(start);
            let end = since + TimeDelta::milliseconds(length);
            let now = end + TimeDelta::milliseconds(now_after_end);
            let spans = cover(since, end, now);
            let t = base + TimeDelta::milliseconds(probe);
            prop_assert_eq!(weight(&spans, t), i64::from(t >= since && t < end), "{:?} at {}", spans, t);
            // Rows are read only at the edges: at most a minute each, plus what lies
            // after a window that ends now.
            for span in &spans {
                if let Rows(a, b) = span {
                    prop_assert!(*b - *a <= TimeDelta::minutes(1), "{:?}", span);
                }
            }
        }
    }
}
