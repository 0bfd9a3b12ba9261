//! kill -9 of a consumer in the middle of a compaction (`STORAGE_LAYOUT=blocks`), while
//! its merge holds its blocks: the transaction dies with the connection (or had just
//! committed), every event is read exactly once either way, and a later compaction
//! finishes the merge.
//!
//! The consumer is the real `log-consumer` binary, so the kill is a real SIGKILL. Its
//! own test binary, so no other compaction runs meanwhile.

#[path = "api/helpers.rs"]
mod helpers;

use diesel::prelude::*;
use helpers::{create_topic, db, eventually, new_row, test_database_url, unique};
use log_store::blocks::read::{scan, ScanFilter, ScanReport};
use log_store::schema::log_blocks;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

const BLOCKS: usize = 30;
const PER_BLOCK: usize = 2_000;

fn ids_of(source: &str) -> (Vec<Uuid>, ScanReport) {
    let mut ids = Vec::new();
    let filter = ScanFilter {
        source: Some(source.to_owned()),
        ..ScanFilter::default()
    };
    let report = scan(&mut db(), &filter, |e| {
        ids.push(Uuid::from_u128(e.event.id));
        ControlFlow::Continue(())
    })
    .expect("scan");
    (ids, report)
}

fn blocks_of(source: &str) -> i64 {
    log_blocks::table
        .filter(log_blocks::source.eq(source))
        .count()
        .get_result(&mut db())
        .expect("count")
}

/// Backends other than this one holding `FOR UPDATE` row locks on blocks: a merge in
/// its transaction.
fn merges_in_flight(conn: &mut PgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname LIKE 'log_blocks%' AND l.mode = 'RowShareLock' \
           AND l.pid <> pg_backend_pid()",
    )
    .get_result::<Count>(conn)
    .expect("locks")
    .n
}

#[tokio::test]
async fn a_compaction_killed_mid_merge_loses_and_repeats_nothing() {
    helpers::require_infrastructure();
    let source = unique("compaction-crash");
    let mut settings = log_consumer::settings::Settings::defaults();
    settings.postgres.url = test_database_url().to_owned();
    let store = log_store::Store::new(&settings.postgres, "compaction-crash", "compaction-crash")
        .expect("store")
        .with_layout(log_store::Layout::Blocks);
    // A day long past: compaction takes the oldest day first, so the merge the kill
    // lands in is this stream's.
    let now = chrono::Utc::now() - chrono::Duration::days(400);
    let mut expected = HashSet::new();
    for block in 0..BLOCKS {
        let rows: Vec<_> = (0..PER_BLOCK)
            .map(|i| {
                let message = format!("GET /api/orders/{i} answered 200 in {block}ms");
                new_row("INFO", message, &source, now, None, None)
            })
            .collect();
        expected.extend(rows.iter().map(|r| r.id));
        store
            .write_batch(&rows, &Default::default())
            .expect("batch");
    }
    assert_eq!(blocks_of(&source), BLOCKS as i64);

    // A consumer on a topic nobody writes to: all it does is compact.
    let topic = unique("compaction-crash-topic");
    create_topic(&topic, 1).await;
    create_topic(&helpers::priority_topic_of(&topic), 1).await;
    let log = std::env::temp_dir().join(format!("{}.log", unique("compaction-crash")));
    let file = std::fs::File::create(&log).expect("log file");
    let mut child = Command::new(helpers::release_binary("log-consumer"))
        .env("SERVER_PORT", "0")
        .env("POSTGRES_URL", test_database_url())
        .env("KAFKA_TOPIC", &topic)
        .env("KAFKA_DLQ_TOPIC", unique("compaction-crash-dlq"))
        .env("KAFKA_PRIORITY_TOPIC", helpers::priority_topic_of(&topic))
        .env("KAFKA_GROUP_ID", unique("compaction-crash-group"))
        .env("STORAGE_LAYOUT", "blocks")
        .env("RETENTION_DAYS", "0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .expect("start log-consumer");
    // Polled tightly: a merge holds its locks for a fraction of a second.
    let waiting = std::time::Instant::now();
    let mut conn = db();
    while merges_in_flight(&mut conn) == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "no merge began (consumer log: {})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // PostgreSQL rolls the merge back once it sees the connection gone.
    eventually(
        "the killed merge rolled back",
        Duration::from_secs(30),
        || async { (merges_in_flight(&mut db()) == 0).then_some(()) },
    )
    .await;

    let (ids, report) = ids_of(&source);
    assert_eq!(report.corrupt, 0, "{report:?}");
    assert_eq!(ids.len(), expected.len(), "every event once after the kill");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
    let left = blocks_of(&source);
    // All 30 when the kill landed before the commit (it nearly always does: the merge
    // holds its locks for most of its time), fewer when just after.
    assert!((1..=BLOCKS as i64).contains(&left), "{left} blocks");

    // A later compaction finishes what the killed one started.
    for _ in 0..50 {
        let report = log_store::blocks::compact::compact_once(&mut conn, std::time::Duration::ZERO)
            .expect("compact");
        if report.merged == 0 {
            break;
        }
    }
    let (ids, report) = ids_of(&source);
    assert_eq!(report.corrupt, 0);
    assert_eq!(
        ids.len(),
        expected.len(),
        "every event once after compaction"
    );
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
    let merged = blocks_of(&source);
    assert!(
        merged <= (BLOCKS * PER_BLOCK).div_ceil(16_384) as i64,
        "{merged} blocks after compaction"
    );
}
