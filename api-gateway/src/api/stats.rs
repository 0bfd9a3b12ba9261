//! `/stats`: the answer's shape and its assembly from the store's aggregates.

use chrono::{DateTime, Utc};
use log_common::event::Level;
use log_store::queries::StatsRows;
use log_store::sketch::RELATIVE_ACCURACY;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

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

/// Percentiles of `metadata.duration`, from a sketch kept with the rollups (DDSketch):
/// each is within `relativeError` of the exact value, whatever the window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DurationPercentiles {
    /// Events the percentiles describe (those with a number in `metadata.duration`):
    /// exact.
    pub samples: i64,
    /// True when the percentiles are estimates (always, when there are samples).
    pub estimated: bool,
    /// The bound on each percentile's error, relative to its value.
    pub relative_error: f64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Stats {
    pub fn assemble(since: DateTime<Utc>, until: DateTime<Utc>, rows: StatsRows) -> Stats {
        let mut level_counts: BTreeMap<String, i64> = Level::ALL
            .iter()
            .map(|l| (l.as_str().to_owned(), 0))
            .collect();
        for row in &rows.hourly {
            *level_counts
                .entry(row.level.as_str().to_owned())
                .or_default() += row.n;
        }
        let total_logs: i64 = level_counts.values().sum();
        let errors = level_counts.get("ERROR").copied().unwrap_or(0)
            + level_counts.get("FATAL").copied().unwrap_or(0);
        let top_sources = rows
            .by_source
            .iter()
            .take(10)
            .map(|r| SourceCount {
                source: r.source.clone(),
                count: r.n,
            })
            .collect();
        let mut hours: BTreeMap<DateTime<Utc>, BTreeMap<String, i64>> = BTreeMap::new();
        for row in rows.hourly {
            hours
                .entry(row.hour)
                .or_default()
                .insert(row.level.as_str().to_owned(), row.n);
        }
        Stats {
            total_logs,
            level_counts,
            source_counts: rows
                .by_source
                .into_iter()
                .map(|r| (r.source, r.n))
                .collect(),
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
                samples: rows.durations.count(),
                estimated: rows.durations.count() > 0,
                relative_error: RELATIVE_ACCURACY,
                p50: rows.durations.quantile(0.5),
                p95: rows.durations.quantile(0.95),
                p99: rows.durations.quantile(0.99),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_store::queries::{HourLevelCount, SourceCount};
    use log_store::sketch::DurationSketch;

    #[test]
    fn levels_sources_hours_and_rate_add_up() {
        let hour = |h: u32| {
            DateTime::<Utc>::from_timestamp(1_700_000_000 + i64::from(h) * 3600, 0).expect("ts")
        };
        let rows = StatsRows {
            hourly: vec![
                HourLevelCount {
                    hour: hour(0),
                    level: Level::Info,
                    n: 6,
                },
                HourLevelCount {
                    hour: hour(0),
                    level: Level::Error,
                    n: 1,
                },
                HourLevelCount {
                    hour: hour(1),
                    level: Level::Fatal,
                    n: 1,
                },
            ],
            by_source: (0..12)
                .map(|i| SourceCount {
                    source: format!("s{i:02}"),
                    n: 12 - i,
                })
                .collect(),
            durations: [1.0, 2.0]
                .into_iter()
                .fold(DurationSketch::default(), |mut s, v| {
                    s.add(v);
                    s
                }),
        };
        let stats = Stats::assemble(hour(0), hour(2), rows);
        assert_eq!(stats.total_logs, 8);
        assert_eq!(stats.level_counts.len(), 6, "every level, zero included");
        assert_eq!(stats.level_counts["WARN"], 0);
        assert_eq!(stats.error_rate, 0.25);
        assert_eq!(stats.top_sources.len(), 10);
        assert_eq!(stats.source_counts.len(), 12);
        assert_eq!(stats.hourly.len(), 2);
        assert_eq!(stats.hourly[0].counts["ERROR"], 1);
        assert!(stats.duration.estimated);
        assert_eq!(stats.duration.samples, 2);
    }
}
