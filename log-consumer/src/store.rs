//! PostgreSQL through diesel: migrations, stored offsets, and the batch transaction
//! that makes consumption exactly-once.

use crate::record::NewLogEvent;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use log_common::schema::{consumer_offsets, log_events};
use log_common::settings::PostgresSettings;
use std::collections::BTreeMap;
use std::time::Duration;

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// PostgreSQL allows 65,535 bind parameters per statement; 11 columns a row.
const ROWS_PER_INSERT: usize = 5000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: the database is away, a connection dropped, a deadlock.
    #[error("transient database error: {0}")]
    Transient(String),
    /// Retrying cannot help: this data can never be stored as it is.
    #[error("database rejected the data: {0}")]
    Permanent(String),
    /// This instance no longer owns these partitions (they were claimed again since):
    /// nothing was written, and the batch is the new owner's to read again.
    #[error("partitions {0:?} were claimed by another owner; batch dropped")]
    Fenced(Vec<i32>),
}

/// What a claim of a partition returns: where to start reading, and the epoch every
/// batch transaction for it must still find to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionClaim {
    /// `None`: nothing stored yet, start at the beginning.
    pub next_offset: Option<i64>,
    pub epoch: i64,
}

/// The offset a batch moves one partition to, under the epoch of the claim it was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionCommit {
    pub next_offset: i64,
    pub epoch: i64,
}

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

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        // Only errors about the data itself are permanent. Everything else is
        // retried: mistaking an outage for bad data would dead-letter good events.
        match &e {
            DieselError::DatabaseError(
                DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::ExclusionViolation,
                _,
            ) => StoreError::Permanent(e.to_string()),
            DieselError::DatabaseError(_, info)
                if [
                    "invalid byte sequence",
                    "value too long",
                    "unsupported Unicode escape",
                ]
                .iter()
                .any(|m| info.message().contains(m)) =>
            {
                StoreError::Permanent(e.to_string())
            }
            DieselError::SerializationError(_) => StoreError::Permanent(e.to_string()),
            _ => StoreError::Transient(e.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Transient(format!("no database connection: {e}"))
    }
}

/// How a batch's rows reach PostgreSQL; both skip ids already stored. (A binary COPY
/// path through a staging table was measured at 0.95x `unnest` with two writers and
/// removed; BENCHMARKS.md.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InsertMode {
    /// `INSERT … VALUES (…), (…)` with a bind parameter per column per row.
    Values,
    /// `INSERT … SELECT FROM unnest($1::uuid[], …)`: one array parameter per column,
    /// so the statement is the same size whatever the batch.
    Unnest,
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    insert_mode: InsertMode,
    group: String,
    topic: String,
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
        let manager = ConnectionManager::<PgConnection>::new(settings.connection_url()?);
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .build_unchecked(manager);
        Ok(Store {
            pool,
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

    /// Claims `partitions` for this instance: moves each one's owner epoch on (creating
    /// its row if nothing was stored for it yet) and returns the stored next offset and
    /// the new epoch. From this commit on, a batch transaction holding an older epoch
    /// for any of these partitions is refused (see [`Store::write_batch`]).
    ///
    /// One statement, rows taken in partition order (as every batch transaction takes
    /// them), so a claim and a batch never wait on each other in a cycle. A claim waits
    /// for a batch in flight on the same partition to commit, then reads its offset.
    pub fn claim_partitions(
        &self,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, PartitionClaim>, StoreError> {
        use diesel::sql_types::{Array, Int4, Int8, Nullable, Text};
        #[derive(QueryableByName)]
        struct Claimed {
            #[diesel(sql_type = Int4)]
            partition: i32,
            #[diesel(sql_type = Nullable<Int8>)]
            next_offset: Option<i64>,
            #[diesel(sql_type = Int8)]
            owner_epoch: i64,
        }
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut sorted = partitions.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut conn = self.pool.get()?;
        let claimed: Vec<Claimed> = diesel::sql_query(
            "INSERT INTO consumer_offsets (consumer_group, topic, \"partition\", next_offset, owner_epoch) \
             SELECT $1, $2, p, NULL, 1 FROM unnest($3::int4[]) AS p ORDER BY p \
             ON CONFLICT (consumer_group, topic, \"partition\") DO UPDATE \
             SET owner_epoch = consumer_offsets.owner_epoch + 1, updated_at = now() \
             RETURNING \"partition\", next_offset, owner_epoch",
        )
        .bind::<Text, _>(&self.group)
        .bind::<Text, _>(&self.topic)
        .bind::<Array<Int4>, _>(&sorted)
        .load(&mut conn)?;
        Ok(claimed
            .into_iter()
            .map(|c| {
                let claim = PartitionClaim {
                    next_offset: c.next_offset,
                    epoch: c.owner_epoch,
                };
                (c.partition, claim)
            })
            .collect())
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
            let inserted = match self.insert_mode {
                InsertMode::Values => insert_values(conn, rows)?,
                InsertMode::Unnest => insert_unnest(conn, rows)?,
            };
            self.store_offsets(conn, commits)?;
            Ok(inserted)
        });
        match result {
            Ok(inserted) => Ok(inserted),
            Err(WriteError::Fenced(partitions)) => Err(StoreError::Fenced(partitions)),
            Err(WriteError::Database(e)) => Err(e.into()),
        }
    }

    /// Locks the offset rows of `commits` (in partition order) and returns the
    /// partitions whose epoch has moved on since this instance claimed them.
    fn check_fence(
        &self,
        conn: &mut PgConnection,
        commits: &BTreeMap<i32, PartitionCommit>,
    ) -> Result<(), WriteError> {
        use consumer_offsets::dsl as o;
        if commits.is_empty() {
            return Ok(());
        }
        let current: Vec<(i32, i64)> = o::consumer_offsets
            .filter(o::consumer_group.eq(&self.group))
            .filter(o::topic.eq(&self.topic))
            .filter(o::partition.eq_any(commits.keys()))
            .order(o::partition)
            .select((o::partition, o::owner_epoch))
            .for_update()
            .load(conn)?;
        let current: BTreeMap<i32, i64> = current.into_iter().collect();
        let lost: Vec<i32> = commits
            .iter()
            .filter(|(partition, commit)| current.get(partition) != Some(&commit.epoch))
            .map(|(partition, _)| *partition)
            .collect();
        if lost.is_empty() {
            Ok(())
        } else {
            Err(WriteError::Fenced(lost))
        }
    }

    /// Moves the offsets on; the rows are locked by [`Store::check_fence`] already.
    fn store_offsets(
        &self,
        conn: &mut PgConnection,
        commits: &BTreeMap<i32, PartitionCommit>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Int4, Int8, Text};
        if commits.is_empty() {
            return Ok(());
        }
        // GREATEST never moves an offset backwards (it ignores the NULL of a fresh claim).
        diesel::sql_query(
            "UPDATE consumer_offsets o \
             SET next_offset = GREATEST(o.next_offset, v.next_offset), updated_at = now() \
             FROM unnest($3::int4[], $4::int8[]) AS v(\"partition\", next_offset) \
             WHERE o.consumer_group = $1 AND o.topic = $2 AND o.\"partition\" = v.\"partition\"",
        )
        .bind::<Text, _>(&self.group)
        .bind::<Text, _>(&self.topic)
        .bind::<Array<Int4>, _>(commits.keys().copied().collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(commits.values().map(|c| c.next_offset).collect::<Vec<_>>())
        .execute(conn)?;
        Ok(())
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
                return Ok(total);
            }
        }
    }
}

fn insert_values(conn: &mut PgConnection, rows: &[NewLogEvent]) -> QueryResult<usize> {
    let mut inserted = 0;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        inserted += diesel::insert_into(log_events::table)
            .values(chunk)
            .on_conflict(log_events::id)
            .do_nothing()
            .execute(conn)?;
    }
    Ok(inserted)
}

fn insert_unnest(conn: &mut PgConnection, rows: &[NewLogEvent]) -> QueryResult<usize> {
    use diesel::sql_types::{
        Array, Int4, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
    };
    if rows.is_empty() {
        return Ok(0);
    }
    // Columns borrow from the batch: no copy of the rows is made to bind them.
    let text = |f: fn(&NewLogEvent) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let optional = |f: fn(&NewLogEvent) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    diesel::sql_query(
        "INSERT INTO log_events (id, level, message, source, \"timestamp\", metadata, correlation_id, \
         request_id, trace_id, kafka_partition, kafka_offset) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], \
         $7::text[], $8::text[], $9::text[], $10::int4[], $11::int8[]) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(text(|r| &r.level))
    .bind::<Array<Text>, _>(text(|r| &r.message))
    .bind::<Array<Text>, _>(text(|r| &r.source))
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.timestamp).collect::<Vec<_>>())
    .bind::<Array<Nullable<Jsonb>>, _>(rows.iter().map(|r| r.metadata.as_ref()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(optional(|r| r.correlation_id.as_deref()))
    .bind::<Array<Nullable<Text>>, _>(optional(|r| r.request_id.as_deref()))
    .bind::<Array<Nullable<Text>>, _>(optional(|r| r.trace_id.as_deref()))
    .bind::<Array<Int4>, _>(rows.iter().map(|r| r.kafka_partition).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(rows.iter().map(|r| r.kafka_offset).collect::<Vec<_>>())
    .execute(conn)
}
