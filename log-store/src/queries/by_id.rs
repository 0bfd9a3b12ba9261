//! One event by its id, and the cheapest query there is, for health checks.

use crate::error::QueryError;
use crate::models::EventRow;
use crate::schema::log_events;
use diesel::prelude::*;
use log_common::event::LogEvent;
use uuid::Uuid;

/// The row with this id, by the primary key (the gateway's lookup,
/// [`crate::queries::layouts::find`], also asks the blocks).
pub fn find_row(conn: &mut PgConnection, id: Uuid) -> Result<Option<LogEvent>, QueryError> {
    let row = log_events::table
        .find(id)
        .select(EventRow::as_select())
        .first(conn)
        .optional()?;
    Ok(row.map(LogEvent::try_from).transpose()?)
}

pub fn ping(conn: &mut PgConnection) -> Result<(), QueryError> {
    diesel::sql_query("SELECT 1").execute(conn)?;
    Ok(())
}
