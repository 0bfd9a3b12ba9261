//! The move of rows stored before blocks (`log_events`) into blocks, without loss:
//! each round takes the oldest rows, deletes them and inserts their blocks in one
//! transaction, so a reader's snapshot finds each event once, as a row or in a block.
//!
//! Nothing else changes: the ids are in the id memory already, the rollups counted the
//! rows when they were stored, and each block keeps the rows' lanes, partitions and
//! offsets (the live tail's cursor). The blocks are as small as the rows' streams are
//! in a round; compaction merges them afterwards.

use super::write;
use crate::models::{JsonText, NewLogEvent};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int2, Int4, Int8, Nullable, Text, Timestamptz, Uuid as SqlUuid};

/// Rows one round moves, at most (the round holds them in memory).
pub const ROWS_A_ROUND: i64 = 50_000;

#[derive(QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = SqlUuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = Text)]
    level: String,
    #[diesel(sql_type = Text)]
    message: String,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Timestamptz)]
    timestamp: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    metadata: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    correlation_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    trace_id: Option<String>,
    #[diesel(sql_type = Int2)]
    lane: i16,
    #[diesel(sql_type = Int4)]
    kafka_partition: i32,
    #[diesel(sql_type = Int8)]
    kafka_offset: i64,
}

impl From<StoredRow> for NewLogEvent {
    fn from(row: StoredRow) -> Self {
        NewLogEvent {
            id: row.id,
            level: row.level,
            message: row.message,
            source: row.source,
            timestamp: row.timestamp,
            metadata: row.metadata.map(JsonText::from_stored),
            correlation_id: row.correlation_id,
            request_id: row.request_id,
            trace_id: row.trace_id,
            lane: row.lane,
            kafka_partition: row.kafka_partition,
            kafka_offset: row.kafka_offset,
        }
    }
}

/// One round: moves up to `limit` of the oldest rows into blocks, in one transaction;
/// returns how many moved (0: none left). Rows another mover holds are skipped.
pub fn move_oldest_rows(conn: &mut PgConnection, limit: i64) -> QueryResult<usize> {
    conn.transaction(|conn| {
        let rows: Vec<NewLogEvent> = diesel::sql_query(
            "DELETE FROM log_events e USING ( \
                 SELECT id, \"timestamp\" FROM log_events \
                 ORDER BY \"timestamp\", id LIMIT $1 FOR UPDATE SKIP LOCKED \
             ) oldest \
             WHERE e.id = oldest.id AND e.\"timestamp\" = oldest.\"timestamp\" \
             RETURNING e.id, e.level::text AS level, e.message, e.source::text AS source, \
                       e.\"timestamp\", e.metadata::text AS metadata, \
                       e.correlation_id::text AS correlation_id, \
                       e.request_id::text AS request_id, e.trace_id::text AS trace_id, \
                       e.lane, e.kafka_partition, e.kafka_offset",
        )
        .bind::<BigInt, _>(limit)
        .load::<StoredRow>(conn)?
        .into_iter()
        .map(NewLogEvent::from)
        .collect();
        if rows.is_empty() {
            return Ok(0);
        }
        let prepared = write::prepare(&rows)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        write::insert_blocks(conn, prepared.blocks())?;
        Ok(rows.len())
    })
}
