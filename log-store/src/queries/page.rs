//! A page of events newest first, by offset or by keyset cursor, and the total of
//! all matches ([`total`]).

use crate::error::QueryError;
use crate::models::EventRow;
use crate::queries::budget::{with_planner_settings, within};
use crate::queries::filter::EventFilter;
use crate::queries::total::{planner_estimate, total};
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

/// How deep offset paging goes: a page must end within the first this many events,
/// unless it lies past the end of an exact total (answered at once, empty). Deeper,
/// PostgreSQL walks every row before the page, and a million rows outlast the page
/// query's time limit on a busy day, while a cursor is as fast at any depth.
/// Elasticsearch bounds offset paging the same way (`max_result_window`, 10,000).
pub const MAX_OFFSET_EVENTS: i64 = 100_000;

/// A full-text page past its walk budget is read from the index (all matches,
/// sorted) when the planner expects at most this share of the window's rows to match.
/// For a word it has no statistics for (a typo, a word no row has) it expects 0.5%,
/// PostgreSQL's default; for a word it knows, the share it has seen.
const INDEX_SEARCH_MAX_SHARE: f64 = 0.01;

/// Time budgets of the parts of a full-text page.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// The walk newest first that checks each row's vector: fast when the words are
    /// common, a scan of the window when they are rare (the planner cannot tell a
    /// word it has no statistics for from a common one). Past it, the GIN index
    /// finds every match and they are sorted. Zero: straight to the index.
    pub search_walk: Duration,
    /// The count behind a total that counts rows ([`total`]).
    pub count: Duration,
}

/// A page of rows, newest first with id as tie-break, so walking pages never repeats
/// or skips an event; plus the total of all matches ([`total`]). Run it in one
/// `REPEATABLE READ` transaction: the total's parts must see one snapshot to add up.
/// (The gateway calls [`crate::queries::layouts::page`], which reads rows, blocks or
/// both.)
pub fn rows_page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    paging: Paging,
    now: DateTime<Utc>,
    budgets: Budgets,
) -> Result<PageResult, QueryError> {
    let (size, offset) = match paging {
        Paging::Offset { page, size } => (size, page * size),
        Paging::After { size, .. } => (size, 0),
    };
    let cursor = match paging {
        Paging::After { cursor, .. } => Some(cursor),
        Paging::Offset { .. } => None,
    };
    // An exact total comes from the rollups, not the rows: a page past it is empty,
    // and is answered without walking `offset` rows to find that out.
    let exact_total = if offset > 0
        && filter.text.is_none()
        && filter.correlation_id.is_none()
        && filter.trace_id.is_none()
    {
        let (total, exact) = total(conn, filter, now, budgets.count, 0)?;
        if offset >= total {
            return Ok(PageResult {
                events: Vec::new(),
                total,
                total_exact: exact,
            });
        }
        Some((total, exact))
    } else {
        None
    };
    if offset + size > MAX_OFFSET_EVENTS {
        if let Paging::Offset { page, size } = paging {
            return Err(QueryError::TooDeep {
                page,
                size,
                max: MAX_OFFSET_EVENTS,
            });
        }
    }
    let keys = if filter.levels.len() > 1 && offset + size <= PER_LEVEL_MERGE_MAX {
        // One index-ordered read per level, merged here: `level = ANY(…)` of several
        // levels cannot walk the `(level, timestamp, id)` index in order, and the plan
        // that walks time instead filters its way through every other level (an INFO
        // flood before the first ERROR). Only keys are merged; the page's rows are
        // read once, below.
        let mut merged = Vec::new();
        for level in &filter.levels {
            let one = EventFilter {
                levels: vec![*level],
                ..filter.clone()
            };
            merged.extend(matching(conn, &one, cursor, offset + size, 0, budgets)?);
        }
        merged.sort_by_key(|key: &Key| std::cmp::Reverse(*key));
        merged
            .into_iter()
            .skip(offset as usize)
            .take(size as usize)
            .collect()
    } else {
        matching(conn, filter, cursor, size, offset, budgets)?
    };
    let events = rows_of(conn, &keys)?
        .into_iter()
        .map(LogEvent::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let seen = offset + events.len() as i64;
    let (total, total_exact) = match exact_total {
        Some(known) => known,
        None => total(conn, filter, now, budgets.count, seen)?,
    };
    Ok(PageResult {
        events,
        total,
        total_exact,
    })
}
/// [`newest_keys`], for full text first as a walk within `budgets.search_walk`. Past
/// it, when the planner expects at most [`INDEX_SEARCH_MAX_SHARE`] of the window to
/// match (a rare word, or one it has no statistics for, such as a typo), from the GIN
/// index: plain index and sequential scans are turned off for that one statement,
/// which leaves the bitmap scan of the index, then a sort of the matches. A word it
/// knows to be common (but rare among the newest rows) walks on, within the class's
/// limit: sorting all its matches would cost more.
fn matching(
    conn: &mut PgConnection,
    filter: &EventFilter,
    cursor: Option<Cursor>,
    limit: i64,
    offset: i64,
    budgets: Budgets,
) -> Result<Vec<Key>, QueryError> {
    let read = |conn: &mut PgConnection| newest_keys(conn, filter, cursor, limit, offset);
    if filter.text.is_none() {
        return Ok(read(conn)?);
    }
    if !budgets.search_walk.is_zero() {
        if let Some(rows) = within(conn, budgets.search_walk, read)? {
            return Ok(rows);
        }
        let one = || diesel::dsl::sql::<diesel::sql_types::Integer>("1");
        let matches = planner_estimate(
            conn,
            log_events::table.select(one()).filter(filter.predicate()),
        )?;
        let window = EventFilter {
            text: None,
            ..filter.clone()
        };
        let rows = planner_estimate(
            conn,
            log_events::table.select(one()).filter(window.predicate()),
        )?;
        if matches as f64 > INDEX_SEARCH_MAX_SHARE * rows.max(1) as f64 {
            return Ok(read(conn)?);
        }
    }
    let from_index = [("enable_indexscan", "off"), ("enable_seqscan", "off")];
    Ok(with_planner_settings(conn, &from_index, read)?)
}

/// A row's place in "newest first, then id descending" order.
type Key = (DateTime<Utc>, Uuid);

/// The keys of `filter`'s events after `cursor` (if any), newest first, `offset`
/// skipped, at most `limit`.
///
/// The keys alone are in every index (`(level | source | correlation_id | trace_id,
/// timestamp, id)` and `(timestamp, id)`), so the index of the filter answers them by itself, in
/// order, reading exactly the page. Selecting whole rows instead made the planner
/// weigh heap reads and walk the time index, filtering: fine while matches are
/// spread evenly, a scan of everything newer when they are not (an INFO burst with no
/// ERROR in it: 231 ms instead of 0.3 for `level=ERROR`).
fn newest_keys(
    conn: &mut PgConnection,
    filter: &EventFilter,
    cursor: Option<Cursor>,
    limit: i64,
    offset: i64,
) -> QueryResult<Vec<Key>> {
    use log_events::dsl as e;
    let mut query = e::log_events
        .select((e::timestamp, e::id))
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
        .load(conn)
}

/// The rows of `keys` (newest first), in their order.
fn rows_of(conn: &mut PgConnection, keys: &[Key]) -> QueryResult<Vec<EventRow>> {
    use log_events::dsl as e;
    let (Some(newest), Some(oldest)) = (keys.first(), keys.last()) else {
        return Ok(Vec::new());
    };
    // The window of the keys prunes the partitions; the ids find the rows.
    let ids: Vec<Uuid> = keys.iter().map(|(_, id)| *id).collect();
    let mut rows: Vec<EventRow> = e::log_events
        .select(EventRow::as_select())
        .filter(e::timestamp.ge(oldest.0).and(e::timestamp.le(newest.0)))
        .filter(e::id.eq_any(ids))
        .load(conn)?;
    // An id stored again after the id memory forgot it has a second row; only the
    // keys' rows belong to the page.
    let wanted: std::collections::HashSet<&Key> = keys.iter().collect();
    rows.retain(|row| wanted.contains(&(row.timestamp, row.id)));
    rows.sort_by_key(|row| std::cmp::Reverse((row.timestamp, row.id)));
    Ok(rows)
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
