//! A page of events newest first, by offset or by keyset cursor, and the total of
//! all matches ([`total`]).

use crate::error::QueryError;
use crate::models::EventRow;
use crate::queries::filter::EventFilter;
use crate::queries::total::total;
use crate::schema::log_events;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Timestamptz, Uuid as SqlUuid};
use log_common::event::LogEvent;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// A page of several levels is read level by level and merged while it lies within
/// this many rows of the newest match; deeper offsets are one statement (`OFFSET`),
/// so memory stays bounded.
const PER_LEVEL_MERGE_MAX: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Paging {
    Offset { page: i64, size: i64 },
    After { cursor: Cursor, size: i64 },
}

impl Paging {
    pub fn size(&self) -> i64 {
        match self {
            Paging::Offset { size, .. } | Paging::After { size, .. } => *size,
        }
    }
}

/// A position in "newest first, then id descending" order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub timestamp: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// Opaque to clients: microseconds since the epoch and the id.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.timestamp.timestamp_micros(), self.id.simple())
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (micros, id) = s.split_once('_')?;
        Some(Cursor {
            timestamp: DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// One page of events plus what the Spring page shape needs.
#[derive(Debug)]
pub struct PageResult {
    pub events: Vec<LogEvent>,
    pub total: i64,
    pub total_exact: bool,
}

/// A page, newest first with id as tie-break, so walking pages never repeats or
/// skips an event; plus the total of all matches ([`total`]). `count_budget` bounds
/// the time a total that counts rows may take. Run it in one `REPEATABLE READ`
/// transaction: the total's parts must see one snapshot to add up.
pub fn page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    paging: Paging,
    now: DateTime<Utc>,
    count_budget: Duration,
) -> Result<PageResult, QueryError> {
    let (size, offset) = match paging {
        Paging::Offset { page, size } => (size, page * size),
        Paging::After { size, .. } => (size, 0),
    };
    let cursor = match paging {
        Paging::After { cursor, .. } => Some(cursor),
        Paging::Offset { .. } => None,
    };
    let rows = if filter.levels.len() > 1 && offset + size <= PER_LEVEL_MERGE_MAX {
        // One index-ordered read per level, merged here: `level = ANY(…)` of several
        // levels cannot walk the `(level, timestamp, id)` index in order, and the plan
        // that walks time instead filters its way through every other level (an INFO
        // flood before the first ERROR).
        let mut merged = Vec::new();
        for level in &filter.levels {
            let one = EventFilter {
                levels: vec![*level],
                ..filter.clone()
            };
            merged.extend(newest_first(conn, &one, cursor, offset + size, 0)?);
        }
        merged.sort_by_key(|row: &EventRow| std::cmp::Reverse((row.timestamp, row.id)));
        merged
            .into_iter()
            .skip(offset as usize)
            .take(size as usize)
            .collect()
    } else {
        newest_first(conn, filter, cursor, size, offset)?
    };
    let events = rows
        .into_iter()
        .map(LogEvent::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    // The total last: a budgeted count may leave its `statement_timeout` set.
    let seen = offset + events.len() as i64;
    let (total, total_exact) = total(conn, filter, now, count_budget, seen)?;
    Ok(PageResult {
        events,
        total,
        total_exact,
    })
}
/// `filter`'s events after `cursor` (if any), newest first, `offset` skipped, at most
/// `limit`. Shaped for the `(timestamp DESC, id DESC)` indexes of `migrations/`.
fn newest_first(
    conn: &mut PgConnection,
    filter: &EventFilter,
    cursor: Option<Cursor>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<EventRow>> {
    use log_events::dsl as e;
    let mut query = e::log_events
        .select(EventRow::as_select())
        .filter(filter.predicate())
        .into_boxed();
    if let Some(cursor) = cursor {
        // A row comparison, which diesel's DSL lacks: as one range condition it walks
        // the index from the cursor, where the OR of two would not.
        query = query.filter(
            sql::<Bool>("(\"timestamp\", id) < (")
                .bind::<Timestamptz, _>(cursor.timestamp)
                .sql(", ")
                .bind::<SqlUuid, _>(cursor.id)
                .sql(")"),
        );
    }
    query
        .order((e::timestamp.desc(), e::id.desc()))
        .limit(limit)
        .offset(offset)
        .load::<EventRow>(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor = Cursor {
            timestamp: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).expect("ts"),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("garbage"), None);
    }
}
