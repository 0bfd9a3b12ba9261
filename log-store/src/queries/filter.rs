//! The filter of `/logs` and `/search`, as a diesel predicate built at run time.

use crate::queries::search;
use crate::schema::log_events;
use chrono::{DateTime, Utc};
use diesel::expression::BoxableExpression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use log_common::event::Level;
use serde::Serialize;

/// A condition on `log_events`, boxed so filters can be added one by one.
pub type Predicate = Box<dyn BoxableExpression<log_events::table, Pg, SqlType = Bool>>;

/// Validated filters. Every one combines with every other; all values are bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventFilter {
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Inclusive.
    pub end: DateTime<Utc>,
    /// Any of these; empty means every level.
    pub levels: Vec<Level>,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
    /// Exact trace id (OpenTelemetry).
    pub trace_id: Option<String>,
    /// Full-text query (`websearch_to_tsquery` syntax).
    pub text: Option<String>,
}

impl EventFilter {
    /// The WHERE clause: the time window always (every index leads with, or ranges
    /// over, `timestamp`), then each filter given.
    pub fn predicate(&self) -> Predicate {
        use log_events::dsl as e;
        let window: Predicate =
            Box::new(e::timestamp.ge(self.start).and(e::timestamp.le(self.end)));
        self.conditions().and_to(window)
    }

    /// The filters other than the window: what the live tail applies to each new row.
    pub fn conditions(&self) -> Conditions {
        Conditions {
            levels: self.levels.clone(),
            source: self.source.clone(),
            correlation_id: self.correlation_id.clone(),
            trace_id: self.trace_id.clone(),
            text: self.text.clone(),
        }
    }
}

/// The filters of [`EventFilter`] without its window. Every one combines with every
/// other; all values are bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Conditions {
    /// Any of these; empty means every level.
    pub levels: Vec<Level>,
    pub source: Option<String>,
    pub correlation_id: Option<String>,
    /// Exact trace id (OpenTelemetry).
    pub trace_id: Option<String>,
    /// Full-text query (`websearch_to_tsquery` syntax).
    pub text: Option<String>,
}

impl Conditions {
    /// `predicate AND` each filter given.
    pub fn and_to(&self, mut predicate: Predicate) -> Predicate {
        use log_events::dsl as e;
        match self.levels.as_slice() {
            [] => {}
            // `level = $n`: only an equality lets the planner walk the partial
            // `(level, timestamp, id)` index (it cannot prove `= ANY($n)` leaves out
            // INFO, the level that index omits).
            [level] => predicate = Box::new(predicate.and(e::level.eq(level.as_str()))),
            levels => {
                let levels: Vec<&'static str> = levels.iter().map(|l| l.as_str()).collect();
                // `level = ANY($n)`, one array parameter.
                predicate = Box::new(predicate.and(e::level.eq_any(levels)));
            }
        }
        if let Some(source) = &self.source {
            predicate = Box::new(predicate.and(e::source.eq(source.clone())));
        }
        if let Some(correlation_id) = &self.correlation_id {
            // `assume_not_null` only types the comparison as Bool; NULL rows still
            // never match `=`.
            predicate = Box::new(
                predicate.and(
                    e::correlation_id
                        .assume_not_null()
                        .eq(correlation_id.clone()),
                ),
            );
        }
        if let Some(trace_id) = &self.trace_id {
            // As for the correlation id: NULL rows never match `=`.
            predicate = Box::new(predicate.and(e::trace_id.assume_not_null().eq(trace_id.clone())));
        }
        if let Some(text) = &self.text {
            predicate = Box::new(predicate.and(search::matches(text)));
        }
        predicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(filter: &EventFilter) -> String {
        let query = log_events::table
            .select(log_events::id)
            .filter(filter.predicate());
        diesel::debug_query::<Pg, _>(&query).to_string()
    }

    fn window() -> EventFilter {
        EventFilter {
            start: DateTime::<Utc>::UNIX_EPOCH,
            end: Utc::now(),
            levels: Vec::new(),
            source: None,
            correlation_id: None,
            trace_id: None,
            text: None,
        }
    }

    #[test]
    fn only_the_window_when_nothing_else_is_given() {
        let sql = sql_of(&window());
        assert!(sql.contains("\"log_events\".\"timestamp\" >= $1"), "{sql}");
        assert!(sql.contains("\"log_events\".\"timestamp\" <= $2"), "{sql}");
        assert!(!sql.contains("$3"), "{sql}");
    }

    #[test]
    fn every_filter_is_bound_never_spliced() {
        let filter = EventFilter {
            levels: vec![Level::Warn, Level::Error],
            source: Some("it's".to_owned()),
            correlation_id: Some("c-1".to_owned()),
            trace_id: Some("t'1".to_owned()),
            text: Some("'; DROP TABLE log_events; --".to_owned()),
            ..window()
        };
        let sql = sql_of(&filter);
        assert!(sql.contains("\"log_events\".\"level\" = ANY($3)"), "{sql}");
        assert!(sql.contains("\"log_events\".\"source\" = $4"), "{sql}");
        assert!(
            sql.contains("\"log_events\".\"correlation_id\" = $5"),
            "{sql}"
        );
        assert!(sql.contains("\"log_events\".\"trace_id\" = $6"), "{sql}");
        assert!(
            sql.contains("search_vector @@ websearch_to_tsquery('english', $7)"),
            "{sql}"
        );
        let statement = sql.split("-- binds").next().unwrap_or_default();
        assert!(!statement.contains("DROP"), "{sql}");
        assert!(!statement.contains("it's"), "{sql}");
        assert!(!statement.contains("t'1"), "{sql}");
    }

    #[test]
    fn a_trace_id_alone_is_one_bound_equality() {
        let filter = EventFilter {
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()),
            ..window()
        };
        let sql = sql_of(&filter);
        assert!(sql.contains("\"log_events\".\"trace_id\" = $3"), "{sql}");
        assert!(!sql.contains("correlation_id"), "{sql}");
        assert_eq!(filter.conditions().trace_id, filter.trace_id);
    }

    #[test]
    fn one_level_is_an_equality() {
        let filter = EventFilter {
            levels: vec![Level::Error],
            ..window()
        };
        let sql = sql_of(&filter);
        assert!(sql.contains("\"log_events\".\"level\" = $3"), "{sql}");
    }
}
