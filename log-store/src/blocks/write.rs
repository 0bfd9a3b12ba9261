//! The consumer's write path for blocks: a batch's rows become blocks, the rows stored
//! already are dropped ([`super::copies`]), and the new blocks are inserted, all inside the
//! batch transaction ([`crate::Store::write_batch`]) with the fence, the rollups and
//! the offsets.
//!
//! The blocks are built (columns compressed, filters made) before the transaction, so
//! the locks it takes are held only for the statements; a group that turns out to hold
//! an id already stored is built again without it, which a replay or a client's retry
//! costs and nothing else does.

use crate::models::NewLogEvent;
use crate::partitions;
use crate::rollups::Counted;
use crate::schema::log_blocks;
use ::log_blocks::{BlockEvent, BuiltBlock, FormatError};
use chrono::NaiveDate;
use diesel::prelude::*;
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// The most events a block written from a batch holds (a batch is smaller by default).
pub const BLOCK_MAX_EVENTS: usize = 16_384;
/// The most message and metadata bytes a block holds, so its largest column stays far
/// inside the format's bound however long the messages are.
pub const BLOCK_MAX_TEXT_BYTES: usize = 8 << 20;

/// What makes events one stream, and so one block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct StreamKey {
    lane: i16,
    kafka_partition: i32,
    source: String,
    day: NaiveDate,
}

/// One block ready to insert, with the rows it holds (for the rollups and a rebuild).
pub struct PreparedBlock {
    lane: i16,
    kafka_partition: i32,
    source: String,
    rows: Vec<usize>,
    built: BuiltBlock,
}

/// A batch's rows cut into blocks and built, before the transaction.
pub struct PreparedBatch<'a> {
    rows: &'a [NewLogEvent],
    blocks: Vec<PreparedBlock>,
}

impl PreparedBatch<'_> {
    pub(crate) fn blocks(&self) -> &[PreparedBlock] {
        &self.blocks
    }
}

/// Why a row cannot go into a block: the consumer validated every row, so this is a
/// bug, and the batch fails as a permanent error rather than store something else.
#[derive(Debug, thiserror::Error)]
#[error("row {id} cannot be stored in a block: {reason}")]
pub struct UnstorableRow {
    pub id: Uuid,
    pub reason: String,
}

fn block_event(row: &NewLogEvent) -> Result<BlockEvent, UnstorableRow> {
    let level = ::log_blocks::level_code(&row.level).ok_or_else(|| UnstorableRow {
        id: row.id,
        reason: format!("unknown level {}", row.level),
    })?;
    Ok(BlockEvent {
        id: row.id.as_u128(),
        timestamp_micros: super::micros(row.timestamp),
        level,
        source: row.source.clone(),
        message: row.message.clone(),
        metadata: row.metadata.as_ref().map(|m| m.as_str().to_owned()),
        correlation_id: row.correlation_id.clone(),
        request_id: row.request_id.clone(),
        trace_id: row.trace_id.clone(),
        kafka_offset: row.kafka_offset,
    })
}

/// Splits time-ordered `items` into runs within the block bounds: at most
/// [`BLOCK_MAX_EVENTS`], and at most [`BLOCK_MAX_TEXT_BYTES`] of text unless one item
/// alone is more.
fn bounded<T>(items: Vec<T>, text_bytes: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut runs = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = text_bytes(&item);
        if !current.is_empty()
            && (current.len() == BLOCK_MAX_EVENTS || bytes + size > BLOCK_MAX_TEXT_BYTES)
        {
            runs.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Cuts `rows` (by index) into blocks: one stream each, in time order, within the
/// block bounds, taking only the rows `keep` says.
fn cut(rows: &[NewLogEvent], keep: impl Fn(usize) -> bool) -> Vec<(StreamKey, Vec<usize>)> {
    let mut streams: BTreeMap<StreamKey, Vec<usize>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate().filter(|(i, _)| keep(*i)) {
        let key = StreamKey {
            lane: row.lane,
            kafka_partition: row.kafka_partition,
            source: row.source.clone(),
            day: partitions::day_of(row.timestamp),
        };
        streams.entry(key).or_default().push(i);
    }
    let text_bytes = |&i: &usize| {
        rows[i].message.len() + rows[i].metadata.as_ref().map_or(0, |m| m.as_str().len())
    };
    let mut blocks = Vec::new();
    for (key, mut members) in streams {
        members.sort_by_key(|&i| (rows[i].timestamp, rows[i].kafka_offset));
        for run in bounded(members, text_bytes) {
            blocks.push((key.clone(), run));
        }
    }
    blocks
}

/// The blocks of one stream's events (compaction's merge): time-ordered and cut
/// within the same bounds as a batch's.
pub fn cut_events(mut events: Vec<BlockEvent>) -> Result<Vec<BuiltBlock>, FormatError> {
    events.sort_by_key(|e| (e.timestamp_micros, e.kafka_offset));
    let text_bytes = |e: &BlockEvent| e.message.len() + e.metadata.as_ref().map_or(0, String::len);
    bounded(events, text_bytes)
        .iter()
        .map(|run| ::log_blocks::build(run))
        .collect()
}

fn build_block(
    rows: &[NewLogEvent],
    key: StreamKey,
    members: Vec<usize>,
) -> Result<PreparedBlock, UnstorableRow> {
    let events = members
        .iter()
        .map(|&i| block_event(&rows[i]))
        .collect::<Result<Vec<_>, _>>()?;
    let built = ::log_blocks::build(&events).map_err(|e: FormatError| UnstorableRow {
        id: rows[members[0]].id,
        reason: e.to_string(),
    })?;
    Ok(PreparedBlock {
        lane: key.lane,
        kafka_partition: key.kafka_partition,
        source: key.source,
        rows: members,
        built,
    })
}

/// The ids of `rows` that come first in the batch: a second copy of an id in the
/// same batch is never stored.
fn first_copies(rows: &[NewLogEvent]) -> HashSet<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| {
        (
            rows[i].id,
            rows[i].lane,
            rows[i].kafka_partition,
            rows[i].kafka_offset,
        )
    });
    let mut first = HashSet::with_capacity(rows.len());
    let mut previous = None;
    for i in order {
        if previous != Some(rows[i].id) {
            first.insert(i);
            previous = Some(rows[i].id);
        }
    }
    first
}

/// Builds the blocks of a batch, outside any transaction.
pub fn prepare(rows: &[NewLogEvent]) -> Result<PreparedBatch<'_>, UnstorableRow> {
    let first = first_copies(rows);
    let blocks = cut(rows, |i| first.contains(&i))
        .into_iter()
        .map(|(key, members)| build_block(rows, key, members))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PreparedBatch { rows, blocks })
}

/// A block's row as inserted.
#[derive(Insertable)]
#[diesel(table_name = log_blocks)]
pub(crate) struct NewBlock<'a> {
    lane: i16,
    kafka_partition: i32,
    source: &'a str,
    min_time: chrono::DateTime<chrono::Utc>,
    max_time: chrono::DateTime<chrono::Utc>,
    min_offset: i64,
    max_offset: i64,
    events: i32,
    level_counts: Vec<i32>,
    format_version: i16,
    token_filter: &'a [u8],
    key_filter: &'a [u8],
    payload: &'a [u8],
}

impl<'a> NewBlock<'a> {
    /// The row of a built block of a stream; `None` only for a time PostgreSQL cannot
    /// hold, which a block built from stored times never has.
    pub(crate) fn of(
        lane: i16,
        kafka_partition: i32,
        source: &'a str,
        built: &'a BuiltBlock,
    ) -> Option<Self> {
        let summary = &built.summary;
        Some(NewBlock {
            lane,
            kafka_partition,
            source,
            min_time: super::from_micros(summary.min_time_micros)?,
            max_time: super::from_micros(summary.max_time_micros)?,
            min_offset: summary.min_offset,
            max_offset: summary.max_offset,
            events: summary.events as i32,
            level_counts: summary.level_counts.iter().map(|&n| n as i32).collect(),
            format_version: i16::from(::log_blocks::VERSION),
            token_filter: &built.token_filter,
            key_filter: &built.key_filter,
            payload: &built.payload,
        })
    }
}

/// Inside the batch transaction: drops the rows stored before ([`super::copies`]),
/// rebuilding their blocks, inserts the blocks and returns what the rollups must add.
pub fn insert(conn: &mut PgConnection, batch: PreparedBatch<'_>) -> QueryResult<Vec<Counted>> {
    let PreparedBatch { rows, mut blocks } = batch;
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    let candidates: Vec<usize> = blocks.iter().flat_map(|b| b.rows.iter().copied()).collect();
    let stored = super::copies::stored_already(conn, rows, &candidates)?;
    if !stored.is_empty() {
        let mut rebuilt = Vec::with_capacity(blocks.len());
        for block in blocks {
            if block.rows.iter().all(|i| !stored.contains(i)) {
                rebuilt.push(block);
                continue;
            }
            let kept: HashSet<usize> = block
                .rows
                .iter()
                .copied()
                .filter(|i| !stored.contains(i))
                .collect();
            for (key, members) in cut(rows, |i| kept.contains(&i)) {
                // The rows were built into a block a moment ago: they build again.
                let block = build_block(rows, key, members)
                    .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
                rebuilt.push(block);
            }
        }
        blocks = rebuilt;
    }

    insert_blocks(conn, &blocks)?;
    Ok(blocks
        .iter()
        .flat_map(|b| b.rows.iter().map(|&i| counted(&rows[i])))
        .collect())
}

/// Inserts built blocks as they are (no id memory, no rollups): the tail of
/// [`insert`], and the move of stored rows ([`super::migrate`]).
pub(crate) fn insert_blocks(conn: &mut PgConnection, blocks: &[PreparedBlock]) -> QueryResult<()> {
    let new_blocks: Vec<NewBlock<'_>> = blocks
        .iter()
        .filter_map(|b| NewBlock::of(b.lane, b.kafka_partition, &b.source, &b.built))
        .collect();
    // Every time came from a DateTime, so converts back.
    debug_assert_eq!(new_blocks.len(), blocks.len());
    // One statement per few hundred blocks keeps the binds under PostgreSQL's 65,535.
    for chunk in new_blocks.chunks(1_000) {
        diesel::insert_into(log_blocks::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(())
}

fn counted(row: &NewLogEvent) -> Counted {
    Counted {
        timestamp: row.timestamp,
        level: row.level.clone(),
        source: row.source.clone(),
        kafka_partition: row.kafka_partition,
        duration: row.metadata.as_ref().and_then(|m| duration_of(m.as_str())),
    }
}

/// `metadata.duration` when it is a JSON number, as the rollups' sketch takes it.
fn duration_of(metadata: &str) -> Option<f64> {
    #[derive(serde::Deserialize)]
    struct Duration {
        duration: Option<serde_json::Value>,
    }
    serde_json::from_str::<Duration>(metadata)
        .ok()?
        .duration?
        .as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn row(id: u128, source: &str, second: u32, offset: i64) -> NewLogEvent {
        NewLogEvent {
            id: Uuid::from_u128(id),
            level: "INFO".into(),
            message: format!("message {id}"),
            source: source.into(),
            timestamp: Utc
                .with_ymd_and_hms(2026, 12, 7, 23, 59, second)
                .single()
                .expect("time"),
            metadata: None,
            correlation_id: None,
            request_id: None,
            trace_id: None,
            lane: 0,
            kafka_partition: (offset % 2) as i32,
            kafka_offset: offset,
        }
    }

    #[test]
    fn a_block_is_one_stream_in_time_order() {
        let rows = vec![
            row(1, "api", 30, 0),
            row(2, "db", 10, 1),
            row(3, "api", 10, 2),
            row(4, "api", 20, 4),
            row(5, "api", 5, 3),
        ];
        let blocks = cut(&rows, |_| true);
        let grouped: Vec<(String, i32, Vec<u128>)> = blocks
            .into_iter()
            .map(|(k, m)| {
                (
                    k.source,
                    k.kafka_partition,
                    m.iter().map(|&i| rows[i].id.as_u128()).collect(),
                )
            })
            .collect();
        assert_eq!(
            grouped,
            vec![
                ("api".into(), 0, vec![3, 4, 1]),
                ("api".into(), 1, vec![5]),
                ("db".into(), 1, vec![2]),
            ]
        );
    }

    #[test]
    fn the_first_copy_of_an_id_in_a_batch_is_kept() {
        let rows = vec![
            row(7, "api", 1, 4),
            row(7, "api", 2, 2),
            row(8, "api", 3, 6),
        ];
        let first = first_copies(&rows);
        assert_eq!(first, HashSet::from([1, 2]));
    }

    #[test]
    fn the_duration_is_read_only_when_a_number() {
        assert_eq!(
            duration_of(r#"{"duration": 12.5, "x": {"y": 1}}"#),
            Some(12.5)
        );
        assert_eq!(duration_of(r#"{"duration": "12"}"#), None);
        assert_eq!(duration_of(r#"{"other": 1}"#), None);
    }
}
