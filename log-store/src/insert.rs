//! How a batch's rows reach `log_events`: one statement that skips every id already
//! stored, and says which rows were new (what the rollups must add, see
//! [`crate::rollups`]).
//!
//! An id counts as stored if either
//! - the same id and timestamp are in `log_events` (a Kafka replay of a stored record;
//!   the unique time index sees it for as long as the row is kept), or
//! - the id is in `log_event_ids`, the ids stored in the last `ID_MEMORY_DAYS`
//!   generations, whatever their timestamps (a client retry without a timestamp gets a
//!   new receive time, maybe on another day, so another partition).
//!
//! The caller holds the id generation ([`crate::partitions::hold_id_generation`]) for
//! the transaction: two writers storing the same id at once then write it into the
//! same generation, where the primary key makes the second wait for the first and
//! skip it.

use crate::models::NewLogEvent;
use crate::rollups::Counted;
use diesel::prelude::*;

/// Inserts `rows`, returning the ones that were new.
///
/// Raw SQL: diesel's DSL has no `INSERT … SELECT FROM unnest(arrays)`, the form that
/// binds a whole batch as twelve parameters, so the statement is the same size
/// whatever the batch. (Multi-row `VALUES` and a binary COPY through a staging table
/// were measured slower and removed; BENCHMARKS.md.)
pub fn insert(conn: &mut PgConnection, rows: &[NewLogEvent]) -> QueryResult<Vec<Counted>> {
    use diesel::sql_types::{
        Array, Int2, Int4, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Columns borrow from the batch: no copy of the rows is made to bind them.
    let text = |f: fn(&NewLogEvent) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let optional = |f: fn(&NewLogEvent) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    diesel::sql_query(
        "WITH batch AS ( \
             SELECT DISTINCT ON (id) * \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
                         $6::jsonb[], $7::text[], $8::text[], $9::text[], $10::int4[], $11::int8[], $12::int2[]) \
                  AS b(id, level, message, source, \"timestamp\", metadata, correlation_id, \
                       request_id, trace_id, kafka_partition, kafka_offset, lane) \
             ORDER BY id, lane, kafka_partition, kafka_offset \
         ), new_ids AS ( \
             INSERT INTO log_event_ids (id, stored_on) \
             SELECT id, (SELECT stored_on FROM log_event_id_generation) FROM batch \
             WHERE NOT EXISTS (SELECT 1 FROM log_event_ids seen WHERE seen.id = batch.id) \
             ON CONFLICT DO NOTHING \
             RETURNING id \
         ) \
         INSERT INTO log_events (id, level, message, source, \"timestamp\", metadata, \
                                 correlation_id, request_id, trace_id, kafka_partition, kafka_offset, lane) \
         SELECT batch.* FROM batch JOIN new_ids USING (id) \
         ON CONFLICT DO NOTHING \
         RETURNING \"timestamp\", level, source, kafka_partition, \
             CASE WHEN jsonb_typeof(metadata->'duration') = 'number' \
                  THEN (metadata->>'duration')::float8 END AS duration",
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
    .bind::<Array<Int2>, _>(rows.iter().map(|r| r.lane).collect::<Vec<_>>())
    .load(conn)
}
