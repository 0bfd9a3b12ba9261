//! The store's errors, and which database failures are worth retrying.
//!
//! The classification reads the SQLSTATE through diesel's [`DatabaseErrorKind`],
//! never the message text (which changes with `lc_messages` and PostgreSQL versions).
//! diesel 2.3 maps nine SQLSTATEs to kinds and reports every other one as `Unknown`
//! without its code, so an `Unknown` error is treated as transient: the data it could
//! be about (class 22: a value too long, bad UTF-8, `\u0000` in jsonb) cannot reach
//! the database, because the event's newtypes refuse it before (`log_common::domain`).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use std::time::Duration;
use uuid::Uuid;

/// The underlying failure, kept whole as the error's `source` (downcast it to
/// `diesel::result::Error` or `diesel::r2d2::PoolError`).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// What a write (the consumer's batch transaction, a claim, retention) can end in.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: the database is away, a connection dropped, a deadlock.
    #[error("transient database error: {0}")]
    Transient(#[source] Cause),
    /// Retrying cannot help: this data can never be stored as it is.
    #[error("database rejected the data: {0}")]
    Permanent(#[source] Cause),
    /// This instance no longer owns these partitions (they were claimed again since):
    /// nothing was written, and the batch is the new owner's to read again.
    #[error("partitions {0:?} were claimed by another owner; batch dropped")]
    Fenced(Vec<i32>),
}

/// Whether retrying the same statement can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The database or the connection failed; the data may be fine.
    Transient,
    /// The data itself was refused (a constraint, a value diesel could not bind).
    Permanent,
}

/// Classifies by SQLSTATE (as diesel's kind). Only errors about the data itself are
/// permanent; everything else is retried, since mistaking an outage for bad data
/// would dead-letter good events.
pub fn retry_of(e: &DieselError) -> Retry {
    match e {
        // 23xxx, integrity constraint violations.
        DieselError::DatabaseError(
            DatabaseErrorKind::CheckViolation
            | DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::RestrictViolation
            | DatabaseErrorKind::ExclusionViolation,
            _,
        ) => Retry::Permanent,
        // A value diesel could not encode never will be.
        DieselError::SerializationError(_) => Retry::Permanent,
        // 08xxx connection, 40001 serialization, 25006 read-only (a failover in
        // progress), 23505 (every insert is ON CONFLICT DO NOTHING, so only a race
        // that a retry resolves), every code diesel does not name, and everything
        // that is not the server's answer at all.
        _ => Retry::Transient,
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match retry_of(&e) {
            Retry::Permanent => StoreError::Permanent(Box::new(e)),
            Retry::Transient => StoreError::Transient(Box::new(e)),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Transient(Box::new(NoConnection(e)))
    }
}

/// The pool gave no connection in time: the database is down or unreachable.
#[derive(Debug, thiserror::Error)]
#[error("no database connection: {0}")]
pub struct NoConnection(#[source] pub diesel::r2d2::PoolError);

/// What a read (the gateway's queries) can end in.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No connection could be had: the database is down or unreachable.
    #[error("PostgreSQL is unreachable: {0}")]
    Unreachable(#[source] diesel::r2d2::PoolError),
    /// The connection broke during the query (SQLSTATE class 08).
    #[error("PostgreSQL connection lost: {0}")]
    ConnectionLost(#[source] DieselError),
    /// PostgreSQL cancelled the query at `statement_timeout`.
    #[error("the query was cancelled at the statement timeout: {0}")]
    TimedOut(#[source] DieselError),
    /// Any other failure of the query; the database itself is fine.
    #[error("query failed: {0}")]
    Failed(#[source] DieselError),
    /// A stored row that cannot be an event.
    #[error(transparent)]
    InvalidRow(#[from] InvalidRow),
    /// An offset page deeper than [`MAX_OFFSET_EVENTS`](crate::queries::page::MAX_OFFSET_EVENTS):
    /// the client's request, not the database, is at fault.
    #[error(
        "{page} with size {size} ends past the first {max} events, the deepest offset \
         paging goes; page on with `cursor` (each page's nextCursor)"
    )]
    TooDeep { page: i64, size: i64, max: i64 },
}

impl QueryError {
    /// Refines a failure with how long the query ran: diesel does not expose 57014
    /// (query_canceled), but a query that failed on a live connection after running
    /// for the whole `statement_timeout` is the one PostgreSQL cancelled.
    pub fn with_elapsed(self, elapsed: Duration, timeout: Option<Duration>) -> Self {
        match self {
            QueryError::Failed(e @ DieselError::DatabaseError(DatabaseErrorKind::Unknown, _))
                if timeout.is_some_and(|limit| elapsed >= limit) =>
            {
                QueryError::TimedOut(e)
            }
            other => other,
        }
    }
}

impl From<DieselError> for QueryError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                QueryError::ConnectionLost(e)
            }
            _ => QueryError::Failed(e),
        }
    }
}

impl From<diesel::r2d2::PoolError> for QueryError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        QueryError::Unreachable(e)
    }
}

/// A row read back that breaks the event's rules (say, a level outside the six):
/// an error, never a guess.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a stored row ({}) has an invalid {column}: {reason}", .id.map_or("an aggregate".to_owned(), |id| format!("event {id}")))]
pub struct InvalidRow {
    /// The event's id; `None` for an aggregate (stats) row.
    pub id: Option<Uuid>,
    pub column: &'static str,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    fn database(kind: DatabaseErrorKind) -> DieselError {
        DieselError::DatabaseError(kind, Box::new("from the server".to_owned()))
    }

    #[test]
    fn constraint_violations_are_permanent() {
        for kind in [
            DatabaseErrorKind::CheckViolation,
            DatabaseErrorKind::NotNullViolation,
            DatabaseErrorKind::ForeignKeyViolation,
            DatabaseErrorKind::RestrictViolation,
            DatabaseErrorKind::ExclusionViolation,
        ] {
            assert_eq!(retry_of(&database(kind)), Retry::Permanent);
        }
        let unencodable = DieselError::SerializationError("bad".into());
        assert!(matches!(
            StoreError::from(unencodable),
            StoreError::Permanent(_)
        ));
    }

    #[test]
    fn outages_and_unknown_codes_are_transient() {
        for kind in [
            DatabaseErrorKind::ClosedConnection,
            DatabaseErrorKind::SerializationFailure,
            DatabaseErrorKind::ReadOnlyTransaction,
            DatabaseErrorKind::UnableToSendCommand,
            DatabaseErrorKind::Unknown,
        ] {
            assert_eq!(retry_of(&database(kind)), Retry::Transient, "{kind:?}");
        }
        assert_eq!(
            retry_of(&DieselError::BrokenTransactionManager),
            Retry::Transient
        );
    }

    /// Text that reads like bad data does not make an error permanent: only the code does.
    #[test]
    fn the_message_text_is_never_read() {
        let looks_permanent = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("value too long for type character varying(5)".to_owned()),
        );
        assert_eq!(retry_of(&looks_permanent), Retry::Transient);
        let looks_transient = DieselError::DatabaseError(
            DatabaseErrorKind::CheckViolation,
            Box::new("connection reset; deadlock detected".to_owned()),
        );
        assert_eq!(retry_of(&looks_transient), Retry::Permanent);
    }

    #[test]
    fn the_diesel_error_is_the_source() {
        let error = StoreError::from(database(DatabaseErrorKind::CheckViolation));
        let source = error.source().expect("a source");
        assert!(source.downcast_ref::<DieselError>().is_some());
        assert!(error.to_string().contains("from the server"), "{error}");
    }

    #[test]
    fn queries_tell_lost_connections_timeouts_and_failures_apart() {
        let limit = Some(Duration::from_millis(300));
        let classify =
            |kind, elapsed, limit| QueryError::from(database(kind)).with_elapsed(elapsed, limit);
        let unknown = DatabaseErrorKind::Unknown;
        assert!(matches!(
            classify(DatabaseErrorKind::ClosedConnection, Duration::ZERO, limit),
            QueryError::ConnectionLost(_)
        ));
        assert!(matches!(
            classify(unknown, Duration::from_millis(300), limit),
            QueryError::TimedOut(_)
        ));
        assert!(matches!(
            classify(unknown, Duration::from_millis(5), limit),
            QueryError::Failed(_)
        ));
        assert!(matches!(
            classify(unknown, Duration::from_secs(9), None),
            QueryError::Failed(_)
        ));
        assert!(matches!(
            classify(
                DatabaseErrorKind::CheckViolation,
                Duration::from_secs(9),
                limit
            ),
            QueryError::Failed(_)
        ));
    }
}
