//! A page of events newest first, by offset or by keyset cursor, and the count of
//! all matches, capped so a filter over millions of rows stays cheap.

use crate::error::QueryError;
use crate::models::EventRow;
use crate::queries::filter::EventFilter;
use crate::schema::log_events;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Integer, Timestamptz, Uuid as SqlUuid};
use log_common::event::LogEvent;
use serde::Serialize;
use uuid::Uuid;

/// `totalElements` is exact up to this many matches; past it the count stops (so a
/// page over millions of rows stays cheap) and `totalElementsExact` is false.
pub const COUNT_CAP: i64 = 10_000;

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
/// skips an event; plus the capped count of all matches. Both statements are shaped
/// for the `(timestamp DESC, id DESC)` indexes of `migrations/`.
pub fn page(
    conn: &mut PgConnection,
    filter: &EventFilter,
    paging: Paging,
) -> Result<PageResult, QueryError> {
    use log_events::dsl as e;
    let mut query = e::log_events
        .select(EventRow::as_select())
        .filter(filter.predicate())
        .into_boxed();
    let (limit, offset) = match paging {
        Paging::Offset { page, size } => (size, page * size),
        Paging::After { cursor, size } => {
            // A row comparison, which diesel's DSL lacks: as one range condition it
            // walks the index from the cursor, where the OR of two would not.
            query = query.filter(
                sql::<Bool>("(\"timestamp\", id) < (")
                    .bind::<Timestamptz, _>(cursor.timestamp)
                    .sql(", ")
                    .bind::<SqlUuid, _>(cursor.id)
                    .sql(")"),
            );
            (size, 0)
        }
    };
    let events = query
        .order((e::timestamp.desc(), e::id.desc()))
        .limit(limit)
        .offset(offset)
        .load::<EventRow>(conn)?
        .into_iter()
        .map(LogEvent::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let counted = CappedCount(
        e::log_events
            .select(sql::<Integer>("1"))
            .filter(filter.predicate())
            .limit(COUNT_CAP + 1),
    )
    .get_result::<i64>(conn)?;
    Ok(PageResult {
        events,
        total: counted.min(COUNT_CAP),
        total_exact: counted <= COUNT_CAP,
    })
}

/// `SELECT count(*) FROM (<inner>) AS capped`: counts the rows of a LIMITed query,
/// so the count stops at the limit. diesel has no subquery in FROM; this is its
/// documented way to add one (a custom `QueryFragment`).
struct CappedCount<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for CappedCount<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT count(*) FROM (");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(") AS capped");
        Ok(())
    }
}

impl<Q> QueryId for CappedCount<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for CappedCount<Q> {
    type SqlType = BigInt;
}

impl<Q> RunQueryDsl<PgConnection> for CappedCount<Q> {}

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

    #[test]
    fn the_count_is_a_limited_subquery() {
        let filter = EventFilter {
            start: DateTime::<Utc>::UNIX_EPOCH,
            end: Utc::now(),
            levels: Vec::new(),
            source: Some("s".to_owned()),
            correlation_id: None,
            text: None,
        };
        let count = CappedCount(
            log_events::table
                .select(sql::<Integer>("1"))
                .filter(filter.predicate())
                .limit(COUNT_CAP + 1),
        );
        let sql = diesel::debug_query::<Pg, _>(&count).to_string();
        assert!(
            sql.starts_with("SELECT count(*) FROM (SELECT 1 FROM \"log_events\" WHERE"),
            "{sql}"
        );
        assert!(sql.contains("LIMIT $4) AS capped"), "{sql}");
        assert!(sql.contains("10001"), "{sql}");
    }
}
