//! The gateway's page over blocks: the same answer [`crate::queries::page`] gives over
//! rows (newest first, the id breaking ties; by offset or after a keyset cursor; and
//! the total of every match), built on the scan.
//!
//! - Time, level and source filters: the total comes from the rollups, exact, with the
//!   partial minutes at the window's edges counted in the blocks.
//! - Full text, a correlation id or a trace id: the matches are counted by a scan of
//!   their own, up to [`COUNT_CAP`] within the count budget. A query whose terms and
//!   filters never meet is let into no block, so its count of 0 is exact and quick.
//!
//! And one event by its id ([`find`]).

use super::read::{count_in_window, scan, Position, ScanFilter, ScannedEvent};
use crate::error::{InvalidRow, QueryError};
use crate::models::EventRow;
use crate::queries::filter::EventFilter;
use crate::queries::page::{Budgets, PageResult, Paging, MAX_OFFSET_EVENTS};
use crate::queries::total::{rollup_total_counting_edges, COUNT_CAP};
use chrono::{DateTime, TimeDelta, Utc};
use diesel::PgConnection;
use log_common::event::LogEvent;
use std::ops::ControlFlow;
use std::time::Instant;
use uuid::Uuid;

/// The scan's form of a page's filter (its window is inclusive at both ends, the
/// scan's is half-open: timestamps are kept to the microsecond).
pub fn scan_filter(filter: &EventFilter, after: Option<Position>) -> ScanFilter {
    ScanFilter {
        window: Some((filter.start, filter.end + TimeDelta::microseconds(1))),
        levels: filter
            .levels
            .iter()
            .filter_map(|l| ::log_blocks::level_code(l.as_str()))
            .collect(),
        source: filter.source.clone(),
        id: None,
        correlation_id: filter.correlation_id.clone(),
        trace_id: filter.trace_id.clone(),
        search: filter.text.as_deref().map(::log_blocks::Query::parse),
        after,
    }
}

/// A page of `filter`'s events from the blocks, and the total of all of them.
pub fn page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    paging: Paging,
    now: DateTime<Utc>,
    budgets: Budgets,
) -> Result<PageResult, QueryError> {
    let (size, offset, after) = match paging {
        Paging::Offset { page, size } => (size, page * size, None),
        Paging::After { cursor, size } => (
            size,
            0,
            Some(Position {
                timestamp_micros: cursor.timestamp.timestamp_micros(),
                id: cursor.id.as_u128(),
            }),
        ),
    };
    let counts_by_rollups =
        filter.text.is_none() && filter.correlation_id.is_none() && filter.trace_id.is_none();
    // As over rows: a page past an exact total is empty, found without a walk.
    let exact_total = if offset > 0 && counts_by_rollups {
        let total = rollup_total(conn, filter, now)?;
        if offset >= total {
            return Ok(PageResult {
                events: Vec::new(),
                total,
                total_exact: true,
            });
        }
        Some(total)
    } else {
        None
    };
    if let Paging::Offset { page, size } = paging {
        if offset + size > MAX_OFFSET_EVENTS {
            return Err(QueryError::TooDeep {
                page,
                size,
                max: MAX_OFFSET_EVENTS,
            });
        }
    }

    let mut skipped = 0;
    let mut found = Vec::with_capacity(size.max(0) as usize);
    scan(conn, &scan_filter(filter, after), |event| {
        if skipped < offset {
            skipped += 1;
        } else {
            found.push(event);
        }
        if found.len() as i64 >= size {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    let events = found
        .into_iter()
        .map(log_event)
        .collect::<Result<Vec<_>, _>>()?;

    let (total, total_exact) = match exact_total {
        Some(total) => (total, true),
        None if counts_by_rollups => (rollup_total(conn, filter, now)?, true),
        None => {
            let seen = offset.min(skipped) + events.len() as i64;
            count_matches(conn, filter, budgets, seen)?
        }
    };
    Ok(PageResult {
        events,
        total,
        total_exact,
    })
}

/// The event with this id, if a block holds it. A v7 id carries the time it was
/// minted, which is the event's own time when the producer stamped it: the day around
/// it is searched first, then, if the event is not there (a client's own id, a
/// backfilled timestamp), every block, its key filter deciding which to open.
pub fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<LogEvent>, QueryError> {
    let minted = id
        .get_timestamp()
        .filter(|_| id.get_version_num() == 7)
        .and_then(|t| {
            let (secs, nanos) = t.to_unix();
            DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
        });
    let windows = minted
        .map(|at| (at - TimeDelta::days(1), at + TimeDelta::days(1)))
        .into_iter()
        .map(Some)
        .chain([None]);
    for window in windows {
        let filter = ScanFilter {
            window,
            id: Some(id),
            ..ScanFilter::default()
        };
        let mut found = None;
        scan(conn, &filter, |event| {
            found = Some(event);
            ControlFlow::Break(())
        })?;
        if let Some(event) = found {
            return Ok(Some(log_event(event)?));
        }
    }
    Ok(None)
}

fn rollup_total(
    conn: &mut PgConnection,
    filter: &EventFilter,
    now: DateTime<Utc>,
) -> Result<i64, QueryError> {
    rollup_total_counting_edges(conn, filter, now, count_events)
}

/// The events of blocks matching `filter` (a window of a minute or less: an edge of a
/// total). Without full text or ids (the rollups' totals), from the blocks' level
/// counts and times alone ([`count_in_window`]).
pub(crate) fn count_events(
    conn: &mut PgConnection,
    filter: &EventFilter,
) -> Result<i64, QueryError> {
    if filter.text.is_none() && filter.correlation_id.is_none() && filter.trace_id.is_none() {
        let scan = scan_filter(filter, None);
        let window = scan.window.expect("a page's filter has a window");
        let (n, _) = count_in_window(conn, window, &scan.levels, filter.source.as_deref())?;
        return Ok(n);
    }
    let mut n = 0;
    scan(conn, &scan_filter(filter, None), |_| {
        n += 1;
        ControlFlow::Continue(())
    })?;
    Ok(n)
}

/// The matches of a filter the rollups cannot count: exact up to [`COUNT_CAP`]
/// within `budgets.count`; past the cap the cap, past the budget what was counted (at
/// least the `seen` matches), neither exact.
fn count_matches(
    conn: &mut PgConnection,
    filter: &EventFilter,
    budgets: Budgets,
    seen: i64,
) -> Result<(i64, bool), QueryError> {
    let started = Instant::now();
    let mut counted = 0;
    let mut stopped = false;
    scan(conn, &scan_filter(filter, None), |_| {
        counted += 1;
        if counted > COUNT_CAP || started.elapsed() > budgets.count {
            stopped = true;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(match (stopped, counted > COUNT_CAP) {
        (false, _) => (counted, true),
        (true, true) => (COUNT_CAP, false),
        (true, false) => (counted.max(seen).min(COUNT_CAP), false),
    })
}

/// An event of a block as the gateway answers it, through the same checks as a row.
pub fn log_event(scanned: ScannedEvent) -> Result<LogEvent, QueryError> {
    let event = scanned.event;
    let id = Uuid::from_u128(event.id);
    let invalid = |column: &'static str, reason: String| InvalidRow {
        id: Some(id),
        column,
        reason,
    };
    let level = ::log_blocks::LEVELS
        .get(usize::from(event.level))
        .ok_or_else(|| invalid("level", format!("level code {}", event.level)))?;
    let timestamp = super::from_micros(event.timestamp_micros)
        .ok_or_else(|| invalid("timestamp", event.timestamp_micros.to_string()))?;
    let metadata = event
        .metadata
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| invalid("metadata", e.to_string()))?;
    Ok(LogEvent::try_from(EventRow {
        id,
        level: (*level).to_owned(),
        message: event.message,
        source: event.source,
        timestamp,
        metadata,
        correlation_id: event.correlation_id,
        request_id: event.request_id,
        trace_id: event.trace_id,
    })?)
}
