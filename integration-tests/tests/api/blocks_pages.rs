//! Pages over blocks answer as pages over rows do: the same events stored in rows in
//! one database and in blocks in another, then every filter alone and combined, by
//! offset and by keyset cursor, gives the same events in the same order and the same
//! total, exact or not alike. And rows moved into blocks (the migration) answer after
//! the move as they did before it.

use crate::helpers::new_migrated_database;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::{Connection, PgConnection};
use log_common::event::Level;
use log_store::queries::{Budgets, Cursor, EventFilter, PageResult, Paging};
use log_store::{Layout, NewLogEvent, Store};
use std::time::Duration;
use uuid::Uuid;

const SOURCES: [&str; 5] = ["checkout", "payments", "search", "auth", "inventory"];
const WORDS: [&str; 8] = [
    "timeout", "declined", "refused", "retry", "cache", "slow", "ok", "started",
];

/// Real-ish skew: most events INFO from the first sources, a few ERRORs, words and
/// ids spread so every filter has matches and some combinations have none.
fn events(now: DateTime<Utc>) -> Vec<NewLogEvent> {
    let levels = [
        "INFO", "INFO", "INFO", "INFO", "DEBUG", "WARN", "INFO", "ERROR", "INFO", "FATAL",
    ];
    (0..3_000u32)
        .map(|i| {
            let source = SOURCES[(i as usize * i as usize) % 7 % SOURCES.len()];
            let word = WORDS[(i as usize * 3) % WORDS.len()];
            // `search` never says "declined": that pair meets nowhere.
            let word = if source == "search" && word == "declined" {
                "ok"
            } else {
                word
            };
            NewLogEvent {
                id: Uuid::new_v4(),
                level: levels[i as usize % levels.len()].into(),
                message: format!("request {i} {word} after {}ms", i % 97),
                source: source.into(),
                // Three hours back, with runs of events in the same microsecond.
                timestamp: now - TimeDelta::milliseconds(i64::from(i / 3) * 3_600),
                metadata: None,
                correlation_id: (i % 5 == 0).then(|| format!("corr-{}", i / 50)),
                request_id: None,
                trace_id: (i % 11 == 0).then(|| format!("{:032x}", i / 110)),
                lane: i16::from(levels[i as usize % levels.len()] == "ERROR"),
                kafka_partition: (i % 3) as i32,
                kafka_offset: i64::from(i),
            }
        })
        .collect()
}

fn stored(layout: Layout, events: &[NewLogEvent]) -> String {
    let url = new_migrated_database();
    let mut settings = log_consumer::settings::Settings::defaults();
    settings.postgres.url = url.clone();
    let store = Store::new(&settings.postgres, "pages-test", "pages-test")
        .expect("store")
        .with_layout(layout);
    for batch in events.chunks(1_000) {
        assert_eq!(
            store
                .write_batch(batch, &std::collections::BTreeMap::new())
                .expect("batch"),
            batch.len()
        );
    }
    url
}

/// Every filter alone and combined, in a window whose edges are not on a minute (the
/// totals count partial minutes). The last two match nothing.
fn filters(now: DateTime<Utc>) -> Vec<EventFilter> {
    let window = EventFilter {
        start: now - TimeDelta::hours(2) - TimeDelta::seconds(17),
        end: now - TimeDelta::seconds(23),
        levels: Vec::new(),
        source: None,
        correlation_id: None,
        trace_id: None,
        text: None,
    };
    let level = |l: &str| l.parse::<Level>().expect("a level");
    vec![
        window.clone(),
        EventFilter {
            levels: vec![level("ERROR")],
            ..window.clone()
        },
        EventFilter {
            levels: vec![level("ERROR"), level("FATAL"), level("WARN")],
            ..window.clone()
        },
        EventFilter {
            source: Some("payments".into()),
            ..window.clone()
        },
        EventFilter {
            source: Some("checkout".into()),
            levels: vec![level("INFO")],
            ..window.clone()
        },
        EventFilter {
            text: Some("timeout".into()),
            ..window.clone()
        },
        EventFilter {
            text: Some("declined or refused -retry".into()),
            levels: vec![level("INFO"), level("ERROR")],
            ..window.clone()
        },
        EventFilter {
            correlation_id: Some("corr-7".into()),
            ..window.clone()
        },
        EventFilter {
            trace_id: Some(format!("{:032x}", 3)),
            ..window.clone()
        },
        // Words and filters that never meet: an empty page, total exactly 0.
        EventFilter {
            text: Some("declined".into()),
            source: Some("search".into()),
            ..window.clone()
        },
        EventFilter {
            text: Some("neverawordhere".into()),
            ..window
        },
    ]
}

/// One answer: which filter and page, the events, the total and whether it is exact.
type Answer = (String, PageResult);

/// What a reader sees of every filter: pages by offset (the first, a later one, one
/// past the end), then three pages on by keyset cursor from the first.
/// One group a filter, in [`filters`]' order.
fn answers(conn: &mut PgConnection, now: DateTime<Utc>) -> Vec<Vec<Answer>> {
    let budgets = Budgets {
        search_walk: Duration::from_secs(5),
        count: Duration::from_secs(5),
    };
    let mut groups = Vec::new();
    for filter in filters(now) {
        let mut answers = Vec::new();
        let mut cursor = None;
        for paging in [
            Paging::Offset { page: 0, size: 50 },
            Paging::Offset { page: 3, size: 40 },
            Paging::Offset {
                page: 500,
                size: 50,
            },
        ] {
            let result =
                log_store::queries::page(conn, &filter, paging, now, budgets).expect("page");
            if cursor.is_none() {
                cursor = last_of(&result);
            }
            answers.push((format!("{filter:?} {paging:?}"), result));
        }
        for _ in 0..3 {
            let Some(after) = cursor else { break };
            let paging = Paging::After {
                cursor: after,
                size: 50,
            };
            let result =
                log_store::queries::page(conn, &filter, paging, now, budgets).expect("page");
            cursor = last_of(&result);
            answers.push((format!("{filter:?} {paging:?}"), result));
        }
        groups.push(answers);
    }
    groups
}

fn last_of(page: &PageResult) -> Option<Cursor> {
    page.events.last().map(|e| Cursor {
        timestamp: e.timestamp,
        id: Uuid::from(e.id),
    })
}

fn assert_same(found: &[Vec<Answer>], expected: &[Vec<Answer>]) {
    let (found, expected): (Vec<&Answer>, Vec<&Answer>) = (
        found.iter().flatten().collect(),
        expected.iter().flatten().collect(),
    );
    assert_eq!(found.len(), expected.len());
    for ((what, found), (_, expected)) in found.into_iter().zip(expected) {
        assert_eq!(found.events, expected.events, "{what}");
        assert_eq!(
            (found.total, found.total_exact),
            (expected.total, expected.total_exact),
            "{what}"
        );
    }
}

fn count(conn: &mut PgConnection) -> (i64, i64) {
    use diesel::prelude::*;
    let rows = log_store::schema::log_events::table
        .count()
        .get_result(conn)
        .expect("count");
    let blocks = log_store::schema::log_blocks::table
        .count()
        .get_result(conn)
        .expect("count");
    (rows, blocks)
}

#[test]
fn pages_over_blocks_answer_as_pages_over_rows() {
    let now = Utc::now();
    let events = events(now);
    let mut rows_db = PgConnection::establish(&stored(Layout::Rows, &events)).expect("connect");
    let mut blocks_db = PgConnection::establish(&stored(Layout::Blocks, &events)).expect("connect");
    let (rows, blocks) = count(&mut blocks_db);
    assert_eq!((rows, blocks > 0), (0, true));

    let expected = answers(&mut rows_db, now);
    // The comparison means something: every filter but the last two has matches, the
    // unfiltered window a full first page.
    for (i, group) in expected.iter().enumerate() {
        let (what, first) = &group[0];
        assert_eq!(first.total > 0, i < 9, "{what}: {}", first.total);
    }
    assert_eq!(expected[0][0].1.events.len(), 50);
    assert_same(&answers(&mut blocks_db, now), &expected);

    let never = &answers(&mut blocks_db, now)[9][0].1;
    assert!(never.events.is_empty());
    assert_eq!((never.total, never.total_exact), (0, true));
}

/// The migration: rows stored before blocks move into blocks in rounds, each in one
/// transaction; afterwards no row is left and every page answers as before the move.
#[test]
fn rows_moved_into_blocks_answer_as_before_the_move() {
    let now = Utc::now();
    let events = events(now);
    let url = stored(Layout::Rows, &events);
    let mut db = PgConnection::establish(&url).expect("connect");
    let before = answers(&mut db, now);

    let mut moved = 0;
    let mut rounds = 0;
    loop {
        let n = log_store::blocks::migrate::move_oldest_rows(&mut db, 700).expect("move");
        if n == 0 {
            break;
        }
        moved += n;
        rounds += 1;
        // Part rows, part blocks: the gateway's reads merge the two.
        if moved < events.len() {
            assert_same(&answers(&mut db, now), &before);
        }
    }
    assert_eq!(moved, events.len());
    assert!(rounds >= 5, "{rounds} rounds");
    let (rows, blocks) = count(&mut db);
    assert_eq!((rows, blocks > 0), (0, true));
    assert_same(&answers(&mut db, now), &before);

    // Compaction after the move changes nothing a reader sees either.
    while log_store::blocks::compact::compact_once(&mut db, Duration::ZERO)
        .expect("compact")
        .merged
        > 0
    {}
    assert!(count(&mut db).1 < blocks);
    assert_same(&answers(&mut db, now), &before);
}

/// The live tail over blocks, and over rows half moved into blocks, polls as over
/// rows: the same events, partition by partition in offset order, the same cursor
/// after each poll, to the end.
#[test]
fn a_tail_over_blocks_polls_as_over_rows() {
    use log_store::queries::{Conditions, TailCursor, TailTopics};
    let now = Utc::now();
    let events = events(now);
    let topics = TailTopics {
        normal: "tail-normal".into(),
        priority: "tail-priority".into(),
    };
    // The stored offsets the consumer would have committed with the events.
    let commit = |url: &str| {
        let mut conn = PgConnection::establish(url).expect("connect");
        for lane in [0i16, 1] {
            for partition in 0..3 {
                let next = events
                    .iter()
                    .filter(|e| e.lane == lane && e.kafka_partition == partition)
                    .map(|e| e.kafka_offset + 1)
                    .max()
                    .unwrap_or(0);
                let topic = if lane == 0 {
                    &topics.normal
                } else {
                    &topics.priority
                };
                diesel::sql_query(
                    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) \
                     VALUES ('tail-test', $1, $2, $3)",
                )
                .bind::<diesel::sql_types::Text, _>(topic)
                .bind::<diesel::sql_types::Integer, _>(partition)
                .bind::<diesel::sql_types::BigInt, _>(next)
                .execute(&mut conn)
                .map(|_| ())
                .expect("offsets");
            }
        }
        conn
    };
    use diesel::RunQueryDsl;
    // Rows, blocks, and rows of which the oldest half has moved into blocks (the
    // tail reads both tables then).
    let mut rows_db = commit(&stored(Layout::Rows, &events));
    let mut blocks_db = commit(&stored(Layout::Blocks, &events));
    let mut mixed_db = commit(&stored(Layout::Rows, &events));
    let moved =
        log_store::blocks::migrate::move_oldest_rows(&mut mixed_db, events.len() as i64 / 2)
            .expect("move");
    assert_eq!(moved, events.len() / 2);
    let level = |l: &str| l.parse::<Level>().expect("a level");
    for conditions in [
        Conditions::default(),
        Conditions {
            levels: vec![level("ERROR")],
            ..Conditions::default()
        },
        Conditions {
            source: Some("payments".into()),
            text: Some("timeout".into()),
            ..Conditions::default()
        },
        Conditions {
            correlation_id: Some("corr-7".into()),
            ..Conditions::default()
        },
    ] {
        let mut from = [
            TailCursor::default(),
            TailCursor::default(),
            TailCursor::default(),
        ];
        let mut delivered = 0;
        for poll in 0.. {
            assert!(poll < 500, "the tail ends");
            let poll_of = |conn: &mut PgConnection, from: &TailCursor| {
                log_store::queries::tail::poll(conn, "tail-test", &topics, from, &conditions, 37)
                    .expect("poll")
            };
            let rows = poll_of(&mut rows_db, &from[0]);
            let blocks = poll_of(&mut blocks_db, &from[1]);
            let mixed = poll_of(&mut mixed_db, &from[2]);
            let seen = |p: &log_store::queries::TailPoll| -> Vec<(String, i64, Uuid)> {
                p.events
                    .iter()
                    .map(|e| {
                        (
                            format!("{:?}", e.partition),
                            e.offset,
                            Uuid::from(e.event.id),
                        )
                    })
                    .collect()
            };
            for other in [&blocks, &mixed] {
                assert_eq!(seen(other), seen(&rows), "{conditions:?} poll {poll}");
                assert_eq!(other.cursor, rows.cursor, "{conditions:?} poll {poll}");
                assert_eq!(other.more, rows.more);
            }
            delivered += rows.events.len();
            from = [rows.cursor.clone(), blocks.cursor, mixed.cursor];
            if !rows.more && rows.events.is_empty() {
                break;
            }
        }
        assert!(delivered > 0, "{conditions:?}");
    }
}
