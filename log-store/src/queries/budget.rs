//! Statements with a time budget of their own, inside a query's transaction: tried,
//! and given up (not failed) when the budget runs out, so the caller can take a
//! cheaper way to an answer.

use crate::error::QueryError;
use crate::pool::{set_local, set_local_statement_timeout};
use diesel::prelude::*;
use diesel::sql_types::Text;
use std::time::Duration;

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Runs `work` in a savepoint under `statement_timeout = budget`: `None` when the
/// budget ran out (the savepoint is rolled back, and with it the budget). After a
/// success the transaction's own limit is set again.
pub fn within<T>(
    conn: &mut PgConnection,
    budget: Duration,
    work: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> Result<Option<T>, QueryError> {
    let before = current(conn, "statement_timeout")?;
    let started = std::time::Instant::now();
    let attempt = conn.transaction::<T, diesel::result::Error, _>(|conn| {
        set_local_statement_timeout(conn, budget)?;
        let value = work(conn)?;
        set_local(conn, "statement_timeout", &before)?;
        Ok(value)
    });
    match attempt.map_err(|e| QueryError::from(e).with_elapsed(started.elapsed(), Some(budget))) {
        Ok(value) => Ok(Some(value)),
        Err(QueryError::TimedOut(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Runs `work` with planner settings (say `enable_indexscan`) at the values given,
/// and puts them back afterwards.
pub fn with_planner_settings<T>(
    conn: &mut PgConnection,
    settings: &[(&str, &str)],
    work: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    let mut before = Vec::with_capacity(settings.len());
    for (name, value) in settings {
        before.push((*name, current(conn, name)?));
        set_local(conn, name, value)?;
    }
    let result = work(conn);
    // After a failure the transaction is aborted and ends; nothing to put back.
    if result.is_ok() {
        for (name, value) in before {
            set_local(conn, name, &value)?;
        }
    }
    result
}

fn current(conn: &mut PgConnection, name: &str) -> QueryResult<String> {
    diesel::sql_query("SELECT current_setting($1) AS value")
        .bind::<Text, _>(name)
        .get_result::<Setting>(conn)
        .map(|s| s.value)
}
