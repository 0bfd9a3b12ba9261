//! How a batch's rows reach `log_events`; both ways skip ids already stored, and say
//! which rows were new (what the minute counts must add, see [`crate::counts`]).

use crate::counts::Counted;
use crate::models::NewLogEvent;
use crate::schema::log_events;
use diesel::prelude::*;

/// PostgreSQL allows 65,535 bind parameters per statement; 11 columns a row.
const ROWS_PER_INSERT: usize = 5000;

/// (A binary COPY path through a staging table was measured at 0.95x `unnest` with
/// two writers and removed; BENCHMARKS.md.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InsertMode {
    /// `INSERT … VALUES (…), (…)` with a bind parameter per column per row.
    Values,
    /// `INSERT … SELECT FROM unnest($1::uuid[], …)`: one array parameter per column,
    /// so the statement is the same size whatever the batch.
    Unnest,
}

impl InsertMode {
    /// Inserts `rows`, returning the ones that were new.
    pub fn insert(
        self,
        conn: &mut PgConnection,
        rows: &[NewLogEvent],
    ) -> QueryResult<Vec<Counted>> {
        match self {
            InsertMode::Values => insert_values(conn, rows),
            InsertMode::Unnest => insert_unnest(conn, rows),
        }
    }
}

fn insert_values(conn: &mut PgConnection, rows: &[NewLogEvent]) -> QueryResult<Vec<Counted>> {
    let mut inserted = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        inserted.extend(
            diesel::insert_into(log_events::table)
                .values(chunk)
                .on_conflict(log_events::id)
                .do_nothing()
                .returning(Counted::as_returning())
                .get_results(conn)?,
        );
    }
    Ok(inserted)
}

/// Raw SQL: diesel's DSL has no `INSERT … SELECT FROM unnest(arrays)`, the form that
/// binds a whole batch as eleven parameters.
fn insert_unnest(conn: &mut PgConnection, rows: &[NewLogEvent]) -> QueryResult<Vec<Counted>> {
    use diesel::sql_types::{
        Array, Int4, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // Columns borrow from the batch: no copy of the rows is made to bind them.
    let text = |f: fn(&NewLogEvent) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let optional = |f: fn(&NewLogEvent) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
    diesel::sql_query(
        "INSERT INTO log_events (id, level, message, source, \"timestamp\", metadata, correlation_id, \
         request_id, trace_id, kafka_partition, kafka_offset) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], \
         $7::text[], $8::text[], $9::text[], $10::int4[], $11::int8[]) \
         ON CONFLICT (id) DO NOTHING \
         RETURNING \"timestamp\", level, source, kafka_partition",
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
    .load(conn)
}
