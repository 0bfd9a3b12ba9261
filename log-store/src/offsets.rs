//! Stored offsets and the fence: PostgreSQL, not Kafka, holds where each partition
//! resumes, and an owner epoch per partition refuses batches of a superseded claim.

use crate::error::StoreError;
use crate::schema::consumer_offsets;
use crate::store::Store;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use std::collections::BTreeMap;

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

/// Why [`Store::check_fence`] refused.
#[derive(Debug)]
pub(crate) enum Fence {
    /// These partitions were claimed again since.
    Lost(Vec<i32>),
    Database(DieselError),
}

impl From<DieselError> for Fence {
    fn from(e: DieselError) -> Self {
        Fence::Database(e)
    }
}

impl Store {
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
        let mut conn = self.pool().get()?;
        // Raw SQL: diesel's upsert cannot insert from `unnest` in a chosen order.
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

    /// Locks the offset rows of `commits` (in partition order) and refuses when one of
    /// them has an epoch that moved on since this instance claimed it.
    pub(crate) fn check_fence(
        &self,
        conn: &mut PgConnection,
        commits: &BTreeMap<i32, PartitionCommit>,
    ) -> Result<(), Fence> {
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
            Err(Fence::Lost(lost))
        }
    }

    /// Moves the offsets on; the rows are locked by [`Store::check_fence`] already.
    pub(crate) fn store_offsets(
        &self,
        conn: &mut PgConnection,
        commits: &BTreeMap<i32, PartitionCommit>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, Int4, Int8, Text};
        if commits.is_empty() {
            return Ok(());
        }
        // GREATEST never moves an offset backwards (it ignores the NULL of a fresh
        // claim); raw SQL because diesel's UPDATE has no FROM clause.
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
}
