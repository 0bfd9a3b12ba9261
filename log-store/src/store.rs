//! The consumer's store: migrations, the batch transaction that makes consumption
//! exactly-once, and the upkeep of partitions (retention included).

use crate::error::StoreError;
use crate::models::NewLogEvent;
use crate::offsets::{Fence, PartitionCommit};
use crate::partitions::{self, Upkeep, UpkeepReport};
use crate::pool::{self, PgPool};
use chrono::{NaiveDate, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use log_common::settings::PostgresSettings;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// How the consumer stores events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Layout {
    /// One `log_events` row per event (what every query reads today).
    #[default]
    Rows,
    /// Event blocks in `log_blocks` (the `log-blocks` format; queries over them are
    /// being built: see README, "Event blocks").
    Blocks,
}

/// One consumer group's view of one topic's stored offsets, plus the events table.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    layout: Layout,
    /// Days whose partitions this process has seen exist, so a batch checks the
    /// catalog only for a day new to it.
    known_days: Arc<Mutex<BTreeSet<NaiveDate>>>,
    pub(crate) group: String,
    pub(crate) topic: String,
}

impl Store {
    /// Builds the pool without connecting: the consumer starts (and reports its
    /// health) even while PostgreSQL is still coming up.
    pub fn new(settings: &PostgresSettings, group: &str, topic: &str) -> anyhow::Result<Self> {
        Ok(Store {
            pool: pool::build(settings, None)?,
            layout: Layout::default(),
            known_days: Arc::default(),
            group: group.to_owned(),
            topic: topic.to_owned(),
        })
    }

    /// The same database and pool, for another topic's offsets.
    pub fn for_topic(&self, topic: &str) -> Store {
        Store {
            topic: topic.to_owned(),
            ..self.clone()
        }
    }

    /// The same store, writing events in `layout`.
    pub fn with_layout(self, layout: Layout) -> Store {
        Store { layout, ..self }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// One round of compaction (blocks only): one stream's small blocks merged.
    pub fn compact_once(
        &self,
        settle: std::time::Duration,
    ) -> Result<crate::blocks::compact::CompactReport, StoreError> {
        let mut conn = self.pool.get()?;
        Ok(crate::blocks::compact::compact_once(&mut conn, settle)?)
    }

    /// One round of the move of rows into blocks (see [`crate::blocks::migrate`]):
    /// how many rows moved, 0 when none is left.
    pub fn move_rows_once(&self) -> Result<usize, StoreError> {
        let mut conn = self.pool.get()?;
        Ok(crate::blocks::migrate::move_oldest_rows(
            &mut conn,
            crate::blocks::migrate::ROWS_A_ROUND,
        )?)
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
    ///
    /// The partitions of the rows' days are created first if missing (the caller
    /// refuses days outside retention; see [`Upkeep::oldest_kept_day`]).
    pub fn write_batch(
        &self,
        rows: &[NewLogEvent],
        commits: &BTreeMap<i32, PartitionCommit>,
    ) -> Result<usize, StoreError> {
        // Blocks are built before the transaction, so its locks are held only for the
        // statements.
        let mut prepared = match self.layout {
            Layout::Rows => None,
            Layout::Blocks => Some(
                crate::blocks::write::prepare(rows)
                    .map_err(|e| StoreError::Permanent(Box::new(e)))?,
            ),
        };
        let mut conn = self.pool.get()?;
        self.ensure_partitions(&mut conn, rows)?;
        let result = conn.transaction::<usize, WriteError, _>(|conn| {
            // The fence first: it locks the offset rows until commit, so no claim can
            // slip in between the check and the commit.
            let started = Instant::now();
            self.check_fence(conn, commits)?;
            partitions::hold_id_generation(conn)?;
            let fenced = Instant::now();
            let inserted = match prepared.take() {
                None => crate::insert::insert(conn, rows)?,
                Some(batch) => crate::blocks::write::insert(conn, batch)?,
            };
            let stored = Instant::now();
            crate::rollups::add(conn, &inserted)?;
            let rolled_up = Instant::now();
            self.store_offsets(conn, commits)?;
            // Where a batch's time goes, for profiling the write path.
            tracing::debug!(
                rows = rows.len(),
                fence_ms = (fenced - started).as_secs_f64() * 1e3,
                events_ms = (stored - fenced).as_secs_f64() * 1e3,
                rollups_ms = (rolled_up - stored).as_secs_f64() * 1e3,
                offsets_ms = rolled_up.elapsed().as_secs_f64() * 1e3,
                "batch statements"
            );
            Ok(inserted.len())
        });
        match result {
            Ok(inserted) => Ok(inserted),
            Err(WriteError::Fenced(partitions)) => Err(StoreError::Fenced(partitions)),
            Err(WriteError::Database(e)) => Err(e.into()),
        }
    }

    /// Creates the partitions of the days of `rows` this process has not seen yet.
    /// (Rarely anything to do: the upkeep makes two days ahead. A CREATE … PARTITION OF
    /// takes the parent table to itself for an instant, waiting for running queries,
    /// which the gateway's statement timeout bounds.)
    fn ensure_partitions(
        &self,
        conn: &mut PgConnection,
        rows: &[NewLogEvent],
    ) -> Result<(), StoreError> {
        let days: BTreeSet<NaiveDate> = rows
            .iter()
            .map(|r| partitions::day_of(r.timestamp))
            .collect();
        let missing: Vec<NaiveDate> = {
            let known = self.known_days.lock().unwrap_or_else(|e| e.into_inner());
            days.difference(&known).copied().collect()
        };
        for day in missing {
            partitions::create_day(conn, day)?;
            self.known_days
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(day);
        }
        Ok(())
    }

    /// One round of partition upkeep: days ahead created, the id generation moved,
    /// and what retention and the id memory no longer keep dropped whole.
    pub fn upkeep(&self, upkeep: &Upkeep) -> Result<UpkeepReport, StoreError> {
        let mut conn = self.pool.get()?;
        let report = upkeep.run(&mut conn, Utc::now())?;
        if !report.dropped.is_empty() {
            // A dropped day may come back (retention changed, a far-future event):
            // it must then be created again.
            self.known_days
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        Ok(report)
    }
}
