//! Compaction: a stream's small blocks merged into large ones in the background, so a
//! quiet source or a low rate still ends in blocks that compress well and that a query
//! opens few of.
//!
//! One round takes one stream (lane, Kafka partition, source, UTC day) with at least two
//! small blocks that are worth merging now: together a full block's worth
//! ([`SMALL_BLOCK_EVENTS`]), or settled (the newest written `settle` ago, so a quiet
//! source is compacted too). Merging any two small blocks as soon as they exist made a
//! busy stream's events be re-encoded again and again on their way to a full block
//! (compaction was 45% of the consumer's CPU in a drain). In one transaction it locks
//! up to [`MERGE_MAX_EVENTS`] of its small blocks' events (`FOR UPDATE SKIP LOCKED`, so
//! two compactors never take the same block), decodes them, cuts the merged,
//! time-ordered events into blocks within the writer's bounds, inserts those and deletes
//! the old ones. A reader's snapshot sees either the old blocks or the new ones, never
//! both and never neither; a crash before the commit leaves the old blocks as they were. A block that does not decode is left
//! out of the merge, kept as it is, and counted.
//!
//! The writer only ever inserts blocks, so it and compaction never wait on each other;
//! the rollups and the id memory count events, not blocks, and stay as they are.

use super::write::{cut_events, NewBlock};
use crate::schema::log_blocks;
use diesel::prelude::*;

/// A block with fewer events than this is small: compaction merges it.
pub const SMALL_BLOCK_EVENTS: i32 = 8_192;
/// The most events one merge reads (and so holds in memory) at once.
pub const MERGE_MAX_EVENTS: i64 = 65_536;

/// The most streams one round looks at before it gives up.
pub const STREAMS_A_ROUND: i64 = 16;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Blocks replaced (0: nothing was left to merge).
    pub merged: usize,
    /// Blocks written in their place.
    pub written: usize,
    /// Events moved.
    pub events: usize,
    /// Blocks found damaged and left as they are.
    pub corrupt: usize,
}

#[derive(QueryableByName)]
struct Stream {
    #[diesel(sql_type = diesel::sql_types::SmallInt)]
    lane: i16,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    kafka_partition: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    source: String,
    #[diesel(sql_type = diesel::sql_types::Date)]
    day: chrono::NaiveDate,
}

#[derive(QueryableByName)]
struct Small {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    block_id: i64,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    payload: Vec<u8>,
}

/// One round: merges the small blocks of one stream that has two or more. Streams are
/// tried oldest day first; one whose blocks cannot be merged (taken by another
/// compactor, or one good block beside a damaged one) is passed for the next, up to
/// [`STREAMS_A_ROUND`].
pub fn compact_once(
    conn: &mut PgConnection,
    settle: std::time::Duration,
) -> QueryResult<CompactReport> {
    let settled_before =
        chrono::Utc::now() - chrono::TimeDelta::from_std(settle).expect("a settle time in range");
    let streams: Vec<Stream> = diesel::sql_query(
        "SELECT lane, kafka_partition, source::text AS source, \
                (min_time AT TIME ZONE 'UTC')::date AS day \
         FROM log_blocks WHERE events < $1 \
         GROUP BY 1, 2, 3, 4 \
         HAVING count(*) > 1 AND (sum(events) >= $1 OR max(created_at) < $3) \
         ORDER BY 4, 3, 2, 1 LIMIT $2",
    )
    .bind::<diesel::sql_types::Integer, _>(SMALL_BLOCK_EVENTS)
    .bind::<diesel::sql_types::BigInt, _>(STREAMS_A_ROUND)
    .bind::<diesel::sql_types::Timestamptz, _>(settled_before)
    .load(conn)?;
    let mut report = CompactReport::default();
    for stream in streams {
        let merged = conn.transaction(|conn| merge(conn, &stream))?;
        report.corrupt += merged.corrupt;
        if merged.merged > 0 {
            return Ok(CompactReport {
                corrupt: report.corrupt,
                ..merged
            });
        }
    }
    Ok(report)
}

fn merge(conn: &mut PgConnection, stream: &Stream) -> QueryResult<CompactReport> {
    let start = stream.day.and_time(chrono::NaiveTime::MIN).and_utc();
    let end = start + chrono::TimeDelta::days(1);
    // The oldest small blocks, those that start within the first MERGE_MAX_EVENTS
    // events (so at most one small block more).
    let smalls: Vec<Small> = diesel::sql_query(
        "SELECT block_id, payload FROM ( \
             SELECT block_id, payload, events, \
                    sum(events) OVER (ORDER BY min_time, block_id) AS upto \
             FROM log_blocks \
             WHERE lane = $1 AND kafka_partition = $2 AND source = $3 \
               AND min_time >= $4 AND min_time < $5 AND events < $6 \
         ) b WHERE upto - events < $7 \
         ORDER BY block_id",
    )
    .bind::<diesel::sql_types::SmallInt, _>(stream.lane)
    .bind::<diesel::sql_types::Integer, _>(stream.kafka_partition)
    .bind::<diesel::sql_types::Text, _>(&stream.source)
    .bind::<diesel::sql_types::Timestamptz, _>(start)
    .bind::<diesel::sql_types::Timestamptz, _>(end)
    .bind::<diesel::sql_types::Integer, _>(SMALL_BLOCK_EVENTS)
    .bind::<diesel::sql_types::BigInt, _>(MERGE_MAX_EVENTS)
    .load(conn)?;
    // Lock them; one another compactor took first is skipped, and so is the merge if
    // fewer than two are left.
    let ids: Vec<i64> = smalls.iter().map(|s| s.block_id).collect();
    let locked: Vec<i64> = log_blocks::table
        .filter(log_blocks::block_id.eq_any(&ids))
        .filter(log_blocks::min_time.ge(start))
        .filter(log_blocks::min_time.lt(end))
        .select(log_blocks::block_id)
        .for_update()
        .skip_locked()
        .load(conn)?;
    let mut report = CompactReport::default();
    let mut taken = Vec::new();
    let mut events = Vec::new();
    for small in smalls.into_iter().filter(|s| locked.contains(&s.block_id)) {
        match ::log_blocks::decode(&small.payload) {
            Ok(decoded) => {
                events.extend(decoded);
                taken.push(small.block_id);
            }
            Err(e) => {
                report.corrupt += 1;
                tracing::error!(block_id = small.block_id, error = %e, "a stored block does not decode; left out of compaction");
            }
        }
    }
    if taken.len() < 2 {
        return Ok(report);
    }
    report.events = events.len();
    let built =
        cut_events(events).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    let rows: Vec<NewBlock<'_>> = built
        .iter()
        .filter_map(|b| NewBlock::of(stream.lane, stream.kafka_partition, &stream.source, b))
        .collect();
    diesel::insert_into(log_blocks::table)
        .values(&rows)
        .execute(conn)?;
    diesel::delete(
        log_blocks::table
            .filter(log_blocks::block_id.eq_any(&taken))
            .filter(log_blocks::min_time.ge(start))
            .filter(log_blocks::min_time.lt(end)),
    )
    .execute(conn)?;
    report.merged = taken.len();
    report.written = rows.len();
    tracing::debug!(?report, source = %stream.source, partition = stream.kafka_partition, "blocks compacted");
    Ok(report)
}
