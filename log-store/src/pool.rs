//! The connection pool. Built without connecting, so a service starts (and reports
//! its health) while PostgreSQL is still coming up.

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use log_common::settings::PostgresSettings;
use std::time::Duration;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A pool sized and timed by the contract's PostgreSQL settings; `customizer` runs on
/// every connection it opens.
pub fn build(
    settings: &PostgresSettings,
    customizer: Option<Box<dyn CustomizeConnection<PgConnection, diesel::r2d2::Error>>>,
) -> anyhow::Result<PgPool> {
    let manager = ConnectionManager::<PgConnection>::new(settings.connection_url()?);
    let mut builder = Pool::builder()
        .max_size(settings.pool_size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_millis(settings.connect_timeout_ms));
    if let Some(customizer) = customizer {
        builder = builder.connection_customizer(customizer);
    }
    Ok(builder.build_unchecked(manager))
}

/// The session of every connection a reading pool opens:
/// - `statement_timeout`, so no query can hold a connection (and a blocking thread)
///   longer than the limit (each query sets its own, lower, in its transaction);
/// - `plan_cache_mode = force_custom_plan`: a prepared statement is planned for its
///   values every time. A generic plan (PostgreSQL may switch to one after five
///   executions) prunes partitions only at run time, and cannot prove that
///   `level = $1` leaves out INFO, so it could never use the partial level index;
///   the values of a log query (which level, how wide a window) are what decide its
///   plan. Planning costs about a millisecond.
#[derive(Debug)]
pub struct QuerySession {
    pub statement_timeout: Duration,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for QuerySession {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::sql_query(format!(
            "SET statement_timeout = {}",
            self.statement_timeout.as_millis()
        ))
        .execute(conn)
        .and_then(|_| diesel::sql_query("SET plan_cache_mode = force_custom_plan").execute(conn))
        .map(|_| ())
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `SET LOCAL statement_timeout`: the limit of each statement from here to the end
/// of the current transaction or, when rolled back, of the savepoint.
pub fn set_local_statement_timeout(conn: &mut PgConnection, limit: Duration) -> QueryResult<()> {
    set_local(
        conn,
        "statement_timeout",
        &format!("{}ms", limit.as_millis().max(1)),
    )
}

/// `SET LOCAL name = value`, as `set_config` so both are bound.
pub fn set_local(conn: &mut PgConnection, name: &str, value: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT set_config($1, $2, true)")
        .bind::<diesel::sql_types::Text, _>(name)
        .bind::<diesel::sql_types::Text, _>(value)
        .execute(conn)
        .map(|_| ())
}
