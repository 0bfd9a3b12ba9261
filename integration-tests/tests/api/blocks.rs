//! Event blocks (`STORAGE_LAYOUT=blocks`) against the real broker and PostgreSQL: the
//! consumer stores each event once, in blocks, with every field, across replays and a
//! restart, rollups included; a damaged block is passed over and counted; the filters
//! keep a scan from opening blocks that cannot match.

use crate::consumer::{producer, send_events, topics};
use crate::helpers::{counted_events_in, db, eventually, new_row, spawn_consumer_with, unique};
use log_store::blocks::read::{scan, ScanFilter, ScanReport, ScannedEvent};
use log_store::Layout;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::time::Duration;
use uuid::Uuid;

pub fn events_of(source: &str) -> (Vec<ScannedEvent>, ScanReport) {
    scan_with(ScanFilter {
        source: Some(source.to_owned()),
        ..ScanFilter::default()
    })
}

fn scan_with(filter: ScanFilter) -> (Vec<ScannedEvent>, ScanReport) {
    let mut events = Vec::new();
    let report = scan(&mut db(), &filter, |e| {
        events.push(e);
        ControlFlow::Continue(())
    })
    .expect("scan");
    (events, report)
}

async fn wait_for_events(source: &str, expected: usize) -> Vec<ScannedEvent> {
    eventually(
        &format!("{expected} events in blocks for {source}"),
        Duration::from_secs(60),
        || async {
            let (events, _) = events_of(source);
            (events.len() >= expected).then_some(())
        },
    )
    .await;
    // Give a late duplicate the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    events_of(source).0
}

pub fn ids(events: &[ScannedEvent]) -> HashSet<Uuid> {
    events.iter().map(|e| Uuid::from_u128(e.event.id)).collect()
}

#[tokio::test]
async fn the_consumer_stores_each_event_once_in_blocks_across_replays_and_a_restart() {
    let t = topics().await;
    let source = unique("blocks-src");
    let producer = producer();
    let blocks = |s: &mut log_consumer::settings::Settings| {
        s.consumer.storage_layout = Layout::Blocks;
        // The other tests' rows in this shared database stay rows.
        s.consumer.move_rows_to_blocks = false;
    };

    let first: Vec<Uuid> = (0..300).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &first).await;
    let app = spawn_consumer_with(&t.topic, &t.dlq, &t.group, blocks).await;
    let stored = wait_for_events(&source, 300).await;
    assert_eq!(stored.len(), 300);
    assert_eq!(ids(&stored), first.iter().copied().collect());
    // Every field as sent (send_events' shape), the newest first.
    let newest = &stored[0].event;
    let i = first
        .iter()
        .position(|id| id.as_u128() == newest.id)
        .expect("a sent id");
    assert_eq!(newest.message, format!("event {i}"));
    assert_eq!(newest.source, source);
    assert_eq!(log_blocks::LEVELS[usize::from(newest.level)], "INFO");
    let metadata: serde_json::Value =
        serde_json::from_str(newest.metadata.as_deref().expect("metadata")).expect("json");
    assert_eq!(
        metadata,
        serde_json::json!({"i": i, "nested": {"zoë": [1.5e300, "x"]}})
    );
    assert!(stored
        .windows(2)
        .all(|w| w[0].event.timestamp_micros >= w[1].event.timestamp_micros));

    // Ids already stored, sent again, add nothing; new ones are added.
    send_events(&producer, &t.topic, &source, &first[..50]).await;
    let second: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &second).await;
    wait_for_events(&source, 400).await;

    // A restart while events keep arriving: nothing lost, nothing repeated.
    app.stop().await;
    let third: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &third).await;
    let app = spawn_consumer_with(&t.topic, &t.dlq, &t.group, blocks).await;
    let stored = wait_for_events(&source, 500).await;
    assert_eq!(stored.len(), 500, "each id once");
    let expected: HashSet<Uuid> = first.iter().chain(&second).chain(&third).copied().collect();
    assert_eq!(ids(&stored), expected);
    // The rollups moved with the blocks, replays adding nothing.
    assert_eq!(counted_events_in(&mut db(), &source), 500);
    app.stop().await;
}

pub fn store_blocks(rows: &[log_store::NewLogEvent]) -> usize {
    let mut settings = log_consumer::settings::Settings::defaults();
    settings.postgres.url = crate::helpers::test_database_url().to_owned();
    log_store::Store::new(&settings.postgres, "blocks-test", "blocks-test")
        .expect("store")
        .with_layout(Layout::Blocks)
        .write_batch(rows, &std::collections::BTreeMap::new())
        .expect("batch")
}

#[test]
fn a_damaged_block_is_passed_over_and_counted() {
    let now = chrono::Utc::now();
    let (good, bad) = (unique("blocks-good"), unique("blocks-bad"));
    let rows: Vec<_> = [&good, &bad]
        .iter()
        .flat_map(|source| {
            (0..20).map(move |i| new_row("WARN", format!("line {i}"), source, now, None, None))
        })
        .collect();
    assert_eq!(store_blocks(&rows), 40);
    use diesel::RunQueryDsl;
    diesel::sql_query(
        "UPDATE log_blocks SET payload = substring(payload from 1 for 20) WHERE source = $1",
    )
    .bind::<diesel::sql_types::Text, _>(&bad)
    .execute(&mut db())
    .expect("damage the block");

    let (events, report) = scan_with(ScanFilter {
        window: Some((
            now - chrono::Duration::seconds(1),
            now + chrono::Duration::seconds(1),
        )),
        levels: vec![log_blocks::level_code("WARN").expect("a level")],
        ..ScanFilter::default()
    });
    assert_eq!(report.corrupt, 1, "{report:?}");
    let sources: HashSet<&str> = events.iter().map(|e| e.event.source.as_str()).collect();
    assert!(sources.contains(good.as_str()));
    assert!(!sources.contains(bad.as_str()));
    assert_eq!(events.iter().filter(|e| e.event.source == good).count(), 20);
}

/// `payload` with the codec of its column `tag` set to one no reader knows: the framing
/// stays whole, so the block opens, and only that column fails when inflated.
fn with_unknown_codec(payload: &[u8], tag: u8) -> Vec<u8> {
    use log_blocks::varint::Reader;
    let mut reader = Reader::new(&payload[4..], "test");
    reader.u64().expect("event count");
    let columns = reader.u64().expect("column count");
    for _ in 0..columns {
        let at = payload.len() - reader.remaining();
        let found = reader.u8().expect("tag");
        reader.u8().expect("codec");
        reader.u64().expect("raw length");
        let stored = reader.len(payload.len()).expect("stored length");
        reader.bytes(stored).expect("stored bytes");
        if found == tag {
            let mut damaged = payload.to_vec();
            damaged[at + 1] = 0xEE;
            return damaged;
        }
    }
    panic!("no column {tag} in the block");
}

/// A block whose messages do not inflate opens (its times and ids do) but gives none of
/// its events, whether a filter reads its text before handing over or not; the blocks
/// beside it give all of theirs, merged in time with it.
#[test]
fn a_block_damaged_past_its_times_and_ids_gives_none_of_its_events() {
    const MESSAGES: u8 = 5;
    // A second of its own, hours back, so no other test's block (the database is
    // shared) shares the window and its count of damaged blocks.
    let seconds_back = 3_600 + (Uuid::new_v4().as_u128() % 3_600) as i64;
    let now = chrono::Utc::now() - chrono::Duration::seconds(seconds_back);
    let (good, bad) = (unique("blocks-good-text"), unique("blocks-bad-text"));
    let rows: Vec<_> = (0..20)
        .flat_map(|i| {
            let at = now - chrono::Duration::milliseconds(i);
            [&good, &bad].map(|source| new_row("WARN", format!("line {i}"), source, at, None, None))
        })
        .collect();
    assert_eq!(store_blocks(&rows), 40);
    use diesel::prelude::*;
    use log_store::schema::log_blocks::dsl;
    let mut conn = db();
    let (block_id, payload): (i64, Vec<u8>) = dsl::log_blocks
        .filter(dsl::source.eq(&bad))
        .select((dsl::block_id, dsl::payload))
        .first(&mut conn)
        .expect("the bad source's block");
    diesel::update(dsl::log_blocks.filter(dsl::block_id.eq(block_id)))
        .set(dsl::payload.eq(with_unknown_codec(&payload, MESSAGES)))
        .execute(&mut conn)
        .expect("damage the block");

    let window = Some((
        now - chrono::Duration::milliseconds(20),
        now + chrono::Duration::milliseconds(1),
    ));
    for search in [None, Some(log_blocks::Query::parse("line"))] {
        let (events, report) = scan_with(ScanFilter {
            window,
            search: search.clone(),
            ..ScanFilter::default()
        });
        assert_eq!(report.corrupt, 1, "search {search:?}: {report:?}");
        let of = |source: &str| events.iter().filter(|e| e.event.source == source).count();
        assert_eq!(of(&good), 20, "search {search:?}");
        assert_eq!(of(&bad), 0, "search {search:?}");
    }
}

#[test]
fn filters_keep_a_scan_out_of_blocks_that_cannot_match() {
    let now = chrono::Utc::now();
    let rare = format!("rare{}", Uuid::new_v4().simple());
    let sources: Vec<String> = (0..8)
        .map(|i| unique(&format!("blocks-filter-{i}")))
        .collect();
    let mut rows = Vec::new();
    for (s, source) in sources.iter().enumerate() {
        for i in 0..50 {
            let message = if s == 3 && i == 7 {
                format!("GET /api/orders failed: {rare} from 10.0.0.{s}")
            } else {
                format!("GET /api/orders ok in {i}ms from 10.0.0.{s}")
            };
            let correlation = Some(format!("corr-{s}-{i}"));
            rows.push(new_row("INFO", message, source, now, None, correlation));
        }
    }
    assert_eq!(store_blocks(&rows), 400);
    let window = Some((
        now - chrono::Duration::seconds(1),
        now + chrono::Duration::seconds(1),
    ));

    let (found, report) = scan_with(ScanFilter {
        window,
        search: Some(log_blocks::Query::parse(&rare)),
        ..ScanFilter::default()
    });
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event.source, sources[3]);
    assert!(report.considered >= 8, "{report:?}");
    // Each other block is opened only on a false positive (about 1% each).
    assert!(report.opened <= 3, "{report:?}");

    let (found, report) = scan_with(ScanFilter {
        window,
        correlation_id: Some("corr-5-9".into()),
        source: Some(sources[5].clone()),
        ..ScanFilter::default()
    });
    assert_eq!(found.len(), 1);
    assert_eq!(report.opened, 1);

    // An IP matches whole: 10.0.0.3 is in one source's blocks, 10.0.0.30 in none.
    let (found, _) = scan_with(ScanFilter {
        window,
        search: Some(log_blocks::Query::parse("10.0.0.3 failed")),
        ..ScanFilter::default()
    });
    assert_eq!(found.len(), 1);
    let (found, _) = scan_with(ScanFilter {
        window,
        search: Some(log_blocks::Query::parse("10.0.0.30")),
        ..ScanFilter::default()
    });
    assert!(found.is_empty());
}

/// Small blocks of one stream merge into one while a reader keeps reading the
/// stream: every read sees every event exactly once, before, during and after.
#[test]
fn compaction_merges_small_blocks_under_concurrent_reads() {
    let now = chrono::Utc::now();
    let source = unique("blocks-compact");
    let mut expected = HashSet::new();
    for batch in 0..12 {
        let rows: Vec<_> = (0..40)
            .map(|i| {
                new_row(
                    "INFO",
                    format!("batch {batch} line {i}"),
                    &source,
                    now,
                    None,
                    None,
                )
            })
            .collect();
        expected.extend(rows.iter().map(|r| r.id));
        assert_eq!(store_blocks(&rows), 40);
    }
    let blocks_of = |source: &str| -> i64 {
        use diesel::prelude::*;
        log_store::schema::log_blocks::table
            .filter(log_store::schema::log_blocks::source.eq(source))
            .count()
            .get_result(&mut db())
            .expect("count")
    };
    assert_eq!(blocks_of(&source), 12);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, source, expected) = (stop.clone(), source.clone(), expected.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let (events, report) = events_of(&source);
                assert_eq!(report.corrupt, 0);
                assert_eq!(
                    events.len(),
                    expected.len(),
                    "read {reads}: every event once"
                );
                assert_eq!(ids(&events), expected);
                reads += 1;
            }
            reads
        })
    };
    let mut conn = db();
    let mut merged = 0;
    // Other tests' streams may be compacted too: go on until this one is whole.
    for _ in 0..200 {
        let report =
            log_store::blocks::compact::compact_once(&mut conn, Duration::ZERO).expect("compact");
        merged += report.merged;
        if blocks_of(&source) == 1 || report.merged == 0 {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().expect("reader");
    assert!(reads > 0);
    assert!(merged >= 12, "merged {merged}");
    assert_eq!(blocks_of(&source), 1);
    let (events, _) = events_of(&source);
    assert_eq!(ids(&events), expected);
    assert!(events
        .windows(2)
        .all(|w| w[0].event.timestamp_micros >= w[1].event.timestamp_micros));
}

/// Every source has its own blocks, so blocks overlap in time: a scan merges them
/// into one newest-first order (ties on time broken by id), and a scan resumed after
/// any event's position goes on with the next one, never repeating or skipping.
#[test]
fn a_scan_merges_overlapping_blocks_newest_first_and_resumes_after_a_position() {
    use log_store::blocks::read::Position;
    let tag = format!("merge{}", Uuid::new_v4().simple());
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let sources: Vec<String> = (0..4)
        .map(|i| unique(&format!("blocks-merge-{i}")))
        .collect();
    let mut expected = Vec::new();
    for batch in 0..3i64 {
        let mut rows = Vec::new();
        for (s, source) in sources.iter().enumerate() {
            for i in 0..30i64 {
                // Batches overlap in time; every fifth event shares its second with
                // the other sources' (a tie the id breaks).
                let second = if i % 5 == 0 {
                    i
                } else {
                    batch * 7 + i + s as i64
                };
                let at = base + chrono::Duration::seconds(second);
                let message = format!("{tag} batch {batch} event {i}");
                rows.push(new_row("INFO", message, source, at, None, None));
            }
        }
        expected.extend(rows.iter().map(|r| Position {
            timestamp_micros: r.timestamp.timestamp_micros(),
            id: r.id.as_u128(),
        }));
        assert_eq!(store_blocks(&rows), rows.len());
    }
    expected.sort_by(|a, b| b.cmp(a));
    let filter = ScanFilter {
        search: Some(log_blocks::Query::parse(&tag)),
        ..ScanFilter::default()
    };
    let position = |e: &ScannedEvent| Position::of(&e.event);

    let (all, report) = scan_with(filter.clone());
    assert_eq!(all.iter().map(position).collect::<Vec<_>>(), expected);
    assert_eq!(report.opened, 12, "{report:?}: four sources, three batches");

    // Pages of 17 by position, as a keyset cursor reads them.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let mut page = Vec::new();
        scan(
            &mut db(),
            &ScanFilter {
                after,
                ..filter.clone()
            },
            |e| {
                page.push(position(&e));
                if page.len() == 17 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .expect("scan");
        let Some(&last) = page.last() else { break };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, expected);
}

/// One event by its id: a v7 id is looked for around the time it carries first, any
/// other id (or a v7 one whose event is stamped days away) in every block.
#[test]
fn an_event_is_found_by_its_id_whatever_its_id_and_time() {
    let now = chrono::Utc::now();
    let source = unique("blocks-find");
    let mut rows: Vec<_> = (0..40)
        .map(|i| new_row("INFO", format!("find me {i}"), &source, now, None, None))
        .collect();
    rows[0].id = Uuid::now_v7();
    rows[1].id = Uuid::now_v7();
    // A v7 id whose event is stamped three days earlier (a backfill).
    rows[2].timestamp = now - chrono::Duration::days(3);
    rows[2].id = Uuid::now_v7();
    assert_eq!(store_blocks(&rows), 40);
    for row in &rows[..5] {
        let found = log_store::blocks::query::find(&mut db(), row.id)
            .expect("find")
            .unwrap_or_else(|| panic!("{} not found", row.id));
        assert_eq!(uuid::Uuid::from(found.id), row.id);
        assert_eq!(found.message.as_str(), row.message);
        assert_eq!(
            found.timestamp.timestamp_micros(),
            row.timestamp.timestamp_micros()
        );
    }
    assert!(log_store::blocks::query::find(&mut db(), Uuid::now_v7())
        .expect("find")
        .is_none());
    assert!(log_store::blocks::query::find(&mut db(), Uuid::new_v4())
        .expect("find")
        .is_none());
}

/// A stream's small blocks wait to be merged until together they make a full block or
/// have settled: a busy stream's events are merged once, not at every round.
#[test]
fn small_blocks_wait_for_a_full_block_or_to_settle() {
    let now = chrono::Utc::now();
    let source = unique("blocks-settle");
    for batch in 0..3 {
        let rows: Vec<_> = (0..40)
            .map(|i| {
                new_row(
                    "INFO",
                    format!("batch {batch} line {i}"),
                    &source,
                    now,
                    None,
                    None,
                )
            })
            .collect();
        assert_eq!(store_blocks(&rows), 40);
    }
    let blocks_of = |source: &str| -> i64 {
        use diesel::prelude::*;
        log_store::schema::log_blocks::table
            .filter(log_store::schema::log_blocks::source.eq(source))
            .count()
            .get_result(&mut db())
            .expect("count")
    };
    let mut conn = db();
    let hour = Duration::from_secs(3600);
    for _ in 0..200 {
        let report = log_store::blocks::compact::compact_once(&mut conn, hour).expect("compact");
        if report.merged == 0 {
            break;
        }
    }
    assert_eq!(
        blocks_of(&source),
        3,
        "120 events written just now: not yet"
    );
    for _ in 0..200 {
        let report =
            log_store::blocks::compact::compact_once(&mut conn, Duration::ZERO).expect("compact");
        if blocks_of(&source) == 1 || report.merged == 0 {
            break;
        }
    }
    assert_eq!(blocks_of(&source), 1, "settled: merged");
}

/// A consumer switched to blocks moves the rows stored before into blocks in the
/// background, every event once, while it stores new events as blocks.
#[tokio::test]
async fn a_consumer_switched_to_blocks_moves_the_rows_into_blocks() {
    let url = crate::helpers::new_migrated_database();
    let now = chrono::Utc::now();
    let source = unique("moved");
    let rows: Vec<_> = (0..2_500)
        .map(|i| {
            new_row(
                "INFO",
                format!("stored as a row {i}"),
                &source,
                now - chrono::TimeDelta::seconds(i),
                None,
                None,
            )
        })
        .collect();
    assert_eq!(crate::helpers::store_rows_in(&url, &rows), rows.len());
    let t = topics().await;
    let producer = producer();
    let new_ids: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &new_ids).await;
    let database = url.clone();
    let app = spawn_consumer_with(&t.topic, &t.dlq, &t.group, move |s| {
        s.consumer.storage_layout = Layout::Blocks;
        s.postgres.url = database;
    })
    .await;
    use diesel::prelude::*;
    let mut conn = PgConnection::establish(&url).expect("connect");
    let counts = |conn: &mut PgConnection| -> (i64, i64) {
        use log_store::schema::{log_blocks, log_events};
        let rows = log_events::table
            .count()
            .get_result(conn)
            .expect("count rows");
        let events: Option<i64> = log_blocks::table
            .select(diesel::dsl::sum(log_blocks::events))
            .first(conn)
            .expect("sum events");
        (rows, events.unwrap_or(0))
    };
    let moved = eventually("every row moved", Duration::from_secs(60), || {
        let found = counts(&mut conn);
        async move { (found == (0, 2_700)).then_some(found) }
    })
    .await;
    assert_eq!(moved, (0, 2_700));
    let metrics = crate::helpers::metrics_text(&format!("{}/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("log_rows_moved_to_blocks_total 2500"),
        "{metrics}"
    );
    // Every event once, as the gateway reads it.
    let page = log_store::queries::page(
        &mut conn,
        &log_store::queries::EventFilter {
            start: now - chrono::TimeDelta::days(1),
            end: chrono::Utc::now(),
            levels: Vec::new(),
            source: Some(source.clone()),
            correlation_id: None,
            trace_id: None,
            text: None,
        },
        log_store::queries::Paging::Offset {
            page: 0,
            size: 1000,
        },
        chrono::Utc::now(),
        log_store::queries::Budgets {
            search_walk: Duration::from_secs(5),
            count: Duration::from_secs(5),
        },
    )
    .expect("page");
    assert_eq!((page.total, page.total_exact), (2_700, true));
    app.stop().await;
}
