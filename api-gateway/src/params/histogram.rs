//! `GET /histogram` parameters: the window and filters of `/logs` (no paging, no
//! correlation or trace id), a bucket width, and an optional full-text query.

use super::{search_text, FilterParams, LogFilter};
use chrono::{DateTime, TimeDelta, Utc};
use log_common::error::ApiError;
use log_store::queries::histogram::bucket_of;
use serde::Deserialize;
use utoipa::IntoParams;

/// The widths a bucket can have, smallest first.
const INTERVALS: [(&str, i64); 12] = [
    ("1m", 60),
    ("2m", 120),
    ("5m", 300),
    ("10m", 600),
    ("15m", 900),
    ("30m", 1800),
    ("1h", 3600),
    ("2h", 7200),
    ("3h", 10_800),
    ("6h", 21_600),
    ("12h", 43_200),
    ("1d", 86_400),
];
/// The automatic width gives at most this many buckets.
const TARGET_BUCKETS: i64 = 100;
/// A width asked for may give at most this many (a day of minutes).
const MAX_BUCKETS: i64 = 1440;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistogramParams {
    /// Start of the window: RFC 3339 or `2024-01-01T00:00:00` (UTC). Default: 24 h
    /// before `endTime`. Rounded down to a bucket boundary.
    #[param(value_type = Option<String>, format = DateTime)]
    pub start_time: Option<String>,
    /// End of the window. Default: now. Rounded up to a bucket boundary.
    #[param(value_type = Option<String>, format = DateTime)]
    pub end_time: Option<String>,
    /// Bucket width: 1m, 2m, 5m, 10m, 15m, 30m, 1h, 2h, 3h, 6h, 12h or 1d (at most 1440
    /// buckets). Default: the smallest width that gives at most 100 buckets.
    pub interval: Option<String>,
    /// One level or a comma-separated list (`ERROR,FATAL`); aliases such as `warning` work.
    pub level: Option<String>,
    /// Exact source name.
    pub source: Option<String>,
    /// Full-text query, as in `/search`: the matching events are counted (at most
    /// 100,000; `exact` is false past that).
    pub query: Option<String>,
}

/// A validated histogram request: the window is snapped to bucket boundaries.
#[derive(Debug, Clone)]
pub struct HistogramRequest {
    pub filter: LogFilter,
    pub interval: (&'static str, TimeDelta),
}

impl HistogramParams {
    pub fn validate(self, now: DateTime<Utc>) -> Result<HistogramRequest, ApiError> {
        let text = search_text(self.query)?;
        let window = FilterParams {
            start_time: self.start_time,
            end_time: self.end_time,
            level: self.level,
            source: self.source,
            ..FilterParams::default()
        };
        let (mut filter, _) = window.validate(now, text)?;
        let span = filter.query.end - filter.query.start;
        let (name, seconds) = match self.interval.as_deref().map(str::trim) {
            None | Some("") => automatic(span),
            Some(asked) => INTERVALS
                .into_iter()
                .find(|(name, _)| *name == asked)
                .ok_or_else(|| {
                    let names: Vec<&str> = INTERVALS.iter().map(|(n, _)| *n).collect();
                    ApiError::invalid_field(
                        "interval",
                        format!("'{asked}' is not one of {}", names.join(", ")),
                    )
                })?,
        };
        let width = TimeDelta::seconds(seconds);
        let start = bucket_of(filter.query.start, DateTime::UNIX_EPOCH, width);
        let mut end = bucket_of(filter.query.end, DateTime::UNIX_EPOCH, width);
        if end < filter.query.end || end == start {
            end += width;
        }
        let buckets = (end - start).num_seconds() / seconds;
        if buckets > MAX_BUCKETS {
            return Err(ApiError::invalid_field(
                "interval",
                format!("'{name}' gives {buckets} buckets over this window; at most {MAX_BUCKETS}"),
            ));
        }
        filter.query.start = start;
        filter.query.end = end;
        Ok(HistogramRequest {
            filter,
            interval: (name, width),
        })
    }
}

/// The smallest width giving at most [`TARGET_BUCKETS`] over `span`.
fn automatic(span: TimeDelta) -> (&'static str, i64) {
    let seconds = span.num_seconds().max(1);
    INTERVALS
        .into_iter()
        .find(|(_, width)| (seconds + width - 1) / width <= TARGET_BUCKETS)
        .unwrap_or(INTERVALS[INTERVALS.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("timestamp")
    }

    fn params(start: &str, end: &str, interval: Option<&str>) -> HistogramParams {
        HistogramParams {
            start_time: Some(start.into()),
            end_time: Some(end.into()),
            interval: interval.map(Into::into),
            ..HistogramParams::default()
        }
    }

    #[test]
    fn the_automatic_width_gives_at_most_a_hundred_buckets() {
        assert_eq!(automatic(TimeDelta::hours(1)).0, "1m");
        assert_eq!(automatic(TimeDelta::hours(24)).0, "15m");
        assert_eq!(automatic(TimeDelta::days(7)).0, "2h");
        assert_eq!(automatic(TimeDelta::days(400)).0, "1d");
    }

    #[test]
    fn the_window_is_snapped_outwards_to_bucket_boundaries() {
        let now = at("2026-11-29T12:00:00Z");
        let request = params("2026-11-29T10:03:10Z", "2026-11-29T10:21:00Z", Some("5m"))
            .validate(now)
            .expect("valid");
        assert_eq!(request.filter.query.start, at("2026-11-29T10:00:00Z"));
        assert_eq!(request.filter.query.end, at("2026-11-29T10:25:00Z"));
        assert_eq!(request.interval.1, TimeDelta::minutes(5));
    }

    #[test]
    fn an_unknown_width_or_too_many_buckets_is_a_400_naming_interval() {
        let now = at("2026-11-29T12:00:00Z");
        for (interval, start) in [
            ("7m", "2026-11-29T10:00:00Z"),
            ("1m", "2026-11-20T10:00:00Z"),
        ] {
            let error = params(start, "2026-11-29T11:00:00Z", Some(interval))
                .validate(now)
                .expect_err("refused");
            let body = error.to_body("/h");
            assert_eq!(body.errors[0].field, "interval", "{interval}");
        }
    }
}
