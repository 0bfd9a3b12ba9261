//! A page of events as the API answers it.

use log_common::event::LogEvent;
use log_store::queries::{Cursor, PageResult, Paging};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page in Spring Data's shape (so the seed's clients keep working), plus the
/// keyset cursor and whether the total is exact.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub content: Vec<LogEvent>,
    /// 0-based page number (0 when paging by cursor).
    pub number: i64,
    pub size: i64,
    /// Matches of the whole filter. Exact for time, level and source filters (from the
    /// rollups). With `query`, `correlationId` or `traceId`: exact up to 10,000; past that 10,000,
    /// and past the count's time budget an estimate, both with `totalElementsExact: false`.
    pub total_elements: i64,
    pub total_elements_exact: bool,
    pub total_pages: i64,
    pub number_of_elements: usize,
    pub first: bool,
    pub last: bool,
    pub empty: bool,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl LogPage {
    pub fn new(result: PageResult, paging: Paging) -> Self {
        let size = paging.size();
        let (number, first) = match paging {
            Paging::Offset { page, .. } => (page, page == 0),
            Paging::After { .. } => (0, false),
        };
        let count = result.events.len();
        let total_pages = (result.total + size - 1) / size;
        let last = match paging {
            Paging::Offset { page, .. } if result.total_exact => page + 1 >= total_pages,
            _ => (count as i64) < size,
        };
        let next_cursor = if last {
            None
        } else {
            result.events.last().map(|e| {
                Cursor {
                    timestamp: e.timestamp,
                    id: e.id.into(),
                }
                .encode()
            })
        };
        LogPage {
            number,
            size,
            total_elements: result.total,
            total_elements_exact: result.total_exact,
            total_pages,
            number_of_elements: count,
            first,
            last,
            empty: count == 0,
            next_cursor,
            content: result.events,
        }
    }
}
