//! Query-string parameters, validated into typed filters. Parameters arrive as
//! strings so that every rejection is a 400 that names the parameter (serde's own
//! errors would not).

pub mod dead_letters;
mod histogram;

pub use histogram::{HistogramParams, HistogramRequest};

use chrono::{DateTime, Duration, Utc};
use log_common::error::ApiError;
use log_common::event::{parse_timestamp, Level, UnknownLevel};
pub use log_store::queries::{Conditions, Cursor, EventFilter, Paging};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;

pub const MAX_PAGE_SIZE: i64 = 1000;
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_QUERY_CHARS: usize = 500;

/// The filters and paging `/logs` and `/search` share.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Start of the window, inclusive: RFC 3339 or `2024-01-01T00:00:00` (UTC). Default: 24 h before `endTime`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub start_time: Option<String>,
    /// End of the window, inclusive. Default: now.
    #[param(value_type = Option<String>, format = DateTime)]
    pub end_time: Option<String>,
    /// One level or a comma-separated list (`ERROR,FATAL`); aliases such as `warning` work.
    pub level: Option<String>,
    /// Exact source name.
    pub source: Option<String>,
    /// Exact correlation id.
    pub correlation_id: Option<String>,
    /// Exact trace id (OpenTelemetry).
    pub trace_id: Option<String>,
    /// 0-based page number (offset paging). Ignored when `cursor` is given. A page must
    /// end within the first 100,000 events ((page + 1) × size) unless it lies past the
    /// end of an exact total; deeper, use `cursor`.
    #[param(value_type = Option<u32>, minimum = 0, maximum = 1000000)]
    pub page: Option<String>,
    /// Page size, 1..1000. Default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub size: Option<String>,
    /// Keyset cursor: the `nextCursor` of the previous page. Stays fast at any depth.
    pub cursor: Option<String>,
}

/// `GET /logs` parameters: the shared filters.
#[derive(Debug, Default, Deserialize)]
pub struct LogsParams {
    #[serde(flatten)]
    pub filter: FilterParams,
}

/// `GET /search`'s own parameter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchText {
    /// Words to find in the message (stemmed English). `"a phrase"` in quotes,
    /// `-word` to exclude, `or` between alternatives. At most 500 characters.
    #[param(required = true, min_length = 1, max_length = 500)]
    pub query: Option<String>,
}

/// `GET /search` parameters: the search text plus the shared filters.
#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    #[serde(flatten)]
    pub text: SearchText,
    #[serde(flatten)]
    pub filter: FilterParams,
}

// utoipa's IntoParams derive cannot flatten a field, so the documented parameters
// of the two flattened structs are put together here.
impl IntoParams for LogsParams {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        FilterParams::into_params(parameter_in)
    }
}

impl IntoParams for SearchParams {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = SearchText::into_params(&parameter_in);
        params.extend(FilterParams::into_params(&parameter_in));
        params
    }
}

/// `GET /stats` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// How many hours back from now, 1..168. Default 24 (when no `startTime`/`endTime`).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 168)]
    pub hours_back: Option<String>,
    /// Start of the window instead of `hoursBack`: RFC 3339 or `2024-01-01T00:00:00`
    /// (UTC). Default: 24 h before `endTime`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub start_time: Option<String>,
    /// End of the window (inclusive). Default: now. At most 31 days after `startTime`.
    #[param(value_type = Option<String>, format = DateTime)]
    pub end_time: Option<String>,
}

/// The window `/stats` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsWindow {
    /// The last so many hours, up to now.
    HoursBack(i64),
    /// `startTime`..=`endTime`; `open_ended` when no `endTime` was given (until now).
    Range {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        open_ended: bool,
    },
}

/// The longest `startTime`..`endTime` a `/stats` answers (the rollups make any window
/// cheap; this bounds what one request may ask of them).
pub const MAX_STATS_WINDOW_DAYS: i64 = 31;

/// Validated filters, shared by `/logs` and `/search`. Serialises to the cache key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogFilter {
    /// What the store filters on.
    #[serde(flatten)]
    pub query: EventFilter,
    /// True when the client gave no `endTime` ("until now"): keyed as such, so the
    /// cache key does not change every millisecond.
    pub open_ended: bool,
    /// True when `startTime` was not given (24 h before the end).
    pub default_start: bool,
}

impl LogsParams {
    pub fn validate(self, now: DateTime<Utc>) -> Result<(LogFilter, Paging), ApiError> {
        self.filter.validate(now, None)
    }
}

impl SearchParams {
    pub fn validate(self, now: DateTime<Utc>) -> Result<(LogFilter, Paging), ApiError> {
        let text = search_text(self.text.query)?
            .ok_or_else(|| ApiError::invalid_field("query", "is required and must not be blank"))?;
        self.filter.validate(now, Some(text))
    }
}

impl StatsParams {
    pub fn window(self, now: DateTime<Utc>) -> Result<StatsWindow, ApiError> {
        if self.start_time.is_none() && self.end_time.is_none() {
            return self.hours_back().map(StatsWindow::HoursBack);
        }
        if self.hours_back.is_some() {
            return Err(ApiError::invalid_field(
                "hoursBack",
                "give either hoursBack or startTime/endTime, not both",
            ));
        }
        let window = FilterParams {
            start_time: self.start_time,
            end_time: self.end_time,
            ..FilterParams::default()
        };
        let (filter, _) = window.validate(now, None)?;
        let (since, until) = (filter.query.start, filter.query.end);
        if until - since > Duration::days(MAX_STATS_WINDOW_DAYS) {
            return Err(ApiError::invalid_field(
                "endTime",
                format!("must be at most {MAX_STATS_WINDOW_DAYS} days after startTime"),
            ));
        }
        Ok(StatsWindow::Range {
            since,
            until,
            open_ended: filter.open_ended,
        })
    }

    fn hours_back(&self) -> Result<i64, ApiError> {
        match &self.hours_back {
            None => Ok(24),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(h) if (1..=168).contains(&h) => Ok(h),
                _ => Err(ApiError::invalid_field(
                    "hoursBack",
                    format!("must be a whole number from 1 to 168, got '{v}'"),
                )),
            },
        }
    }
}

impl FilterParams {
    /// The filter and the paging; `text` is the validated search text of `/search`.
    pub fn validate(
        self,
        now: DateTime<Utc>,
        text: Option<String>,
    ) -> Result<(LogFilter, Paging), ApiError> {
        let parse_time = |name: &str, v: &str| {
            parse_timestamp(v).ok_or_else(|| {
                ApiError::invalid_field(
                    name,
                    format!("'{v}' is not RFC 3339 (2024-01-01T12:00:00Z) or 2024-01-01T12:00:00"),
                )
            })
        };
        let open_ended = self.end_time.is_none();
        let end = match self.end_time.as_deref() {
            Some(v) => parse_time("endTime", v)?,
            None => now,
        };
        let start = match self.start_time.as_deref() {
            Some(v) => parse_time("startTime", v)?,
            None => end - Duration::hours(24),
        };
        if end < start {
            return Err(ApiError::invalid_field(
                "endTime",
                "must not be before startTime",
            ));
        }
        let levels = levels(self.level.as_deref())?;
        let filter = LogFilter {
            query: EventFilter {
                start,
                end,
                levels,
                source: text_param("source", self.source)?,
                correlation_id: text_param("correlationId", self.correlation_id)?,
                trace_id: text_param("traceId", self.trace_id)?,
                text,
            },
            open_ended,
            default_start: self.start_time.is_none(),
        };
        Ok((filter, paging(self.page, self.size, self.cursor)?))
    }
}

/// `GET /tail` parameters: the filters of `/search` without a window (a tail has no end).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct TailParams {
    /// One level or a comma-separated list (`ERROR,FATAL`); aliases such as `warning` work.
    pub level: Option<String>,
    /// Exact source name.
    pub source: Option<String>,
    /// Words to find in the message, in `/search`'s syntax. At most 500 characters.
    #[param(max_length = 500)]
    pub query: Option<String>,
    /// Exact correlation id.
    pub correlation_id: Option<String>,
    /// Exact trace id (OpenTelemetry).
    pub trace_id: Option<String>,
}

impl TailParams {
    pub fn validate(self) -> Result<Conditions, ApiError> {
        Ok(Conditions {
            levels: levels(self.level.as_deref())?,
            source: text_param("source", self.source)?,
            correlation_id: text_param("correlationId", self.correlation_id)?,
            trace_id: text_param("traceId", self.trace_id)?,
            text: search_text(self.query)?,
        })
    }
}

/// `level`: one level or a comma-separated list, each once, in level order.
fn levels(list: Option<&str>) -> Result<Vec<Level>, ApiError> {
    let mut levels = Vec::new();
    for name in list
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let level: Level = name
            .parse()
            .map_err(|e: UnknownLevel| ApiError::invalid_field("level", e.to_string()))?;
        if !levels.contains(&level) {
            levels.push(level);
        }
    }
    levels.sort();
    Ok(levels)
}

/// The full-text `query`: trimmed, blank means absent, at most [`MAX_QUERY_CHARS`].
fn search_text(value: Option<String>) -> Result<Option<String>, ApiError> {
    match text_param("query", value)? {
        Some(q) if q.chars().count() > MAX_QUERY_CHARS => Err(ApiError::invalid_field(
            "query",
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        )),
        text => Ok(text),
    }
}

/// A free-text parameter: trimmed, blank means absent. NUL is refused here because
/// PostgreSQL text cannot hold it (the query would fail as a 500).
fn text_param(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) if v.contains('\0') => Err(ApiError::invalid_field(
            name,
            "must not contain NUL (\\u0000) characters",
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn paging(
    page: Option<String>,
    size: Option<String>,
    cursor: Option<String>,
) -> Result<Paging, ApiError> {
    let size = match size.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(s) if (1..=MAX_PAGE_SIZE).contains(&s) => s,
            _ => {
                return Err(ApiError::invalid_field(
                    "size",
                    format!("must be a whole number from 1 to {MAX_PAGE_SIZE}, got '{v}'"),
                ))
            }
        },
    };
    if let Some(c) = cursor.as_deref().filter(|c| !c.is_empty()) {
        let cursor = Cursor::decode(c).ok_or_else(|| {
            ApiError::invalid_field("cursor", "is not a cursor this service issued")
        })?;
        return Ok(Paging::After { cursor, size });
    }
    let page = match page.as_deref() {
        None => 0,
        Some(v) => match v.trim().parse::<i64>() {
            // Bounded so page * size cannot overflow; deep pages want the cursor.
            Ok(p) if (0..=1_000_000).contains(&p) => p,
            _ => {
                return Err(ApiError::invalid_field(
                    "page",
                    format!("must be a whole number from 0 to 1000000, got '{v}'"),
                ))
            }
        },
    };
    Ok(Paging::Offset { page, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_common::error::ApiError;
    use uuid::Uuid;

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::Validation { errors, .. } => errors[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn logs(pairs: &[(&str, &str)]) -> Result<(LogFilter, Paging), ApiError> {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let params = actix_web::web::Query::<LogsParams>::from_query(&query).expect("params");
        params.into_inner().validate(Utc::now())
    }

    #[test]
    fn defaults_are_last_24h_page_0_size_50() {
        let (filter, paging) = logs(&[]).expect("valid");
        assert_eq!(filter.query.end - filter.query.start, Duration::hours(24));
        assert!(filter.open_ended);
        assert_eq!(paging, Paging::Offset { page: 0, size: 50 });
    }

    #[test]
    fn each_bad_parameter_is_named() {
        assert_eq!(
            field_of(logs(&[("startTime", "nope")]).expect_err("bad")),
            "startTime"
        );
        assert_eq!(
            field_of(logs(&[("endTime", "2024-13-01T00:00:00")]).expect_err("bad")),
            "endTime"
        );
        assert_eq!(
            field_of(
                logs(&[
                    ("startTime", "2024-01-02T00:00:00"),
                    ("endTime", "2024-01-01T00:00:00")
                ])
                .expect_err("bad")
            ),
            "endTime"
        );
        for size in ["0", "1001", "x", "-1"] {
            assert_eq!(field_of(logs(&[("size", size)]).expect_err("bad")), "size");
        }
        assert_eq!(field_of(logs(&[("page", "-1")]).expect_err("bad")), "page");
        assert_eq!(
            field_of(logs(&[("level", "LOUD")]).expect_err("bad")),
            "level"
        );
        assert_eq!(
            field_of(logs(&[("cursor", "garbage")]).expect_err("bad")),
            "cursor"
        );
        for field in ["source", "correlationId", "traceId"] {
            assert_eq!(field_of(logs(&[(field, "a\0b")]).expect_err("NUL")), field);
        }
    }

    #[test]
    fn ids_are_exact_trimmed_and_blank_means_absent() {
        let (filter, _) = logs(&[("correlationId", " c-1 "), ("traceId", " t-1 ")]).expect("valid");
        assert_eq!(filter.query.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(filter.query.trace_id.as_deref(), Some("t-1"));
        let (filter, _) = logs(&[("traceId", "4bf92f3577b34da6a3ce929d0e0e4736")]).expect("valid");
        assert_eq!(
            filter.query.trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(filter.query.correlation_id, None);
        let (filter, _) = logs(&[("traceId", "  ")]).expect("valid");
        assert_eq!(filter.query.trace_id, None);
        // `trace_id` is not the parameter's name: ignored like any unknown parameter.
        let (filter, _) = logs(&[("trace_id", "t-1")]).expect("valid");
        assert_eq!(filter.query.trace_id, None);
    }

    #[test]
    fn the_tail_takes_a_trace_id_like_a_correlation_id() {
        let tail = |query: &str| {
            actix_web::web::Query::<TailParams>::from_query(query)
                .expect("params")
                .into_inner()
                .validate()
        };
        let conditions = tail("traceId=t-1&correlationId=c-1").expect("valid");
        assert_eq!(conditions.trace_id.as_deref(), Some("t-1"));
        assert_eq!(conditions.correlation_id.as_deref(), Some("c-1"));
        for field in ["correlationId", "traceId"] {
            let error = tail(&format!("{field}=a%00b")).expect_err("NUL");
            assert_eq!(field_of(error), field);
        }
    }

    #[test]
    fn levels_accept_lists_and_aliases() {
        let (filter, _) = logs(&[("level", "warning,ERROR,err")]).expect("valid");
        assert_eq!(filter.query.levels, vec![Level::Warn, Level::Error]);
    }

    #[test]
    fn cursor_round_trips() {
        let cursor = Cursor {
            timestamp: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).expect("ts"),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        let (_, paging) = logs(&[("cursor", &cursor.encode()), ("size", "10")]).expect("valid");
        assert_eq!(paging, Paging::After { cursor, size: 10 });
    }

    #[test]
    fn search_needs_a_query_and_stats_bounds_hours() {
        let blank = SearchParams {
            text: SearchText {
                query: Some("  ".into()),
            },
            ..Default::default()
        };
        assert_eq!(
            field_of(blank.validate(Utc::now()).expect_err("blank")),
            "query"
        );
        let missing = SearchParams::default();
        assert_eq!(
            field_of(missing.validate(Utc::now()).expect_err("missing")),
            "query"
        );
        let now = Utc::now();
        for bad in ["0", "169", "abc"] {
            let p = StatsParams {
                hours_back: Some(bad.into()),
                ..StatsParams::default()
            };
            assert_eq!(field_of(p.window(now).expect_err("bad")), "hoursBack");
        }
        assert_eq!(
            StatsParams::default().window(now).expect("default"),
            StatsWindow::HoursBack(24)
        );
    }

    #[test]
    fn stats_take_a_start_and_end_instead_of_hours_back() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().expect("now");
        let stats = |hours: Option<&str>, start: Option<&str>, end: Option<&str>| {
            StatsParams {
                hours_back: hours.map(Into::into),
                start_time: start.map(Into::into),
                end_time: end.map(Into::into),
            }
            .window(now)
        };
        assert_eq!(
            stats(None, Some("2026-11-29T10:00:00Z"), None).expect("open-ended"),
            StatsWindow::Range {
                since: "2026-11-29T10:00:00Z".parse().expect("ts"),
                until: now,
                open_ended: true,
            }
        );
        assert_eq!(
            stats(None, None, Some("2026-11-20T00:00:00Z")).expect("24 h before the end"),
            StatsWindow::Range {
                since: "2026-11-19T00:00:00Z".parse().expect("ts"),
                until: "2026-11-20T00:00:00Z".parse().expect("ts"),
                open_ended: false,
            }
        );
        let both = stats(Some("2"), Some("2026-11-29T10:00:00Z"), None);
        assert_eq!(field_of(both.expect_err("both kinds")), "hoursBack");
        let long = stats(
            None,
            Some("2026-10-01T00:00:00Z"),
            Some("2026-11-29T00:00:00Z"),
        );
        assert_eq!(field_of(long.expect_err("over 31 days")), "endTime");
        let bad = stats(None, Some("yesterday"), None);
        assert_eq!(field_of(bad.expect_err("bad time")), "startTime");
    }
}
