//! The aggregates behind `/stats`: events per hour and level, the busiest sources,
//! and percentiles of `metadata.duration`.
//!
//! Raw SQL with fixed parameters, not diesel's DSL: `date_trunc` grouping,
//! `percentile_cont … WITHIN GROUP` and `TABLESAMPLE` have no DSL form.

use crate::error::{InvalidRow, QueryError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text, Timestamptz};
use log_common::event::Level;

/// `sourceCounts` in stats lists at most this many sources (the busiest).
pub const STATS_MAX_SOURCES: i64 = 100;
/// Percentiles of `metadata.duration` are exact up to this many events in the window
/// unless the caller says otherwise.
pub const DEFAULT_SAMPLE_TARGET: i64 = 200_000;

/// Events of one hour and one level.
#[derive(Debug, Clone, PartialEq)]
pub struct HourLevelCount {
    pub hour: DateTime<Utc>,
    pub level: Level,
    pub n: i64,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct SourceCountRow {
    #[diesel(sql_type = Text)]
    pub source: String,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct DurationRow {
    #[diesel(sql_type = BigInt)]
    pub samples: i64,
    #[diesel(sql_type = Nullable<Double>)]
    pub p50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub p95: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub p99: Option<f64>,
}

/// What the stats of a window are assembled from.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRows {
    /// Oldest hour first.
    pub hourly: Vec<HourLevelCount>,
    /// Busiest first, at most [`STATS_MAX_SOURCES`].
    pub by_source: Vec<SourceCountRow>,
    pub duration: DurationRow,
    /// True when the percentiles come from a block sample (more events in the
    /// window than the sample target).
    pub estimated: bool,
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

/// The `TABLESAMPLE` clause that keeps the percentiles' sort near `target` rows, or
/// none when the window holds no more than that.
pub fn sample_clause(events_in_window: i64, target: i64) -> Option<String> {
    (events_in_window > target).then(|| {
        let percent = (target as f64 * 100.0 / events_in_window as f64).clamp(0.01, 100.0);
        format!(" TABLESAMPLE SYSTEM ({percent:.4})")
    })
}

/// The aggregates of `since..=until`; percentiles are sampled past `sample_target`
/// events.
pub fn stats(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    sample_target: i64,
) -> Result<StatsRows, QueryError> {
    // One scan gives the hourly histogram; level counts and the total are its sums.
    let hourly = diesel::sql_query(
        "SELECT date_trunc('hour', \"timestamp\") AS hour, level, count(*) AS n \
         FROM log_events WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 \
         GROUP BY 1, 2 ORDER BY 1",
    )
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(until)
    .load::<HourLevelRow>(conn)?
    .into_iter()
    .map(|row| {
        let level = row
            .level
            .parse()
            .map_err(|e: log_common::event::UnknownLevel| InvalidRow {
                id: None,
                column: "level",
                reason: e.to_string(),
            })?;
        Ok(HourLevelCount {
            hour: row.hour,
            level,
            n: row.n,
        })
    })
    .collect::<Result<Vec<_>, InvalidRow>>()?;
    let by_source = diesel::sql_query(
        "SELECT source, count(*) AS n \
         FROM log_events WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 \
         GROUP BY source ORDER BY n DESC, source LIMIT $3",
    )
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(until)
    .bind::<BigInt, _>(STATS_MAX_SOURCES)
    .load::<SourceCountRow>(conn)?;
    // Percentiles need a sort of every value: exact up to `sample_target` events,
    // estimated from a block sample of about that many beyond.
    let total: i64 = hourly.iter().map(|h| h.n).sum();
    let sample = sample_clause(total, sample_target);
    let duration = diesel::sql_query(format!(
        "SELECT count(*) AS samples, \
         percentile_cont(0.5) WITHIN GROUP (ORDER BY (metadata->>'duration')::float8) AS p50, \
         percentile_cont(0.95) WITHIN GROUP (ORDER BY (metadata->>'duration')::float8) AS p95, \
         percentile_cont(0.99) WITHIN GROUP (ORDER BY (metadata->>'duration')::float8) AS p99 \
         FROM log_events{} WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 \
         AND jsonb_typeof(metadata->'duration') = 'number'",
        sample.as_deref().unwrap_or("")
    ))
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(until)
    .get_result::<DurationRow>(conn)?;
    Ok(StatsRows {
        hourly,
        by_source,
        duration,
        estimated: sample.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_sampled_only_past_the_target() {
        let target = DEFAULT_SAMPLE_TARGET;
        assert_eq!(sample_clause(target, target), None);
        assert_eq!(
            sample_clause(target * 4, target).as_deref(),
            Some(" TABLESAMPLE SYSTEM (25.0000)")
        );
        assert_eq!(
            sample_clause(i64::MAX, target).as_deref(),
            Some(" TABLESAMPLE SYSTEM (0.0100)")
        );
    }
}
