//! Pages over blocks answer as pages over rows do: the same events stored in rows in
//! one database and in blocks in another, then every filter alone and combined, by
//! offset and by keyset cursor, gives the same events in the same order and the same
//! total, exact or not alike.

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

fn ids(page: &PageResult) -> Vec<Uuid> {
    page.events.iter().map(|e| Uuid::from(e.id)).collect()
}

#[test]
fn pages_over_blocks_answer_as_pages_over_rows() {
    let now = Utc::now();
    let events = events(now);
    let (rows_url, blocks_url) = (
        stored(Layout::Rows, &events),
        stored(Layout::Blocks, &events),
    );
    let mut rows_db = PgConnection::establish(&rows_url).expect("connect");
    let mut blocks_db = PgConnection::establish(&blocks_url).expect("connect");
    {
        use diesel::prelude::*;
        let rows_in_blocks_db: i64 = log_store::schema::log_events::table
            .count()
            .get_result(&mut blocks_db)
            .expect("count");
        let blocks: i64 = log_store::schema::log_blocks::table
            .count()
            .get_result(&mut blocks_db)
            .expect("count");
        assert_eq!((rows_in_blocks_db, blocks > 0), (0, true));
    }
    let budgets = Budgets {
        search_walk: Duration::from_secs(5),
        count: Duration::from_secs(5),
    };
    let window = EventFilter {
        // Neither edge on a minute: the totals count partial minutes.
        start: now - TimeDelta::hours(2) - TimeDelta::seconds(17),
        end: now - TimeDelta::seconds(23),
        levels: Vec::new(),
        source: None,
        correlation_id: None,
        trace_id: None,
        text: None,
    };
    let level = |l: &str| l.parse::<Level>().expect("a level");
    let filters = [
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
            ..window.clone()
        },
    ];
    for (n, filter) in filters.iter().enumerate() {
        let mut cursor = None;
        for paging in [
            Paging::Offset { page: 0, size: 50 },
            Paging::Offset { page: 3, size: 40 },
            Paging::Offset {
                page: 500,
                size: 50,
            },
        ] {
            let from_rows =
                log_store::queries::page(&mut rows_db, filter, paging, now, budgets).expect("rows");
            let from_blocks =
                log_store::blocks::query::page(&mut blocks_db, filter, paging, now, budgets)
                    .expect("blocks");
            let what = format!("{filter:?} {paging:?}");
            assert_eq!(ids(&from_blocks), ids(&from_rows), "{what}");
            assert_eq!(from_blocks.events, from_rows.events, "{what}");
            assert_eq!(
                (from_blocks.total, from_blocks.total_exact),
                (from_rows.total, from_rows.total_exact),
                "{what}"
            );
            if paging == (Paging::Offset { page: 0, size: 50 }) {
                // Every filter but the last two has matches, the first a full page.
                assert_eq!(from_rows.total > 0, n < 9, "{what}: {}", from_rows.total);
                assert_eq!(
                    from_rows.events.len() == 50,
                    n == 0 || from_rows.total >= 50
                );
            }
            if cursor.is_none() {
                cursor = from_rows.events.last().map(|e| Cursor {
                    timestamp: e.timestamp,
                    id: Uuid::from(e.id),
                });
            }
        }
        // Three pages on by keyset cursor.
        for _ in 0..3 {
            let Some(after) = cursor else { break };
            let paging = Paging::After {
                cursor: after,
                size: 50,
            };
            let from_rows =
                log_store::queries::page(&mut rows_db, filter, paging, now, budgets).expect("rows");
            let from_blocks =
                log_store::blocks::query::page(&mut blocks_db, filter, paging, now, budgets)
                    .expect("blocks");
            assert_eq!(ids(&from_blocks), ids(&from_rows), "{filter:?} {paging:?}");
            assert_eq!(from_blocks.total, from_rows.total, "{filter:?} {paging:?}");
            cursor = from_rows.events.last().map(|e| Cursor {
                timestamp: e.timestamp,
                id: Uuid::from(e.id),
            });
        }
    }
    let never = log_store::blocks::query::page(
        &mut blocks_db,
        &filters[9],
        Paging::Offset { page: 0, size: 50 },
        now,
        budgets,
    )
    .expect("blocks");
    assert!(never.events.is_empty());
    assert_eq!((never.total, never.total_exact), (0, true));
}
