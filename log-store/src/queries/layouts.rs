//! Reads over whatever layout holds the events: rows (`log_events`), blocks
//! (`log_blocks`) or, for a while, both.
//!
//! The consumer writes one layout, its `STORAGE_LAYOUT`; the gateway has no such
//! setting. It asks, in the query's own snapshot, which tables hold events, and reads
//! those. So a change of layout needs no second restart, and while the consumer moves
//! the old rows into blocks (see [`crate::blocks::migrate`]) every event stays in
//! answers: a move is one transaction, so a snapshot sees each event in exactly one of
//! the two tables. With both, each read asks both and merges; totals that come from
//! the rollups (which count every event once, whichever table holds it) count their
//! edge minutes in both.

use crate::blocks;
use crate::error::QueryError;
use crate::queries::by_id;
use crate::queries::filter::EventFilter;
use crate::queries::page::{self, Budgets, PageResult, Paging, MAX_OFFSET_EVENTS};
use crate::queries::total::{self, rollup_total_counting_edges, COUNT_CAP};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use log_common::event::LogEvent;
use uuid::Uuid;

/// Which tables hold events, in one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub rows: bool,
    pub blocks: bool,
}

impl Stored {
    /// Rows are read when they hold events, and when nothing is stored at all (an
    /// empty answer is the same either way).
    pub fn read_rows(self) -> bool {
        self.rows || !self.blocks
    }
}

/// Whether `log_events` and `log_blocks` hold anything: the first row of each, no
/// more (two probes that stop at the first live tuple). Built with diesel's DSL, so
/// it is a prepared statement cached on the connection: planning it over every day
/// partition and its indexes cost ~2 ms a query as raw SQL, more than running it.
pub fn stored(conn: &mut PgConnection) -> Result<Stored, QueryError> {
    use crate::schema::{log_blocks, log_events};
    use diesel::dsl::exists;
    let (rows, blocks) = diesel::select((
        exists(log_events::table.select(log_events::id)),
        exists(log_blocks::table.select(log_blocks::block_id)),
    ))
    .get_result(conn)?;
    Ok(Stored { rows, blocks })
}

/// A page of `filter`'s events, newest first (by offset or after a cursor), and the
/// total of all of them, from whichever tables hold events. Run it in one
/// `REPEATABLE READ` transaction.
pub fn page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    paging: Paging,
    now: DateTime<Utc>,
    budgets: Budgets,
) -> Result<PageResult, QueryError> {
    let stored = stored(conn)?;
    match (stored.read_rows(), stored.blocks) {
        (true, false) => page::rows_page(conn, filter, paging, now, budgets),
        (false, _) => blocks::query::page(conn, filter, paging, now, budgets),
        (true, true) => merged_page(conn, filter, paging, now, budgets),
    }
}

/// The page over both tables: each table's first `offset + size` matches (or its
/// first `size` after the cursor), merged, the offset skipped. The events a page
/// needs are among them: the `n` newest of two sets are among the `n` newest of each.
fn merged_page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    paging: Paging,
    now: DateTime<Utc>,
    budgets: Budgets,
) -> Result<PageResult, QueryError> {
    let by_rollups = counts_by_rollups(filter);
    let mut rollup_total = None;
    let (offset, size, each) = match paging {
        Paging::Offset { page, size } => {
            let offset = page * size;
            // As in one table: a page past an exact total is empty, found at once.
            if offset > 0 && by_rollups {
                let total = total_by_rollups(conn, filter, now)?;
                rollup_total = Some(total);
                if offset >= total {
                    return Ok(PageResult {
                        events: Vec::new(),
                        total,
                        total_exact: true,
                    });
                }
            }
            if offset + size > MAX_OFFSET_EVENTS {
                return Err(QueryError::TooDeep {
                    page,
                    size,
                    max: MAX_OFFSET_EVENTS,
                });
            }
            let first = Paging::Offset {
                page: 0,
                size: offset + size,
            };
            (offset, size, first)
        }
        Paging::After { size, .. } => (0, size, paging),
    };
    let rows = page::rows_page(conn, filter, each, now, budgets)?;
    let blocks = blocks::query::page(conn, filter, each, now, budgets)?;
    let mut events = rows.events;
    events.extend(blocks.events);
    events.sort_by_key(|e| std::cmp::Reverse((e.timestamp, e.id.as_uuid())));
    let events = events
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(size).unwrap_or(0))
        .collect();
    let (total, total_exact) = if by_rollups {
        let total = match rollup_total {
            Some(total) => total,
            None => total_by_rollups(conn, filter, now)?,
        };
        (total, true)
    } else {
        // Counted in each table: exact when both counts are, and within the cap.
        let sum = rows.total + blocks.total;
        (
            sum.min(COUNT_CAP),
            rows.total_exact && blocks.total_exact && sum <= COUNT_CAP,
        )
    };
    Ok(PageResult {
        events,
        total,
        total_exact,
    })
}

fn counts_by_rollups(filter: &EventFilter) -> bool {
    filter.text.is_none() && filter.correlation_id.is_none() && filter.trace_id.is_none()
}

/// The rollups' exact total, the edge minutes counted in both tables.
fn total_by_rollups(
    conn: &mut PgConnection,
    filter: &EventFilter,
    now: DateTime<Utc>,
) -> Result<i64, QueryError> {
    rollup_total_counting_edges(conn, filter, now, |conn, edge| {
        Ok(total::count_rows(conn, edge)? + blocks::query::count_events(conn, edge)?)
    })
}

/// The event with this id: the rows' primary key first, then the blocks.
pub fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<LogEvent>, QueryError> {
    let stored = stored(conn)?;
    if stored.read_rows() {
        if let Some(event) = by_id::find_row(conn, id)? {
            return Ok(Some(event));
        }
    }
    if stored.blocks {
        return blocks::query::find(conn, id);
    }
    Ok(None)
}
