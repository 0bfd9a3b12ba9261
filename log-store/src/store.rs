//! The consumer's store: migrations, the batch transaction that makes consumption
//! exactly-once, and retention.

use crate::error::StoreError;
use crate::insert::InsertMode;
use crate::models::NewLogEvent;
use crate::offsets::{Fence, PartitionCommit};
use crate::pool::{self, PgPool};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use log_common::settings::PostgresSettings;
use std::collections::BTreeMap;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// Inside the batch transaction: the fence is not a database error, but it must roll
/// the transaction back like one.
#[derive(Debug)]
enum WriteError {
    Fenced(Vec<i32>),
    Database(DieselError),
}

impl From<DieselError> for WriteError {
    fn from(e: DieselError) -> Self {
        WriteError::Database(e)
    }
}

impl From<Fence> for WriteError {
    fn from(fence: Fence) -> Self {
        match fence {
            Fence::Lost(partitions) => WriteError::Fenced(partitions),
            Fence::Database(e) => WriteError::Database(e),
        }
    }
}

/// One consumer group's view of one topic's stored offsets, plus the events table.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    insert_mode: InsertMode,
    pub(crate) group: String,
    pub(crate) topic: String,
}

impl Store {
    /// Builds the pool without connecting: the consumer starts (and reports its
    /// health) even while PostgreSQL is still coming up.
    pub fn new(
        settings: &PostgresSettings,
        group: &str,
        topic: &str,
        insert_mode: InsertMode,
    ) -> anyhow::Result<Self> {
        Ok(Store {
            pool: pool::build(settings, None)?,
            insert_mode,
            group: group.to_owned(),
            topic: topic.to_owned(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn run_migrations(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.get()?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("migrations failed: {e}"))?;
        for version in applied {
            tracing::info!(%version, "migration applied");
        }
        Ok(())
    }

    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get()?;
        diesel::sql_query("SELECT 1").execute(&mut conn)?;
        Ok(())
    }

    /// One transaction: check the fence, insert the rows (skipping ids already stored)
    /// and move each partition's stored offset to its `next_offset`. Returns the rows
    /// inserted, or [`StoreError::Fenced`] (nothing written) when another claim of one
    /// of the partitions came after the one `commits` carries.
    pub fn write_batch(
        &self,
        rows: &[NewLogEvent],
        commits: &BTreeMap<i32, PartitionCommit>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.pool.get()?;
        let result = conn.transaction::<usize, WriteError, _>(|conn| {
            // The fence first: it locks the offset rows until commit, so no claim can
            // slip in between the check and the commit.
            self.check_fence(conn, commits)?;
            let inserted = self.insert_mode.insert(conn, rows)?;
            crate::counts::add(conn, &inserted)?;
            self.store_offsets(conn, commits)?;
            Ok(inserted.len())
        });
        match result {
            Ok(inserted) => Ok(inserted),
            Err(WriteError::Fenced(partitions)) => Err(StoreError::Fenced(partitions)),
            Err(WriteError::Database(e)) => Err(e.into()),
        }
    }

    /// Deletes events older than `days`, in small slices so no lock is held long and
    /// ingest is never blocked. Returns how many rows went.
    pub fn enforce_retention(&self, days: u32) -> Result<usize, StoreError> {
        let mut conn = self.pool.get()?;
        let mut total = 0;
        loop {
            let deleted = diesel::sql_query(
                "DELETE FROM log_events WHERE id IN (SELECT id FROM log_events \
                 WHERE \"timestamp\" < now() - make_interval(days => $1) LIMIT 5000)",
            )
            .bind::<diesel::sql_types::Integer, _>(i32::try_from(days).unwrap_or(i32::MAX))
            .execute(&mut conn)?;
            total += deleted;
            if deleted < 5000 {
                crate::counts::enforce_retention(&mut conn, days)?;
                return Ok(total);
            }
        }
    }
}
