//! Day partitions against the real PostgreSQL, each test in a database of its own (they
//! move the id generation and drop partitions, which would disturb other tests): the
//! migration of unpartitioned rows, the id promise across a partition boundary, how
//! long an id is remembered, and retention by dropping whole days.

use crate::helpers::{new_database, new_migrated_database, unique, MIGRATIONS};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_migrations::MigrationHarness;
use log_store::{NewLogEvent, Store, Upkeep};
use std::collections::BTreeMap;
use uuid::Uuid;

const PARTITIONING_MIGRATION: &str = "20261129000005";

fn store(url: &str) -> Store {
    let mut settings = log_consumer::settings::Settings::defaults();
    settings.postgres.url = url.to_owned();
    Store::new(&settings.postgres, "partitions-test", "partitions-test").expect("store")
}

fn row(id: Uuid, source: &str, timestamp: DateTime<Utc>, offset: i64) -> NewLogEvent {
    NewLogEvent {
        id,
        level: "INFO".into(),
        message: format!("offset {offset}"),
        source: source.to_owned(),
        timestamp,
        metadata: None,
        correlation_id: None,
        request_id: None,
        trace_id: None,
        lane: 0,
        kafka_partition: 0,
        kafka_offset: offset,
    }
}

/// Writes `rows` as one batch transaction (no offsets), returning how many were new.
fn write(store: &Store, rows: &[NewLogEvent]) -> usize {
    store.write_batch(rows, &BTreeMap::new()).expect("batch")
}

#[derive(QueryableByName, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Placed {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    partition: String,
}

/// Each of `source`'s rows with the partition holding it.
fn placed(conn: &mut PgConnection, source: &str) -> Vec<Placed> {
    diesel::sql_query(
        "SELECT id, tableoid::regclass::text AS partition FROM log_events \
         WHERE source = $1 ORDER BY 1, 2",
    )
    .bind::<Text, _>(source)
    .load(conn)
    .expect("rows")
}

fn partition_name(table: &str, at: DateTime<Utc>) -> String {
    format!("{table}_p{}", at.format("%Y%m%d"))
}

fn counted(conn: &mut PgConnection, source: &str) -> i64 {
    crate::helpers::counted_events_in(conn, source)
}

#[test]
fn the_migration_moves_existing_rows_into_day_partitions_without_loss() {
    let url = new_database();
    let mut conn = PgConnection::establish(&url).expect("connect");
    for migration in conn.pending_migrations(MIGRATIONS).expect("pending") {
        if migration.name().version().to_string() == PARTITIONING_MIGRATION {
            break;
        }
        conn.run_migration(&*migration).expect("earlier migration");
    }
    // Rows as the unpartitioned table held them: three days, one of them long ago, and
    // the minute counts the consumer kept for them.
    let source = unique("migrated");
    let now = Utc::now()
        .duration_trunc(TimeDelta::seconds(1))
        .expect("now");
    let days = [now - TimeDelta::days(12), now - TimeDelta::days(1), now];
    let mut ids = Vec::new();
    for (i, at) in days.iter().flat_map(|d| [*d; 20]).enumerate() {
        let id = Uuid::new_v4();
        ids.push(id);
        diesel::sql_query(
            "INSERT INTO log_events (id, level, message, source, \"timestamp\", correlation_id, kafka_partition, kafka_offset) \
             VALUES ($1, 'WARN', 'disk almost full', $2, $3, 'c-' || $4, 0, $4)",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(&source)
        .bind::<Timestamptz, _>(at - TimeDelta::seconds(i as i64 % 20))
        .bind::<BigInt, _>(i as i64)
        .execute(&mut conn)
        .expect("unpartitioned row");
    }
    diesel::sql_query(
        "INSERT INTO log_counts_minute (minute, level, source, kafka_partition, events) \
         SELECT date_trunc('minute', \"timestamp\"), level, source, kafka_partition, count(*) \
         FROM log_events GROUP BY 1, 2, 3, 4",
    )
    .execute(&mut conn)
    .expect("counts");

    conn.run_pending_migrations(MIGRATIONS)
        .expect("the partitioning migration");

    let rows = placed(&mut conn, &source);
    let mut expected: Vec<Uuid> = ids.clone();
    expected.sort();
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        expected,
        "every row kept"
    );
    for day in days {
        let name = partition_name("log_events", day);
        assert_eq!(
            rows.iter().filter(|r| r.partition == name).count(),
            20,
            "{name} holds its day's rows"
        );
    }
    assert_eq!(counted(&mut conn, &source), 60, "the counts kept");
    // Indexes made on the parent serve every partition: full-text search still works.
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let found: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM log_events WHERE search_vector @@ plainto_tsquery('english', 'disk') AND source = $1",
    )
    .bind::<Text, _>(&source)
    .get_result(&mut conn)
    .expect("search");
    assert_eq!(found.n, 60);
    // The ids stored recently are remembered: a copy with a new timestamp is skipped.
    let store = store(&url);
    assert_eq!(
        write(
            &store,
            &[row(ids[59], &source, now - TimeDelta::hours(3), 99)]
        ),
        0
    );
    assert_eq!(placed(&mut conn, &source).len(), 60);
}

#[test]
fn an_id_is_stored_once_across_a_partition_boundary() {
    let url = new_migrated_database();
    let store = store(&url);
    let mut conn = PgConnection::establish(&url).expect("connect");
    let source = unique("boundary");
    let midnight = Utc::now()
        .duration_trunc(TimeDelta::days(1))
        .expect("midnight");
    let (before, after) = (
        midnight - TimeDelta::milliseconds(100),
        midnight + TimeDelta::milliseconds(100),
    );
    let (retried, replayed) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(
        write(
            &store,
            &[
                row(retried, &source, before, 0),
                row(replayed, &source, after, 1)
            ]
        ),
        2
    );
    // A client retry of the first (new receive time, the next day) and a replay of
    // the second (same timestamp), in a later batch and twice within it.
    let again = [
        row(retried, &source, after, 2),
        row(replayed, &source, after, 3),
        row(retried, &source, after + TimeDelta::seconds(1), 4),
    ];
    assert_eq!(write(&store, &again), 0, "nothing new");
    let mut expected = vec![
        Placed {
            id: retried,
            partition: partition_name("log_events", before),
        },
        Placed {
            id: replayed,
            partition: partition_name("log_events", after),
        },
    ];
    expected.sort();
    assert_eq!(
        placed(&mut conn, &source),
        expected,
        "the first copies, in their days"
    );
    assert_eq!(counted(&mut conn, &source), 2, "counted once each");
}

#[test]
fn an_id_is_remembered_for_id_memory_days_and_a_replay_for_as_long_as_its_row() {
    let url = new_migrated_database();
    let store = store(&url);
    let mut conn = PgConnection::establish(&url).expect("connect");
    let source = unique("memory");
    let upkeep = Upkeep {
        retention_days: 30,
        id_memory_days: 2,
        dead_letter_retention_days: 30,
    };
    let now = Utc::now();
    let (retried, replayed) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(
        write(
            &store,
            &[
                row(retried, &source, now, 0),
                row(replayed, &source, now, 1)
            ]
        ),
        2
    );

    // Tomorrow (for the id generations): today's ids are still checked.
    upkeep
        .run(&mut conn, now + TimeDelta::days(1))
        .expect("upkeep");
    assert_eq!(
        write(
            &store,
            &[row(retried, &source, now + TimeDelta::hours(1), 2)]
        ),
        0
    );

    // The day after: today's generation is dropped and its ids forgotten.
    let report = upkeep
        .run(&mut conn, now + TimeDelta::days(2))
        .expect("upkeep");
    assert!(
        report
            .dropped
            .contains(&partition_name("log_event_ids", now)),
        "{report:?}"
    );
    // A copy with the same timestamp (a Kafka replay) is still skipped, by the
    // events' own unique index, for as long as the row is kept…
    assert_eq!(write(&store, &[row(replayed, &source, now, 3)]), 0);
    // …but a copy with another timestamp is now a new event.
    assert_eq!(
        write(
            &store,
            &[row(retried, &source, now + TimeDelta::hours(2), 4)]
        ),
        1
    );
    assert_eq!(placed(&mut conn, &source).len(), 3);
}

#[test]
fn retention_drops_whole_days_of_events_and_their_counts() {
    let url = new_migrated_database();
    let store = store(&url);
    let mut conn = PgConnection::establish(&url).expect("connect");
    let source = unique("retention");
    let now = Utc::now();
    let ages = [40, 31, 29, 1];
    let rows: Vec<NewLogEvent> = ages
        .iter()
        .enumerate()
        .map(|(i, days)| {
            row(
                Uuid::now_v7(),
                &source,
                now - TimeDelta::days(*days),
                i as i64,
            )
        })
        .collect();
    assert_eq!(
        write(&store, &rows),
        4,
        "the partitions of old days are made on demand"
    );
    assert_eq!(counted(&mut conn, &source), 4);

    let upkeep = Upkeep {
        retention_days: 30,
        id_memory_days: 2,
        dead_letter_retention_days: 30,
    };
    let report = upkeep.run(&mut conn, now).expect("upkeep");
    for table in ["log_events", "log_rollup_minute", "log_rollup_hour"] {
        for days in [40, 31] {
            let name = partition_name(table, now - TimeDelta::days(days));
            assert!(report.dropped.contains(&name), "{name}: {report:?}");
        }
        let kept = partition_name(table, now - TimeDelta::days(29));
        assert!(!report.dropped.contains(&kept), "{kept}: {report:?}");
    }
    assert_eq!(
        placed(&mut conn, &source).len(),
        2,
        "the 29- and 1-day-old events stay"
    );
    assert_eq!(
        counted(&mut conn, &source),
        2,
        "and so do only their counts"
    );
    // The day rollups (not partitioned) lose the same days.
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let per_day: Sum = diesel::sql_query(
        "SELECT coalesce(sum(events), 0)::int8 AS n FROM log_rollup_day WHERE source = $1 AND level <> ''",
    )
    .bind::<Text, _>(&source)
    .get_result(&mut conn)
    .expect("day rollups");
    assert_eq!(per_day.n, 2, "the day rollups of the dropped days are gone");
    // Partitions exist ahead of need.
    let ahead = partition_name("log_events", now + TimeDelta::days(2));
    let exists: Vec<Placed> = diesel::sql_query(
        "SELECT gen_random_uuid() AS id, relname::text AS partition FROM pg_class WHERE relname = $1",
    )
    .bind::<Text, _>(&ahead)
    .load(&mut conn)
    .expect("catalog");
    assert_eq!(exists.len(), 1, "{ahead}");
}

/// The fold rewrites rollup rows that a batch of late events may be adding to; run
/// side by side they would lock those rows in two orders and deadlock. So the fold
/// waits for the batches in flight (a transaction holding the batch lock shared, as
/// each batch does) and runs once they are done; what it folded still adds up.
#[test]
fn the_fold_waits_for_batches_in_flight_instead_of_deadlocking_with_them() {
    let url = new_migrated_database();
    let store = store(&url);
    let source = unique("fold-wait");
    let now = Utc::now();
    // Late events: two days old, in buckets the fold settles.
    let rows: Vec<NewLogEvent> = (0..20)
        .map(|i| row(Uuid::now_v7(), &source, now - TimeDelta::days(2), i))
        .collect();
    assert_eq!(write(&store, &rows), 20);

    let (held_tx, held) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let batch_url = url.clone();
    let batch = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&batch_url).expect("connect");
        conn.transaction(|conn| {
            log_store::partitions::hold_id_generation(conn)?;
            held_tx.send(()).expect("signal");
            let _ = release_rx.recv_timeout(std::time::Duration::from_secs(30));
            Ok::<_, diesel::result::Error>(())
        })
        .expect("batch transaction");
    });
    held.recv_timeout(std::time::Duration::from_secs(10))
        .expect("batch lock held");

    let (done_tx, done) = std::sync::mpsc::channel();
    let fold_url = url.clone();
    let fold = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&fold_url).expect("connect");
        // The fold alone (upkeep also moves the id generation, which waits anyway).
        let folded = log_store::rollups::fold(&mut conn, now).expect("fold");
        done_tx.send(folded).expect("signal");
    });
    assert!(
        done.recv_timeout(std::time::Duration::from_millis(500))
            .is_err(),
        "the fold waits while a batch is in flight"
    );
    release.send(()).expect("release");
    batch.join().expect("batch thread");
    let folded = done
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the fold runs once the batch is done");
    fold.join().expect("fold thread");
    assert!(folded > 0, "it folded the late events' rows");
    let mut conn = PgConnection::establish(&url).expect("connect");
    assert_eq!(counted(&mut conn, &source), 20, "and the counts add up");
}
