//! `GET /histogram`: events per time bucket and level, every bucket of the window
//! listed (empty ones with zero counts), so a chart needs no gap filling.

use chrono::{DateTime, TimeDelta, Utc};
use log_store::queries::BucketCounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Histogram {
    /// The covered window's start: the asked start, rounded down to a bucket boundary.
    pub start_time: DateTime<Utc>,
    /// The covered window's end (exclusive): the asked end, rounded up to one.
    pub end_time: DateTime<Utc>,
    /// The bucket width, e.g. `5m`.
    pub interval: String,
    pub interval_seconds: i64,
    /// False when a full-text histogram counted only the first matches (see
    /// `TEXT_MATCH_CAP`); counts without `query` come from exact per-minute counts.
    pub exact: bool,
    pub buckets: Vec<HistogramBucket>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistogramBucket {
    pub start: DateTime<Utc>,
    pub total: i64,
    /// Events per level; levels with none are left out.
    pub counts: BTreeMap<String, i64>,
}

impl Histogram {
    pub fn assemble(
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        interval: (&str, TimeDelta),
        mut found: BucketCounts,
    ) -> Self {
        let (name, width) = interval;
        let mut buckets = Vec::new();
        let mut at = start;
        while at < end {
            let counts = found.counts.remove(&at).unwrap_or_default();
            buckets.push(HistogramBucket {
                start: at,
                total: counts.values().sum(),
                counts,
            });
            at += width;
        }
        Histogram {
            start_time: start,
            end_time: end,
            interval: name.to_owned(),
            interval_seconds: width.num_seconds(),
            exact: found.exact,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_of_the_window_is_listed_with_its_total() {
        let start: DateTime<Utc> = "2026-11-29T10:00:00Z".parse().expect("start");
        let mut found = BucketCounts {
            exact: true,
            ..BucketCounts::default()
        };
        found.counts.insert(
            start + TimeDelta::minutes(10),
            BTreeMap::from([("ERROR".to_owned(), 2), ("INFO".to_owned(), 5)]),
        );
        let end = start + TimeDelta::minutes(15);
        let h = Histogram::assemble(start, end, ("5m", TimeDelta::minutes(5)), found);
        let totals: Vec<i64> = h.buckets.iter().map(|b| b.total).collect();
        assert_eq!(totals, [0, 0, 7]);
        assert_eq!(h.buckets[2].counts["ERROR"], 2);
        assert_eq!(h.interval_seconds, 300);
        assert!(h.exact);
    }
}
