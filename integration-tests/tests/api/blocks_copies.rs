//! The id promise over event blocks, against the real PostgreSQL: a copy of a stored
//! event is found in the blocks of its source at its time (by the id filters, then
//! exactly), with no id memory entry for an id that names its time; an id that names
//! no time is remembered and found whatever its time and source; a copy is found after
//! compaction replaced its block; and a filter's false positives never drop a distinct
//! event.

use crate::blocks::{events_of, ids, store_blocks};
use crate::helpers::{counted_events_in, db, new_row, unique};
use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use log_common::ids::mint_event_id;
use log_store::NewLogEvent;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// An event as the producer makes one without a client id: minted at its own time.
fn minted(source: &str, timestamp: DateTime<Utc>, text: &str) -> NewLogEvent {
    NewLogEvent {
        id: mint_event_id(timestamp),
        ..new_row("INFO", text.to_owned(), source, timestamp, None, None)
    }
}

/// How many of `ids` the id memory holds.
fn remembered(ids: &[Uuid]) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM log_event_ids WHERE id = ANY($1)")
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .get_result::<Count>(&mut db())
        .expect("count")
        .n
}

fn stored_ids(sources: &[&str]) -> Vec<Uuid> {
    sources
        .iter()
        .flat_map(|s| events_of(s).0)
        .map(|e| Uuid::from_u128(e.event.id))
        .collect()
}

#[test]
fn a_copy_of_an_event_whose_id_names_its_time_is_found_in_its_blocks_and_no_id_is_remembered() {
    let now = Utc::now();
    let (a, b) = (unique("copies-a"), unique("copies-b"));
    let first: Vec<NewLogEvent> = (0..200)
        .map(|i| {
            let source = if i % 3 == 0 { &b } else { &a };
            minted(
                source,
                now - TimeDelta::milliseconds(i),
                &format!("first {i}"),
            )
        })
        .collect();
    let first_ids: Vec<Uuid> = first.iter().map(|r| r.id).collect();
    assert_eq!(store_blocks(&first), 200);
    assert_eq!(remembered(&first_ids), 0, "no id memory entry for them");

    // A later batch: copies as sent again (a retry, a replay), copies timed again on
    // receipt (their ids still name the first time), and new events at the very same
    // times and sources.
    let mut again: Vec<NewLogEvent> = first[..100].to_vec();
    again.extend(first[100..].iter().map(|r| NewLogEvent {
        timestamp: r.timestamp + TimeDelta::seconds(3),
        kafka_offset: r.kafka_offset + 1_000,
        ..r.clone()
    }));
    let new: Vec<NewLogEvent> = first
        .iter()
        .map(|r| minted(&r.source, r.timestamp, "new at the same time"))
        .collect();
    again.extend(new.iter().cloned());
    assert_eq!(store_blocks(&again), 200, "only the new events");

    let stored = stored_ids(&[&a, &b]);
    assert_eq!(stored.len(), 400, "each id once");
    let expected: HashSet<Uuid> = first_ids
        .iter()
        .chain(new.iter().map(|r| &r.id))
        .copied()
        .collect();
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), expected);
    assert_eq!(
        counted_events_in(&mut db(), &a) + counted_events_in(&mut db(), &b),
        400,
        "the rollups counted each once"
    );
}

#[test]
fn an_id_that_names_no_time_is_remembered_and_found_whatever_its_time_and_source() {
    let now = Utc::now();
    let (source, elsewhere) = (unique("copies-own-id"), unique("copies-elsewhere"));
    // A client's own UUIDs (v4): they say nothing of the event's time.
    let first: Vec<NewLogEvent> = (0..50)
        .map(|i| new_row("WARN", format!("own id {i}"), &source, now, None, None))
        .collect();
    let first_ids: Vec<Uuid> = first.iter().map(|r| r.id).collect();
    assert_eq!(store_blocks(&first), 50);
    assert_eq!(remembered(&first_ids), 50);

    // Sent again an hour later, under another source: still the same events.
    let again: Vec<NewLogEvent> = first
        .iter()
        .map(|r| NewLogEvent {
            timestamp: now + TimeDelta::hours(1),
            source: elsewhere.clone(),
            ..r.clone()
        })
        .collect();
    assert_eq!(store_blocks(&again), 0);
    assert_eq!(stored_ids(&[&source, &elsewhere]).len(), 50);
}

#[test]
fn a_copy_is_found_after_compaction_replaced_its_block() {
    let now = Utc::now();
    let source = unique("copies-compacted");
    let mut first = Vec::new();
    for batch in 0..6 {
        let rows: Vec<NewLogEvent> = (0..40)
            .map(|i| {
                minted(
                    &source,
                    now - TimeDelta::milliseconds(batch * 40 + i),
                    &format!("batch {batch} line {i}"),
                )
            })
            .collect();
        assert_eq!(store_blocks(&rows), 40);
        first.extend(rows);
    }
    let blocks_of = || -> i64 {
        use log_store::schema::log_blocks;
        log_blocks::table
            .filter(log_blocks::source.eq(&source))
            .count()
            .get_result(&mut db())
            .expect("count")
    };
    assert_eq!(blocks_of(), 6);
    let mut conn = db();
    // Other tests' streams may be compacted too: go on until this one is whole.
    for _ in 0..200 {
        let report =
            log_store::blocks::compact::compact_once(&mut conn, Duration::ZERO).expect("compact");
        if blocks_of() == 1 || report.merged == 0 {
            break;
        }
    }
    assert_eq!(blocks_of(), 1, "compacted into one block");

    let mut again = first.clone();
    again.push(minted(&source, now, "one new"));
    assert_eq!(
        store_blocks(&again),
        1,
        "every copy found in the merged block"
    );
    assert_eq!(events_of(&source).0.len(), 241);
}

#[test]
fn distinct_events_at_one_time_are_never_taken_for_copies() {
    // Two batches of events of one source in one millisecond, each id new. About 1% of
    // the second batch's ids get a "maybe" from the first's id filter (10 bits a key):
    // the block, opened, says no, and every event is stored.
    let at = Utc::now();
    let source = unique("copies-distinct");
    let batch = |n: usize| -> Vec<NewLogEvent> {
        (0..n)
            .map(|i| minted(&source, at, &format!("line {i}")))
            .collect()
    };
    let (first, second) = (batch(4_000), batch(4_000));
    assert_eq!(store_blocks(&first), 4_000);
    assert_eq!(store_blocks(&second), 4_000);
    let (events, _) = events_of(&source);
    assert_eq!(events.len(), 8_000);
    assert_eq!(ids(&events).len(), 8_000);
}
