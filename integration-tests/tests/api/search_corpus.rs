//! Search in blocks (Rust, `log_blocks::Query`) against search in rows (PostgreSQL,
//! `websearch_to_tsquery('english', …)` over `search_vector`), on one corpus of real
//! log shapes stored both ways: where they agree, and each deliberate difference the
//! README lists ("Event blocks").

use crate::helpers::{db, new_row, unique};
use diesel::prelude::*;
use log_store::blocks::read::{scan, ScanFilter};
use log_store::Layout;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// Lines as sixteen kinds of systems write them.
const CORPUS: [&str; 32] = [
    r#"10.0.0.12 - - [07/Dec/2026:10:15:32 +0000] "GET /api/v1/users/42 HTTP/1.1" 200 512 "-" "curl/8.5.0""#,
    r#"10.0.0.1 - - [07/Dec/2026:10:15:33 +0000] "POST /api/v1/orders HTTP/1.1" 503 0 "-" "okhttp/4.12""#,
    r#"110.0.0.1 - - [07/Dec/2026:10:15:34 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.29""#,
    "connection refused: could not connect to db-01.example.com:5432",
    "Connections exhausted in pool HikariPool-1 (total=10, active=10, idle=0, waiting=4)",
    "FATAL: password authentication failed for user \"app\"",
    "ERROR: duplicate key value violates unique constraint \"orders_pkey\"",
    "ORA-00942: table or view does not exist",
    "java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null",
    "\tat com.acme.orders.OrderService.place(OrderService.java:142)",
    "Request 0193a4f2-7c1e-7d3b-9a4e-2f1c3b5d6e7f timed out after 30000 ms",
    "retrying request 0193a4f2-7c1e-7d3b-9a4e-2f1c3b5d6e7f (attempt 2 of 5)",
    "Failed password for invalid user admin from 203.0.113.7 port 52814 ssh2",
    "Accepted publickey for deploy from 198.51.100.23 port 41022 ssh2",
    "pod orders-7d9f8b6c5-x2k4q in namespace shop: Back-off restarting failed container",
    "Readiness probe failed: Get \"http://10.244.1.17:8080/ready\": context deadline exceeded",
    "OOMKilled: container payments exceeded memory limit 512Mi",
    "payment declined: card expired (code=card_expired, amount=42.50 EUR)",
    "payment authorised for order 88213 in 182ms",
    "user=alice action=login status=ok ip=10.0.0.12",
    "user=bob action=login status=failed reason=timeout",
    "Slow query (1532 ms): SELECT * FROM orders WHERE customer_id = $1",
    "redis: connection pool timeout after 100ms, retrying",
    "Rebalancing consumer group log-consumer-group: partitions [0, 1, 2] revoked",
    "Kafka broker 127.0.0.1:9092 is not available: Connection to node 1 could not be established",
    "disk usage on /var/lib/postgresql at 91% (threshold 90%)",
    "Wrote /var/log/app/app.log.1 (rotated, 104857600 bytes)",
    "TLS handshake error from 192.0.2.44:51234: remote error: tls: bad certificate",
    "cache miss for key user:42:profile, loading from database",
    "Scheduled job cleanup-sessions finished in 4.2s, removed 1289 sessions",
    "GET /api/v1/users?limit=50 took 12.5ms",
    "Timeout waiting for lock on table orders; retrying in 50ms",
];

fn store(layout: Layout, source: &str, now: chrono::DateTime<chrono::Utc>) {
    let rows: Vec<_> = CORPUS
        .iter()
        .map(|line| new_row("INFO", (*line).to_owned(), source, now, None, None))
        .collect();
    let mut settings = log_consumer::settings::Settings::defaults();
    settings.postgres.url = crate::helpers::test_database_url().to_owned();
    let written = log_store::Store::new(&settings.postgres, "corpus-test", "corpus-test")
        .expect("store")
        .with_layout(layout)
        .write_batch(&rows, &std::collections::BTreeMap::new())
        .expect("batch");
    assert_eq!(written, CORPUS.len());
}

fn line_number(message: &str) -> usize {
    CORPUS
        .iter()
        .position(|line| *line == message)
        .expect("a corpus line")
}

/// The corpus lines PostgreSQL's full text finds (today's `/search`).
fn found_in_rows(source: &str, query: &str) -> BTreeSet<usize> {
    #[derive(QueryableByName)]
    struct Message {
        #[diesel(sql_type = diesel::sql_types::Text)]
        message: String,
    }
    diesel::sql_query(
        "SELECT message FROM log_events WHERE source = $1 \
         AND search_vector @@ websearch_to_tsquery('english', $2)",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .bind::<diesel::sql_types::Text, _>(query)
    .load::<Message>(&mut db())
    .expect("full text")
    .iter()
    .map(|m| line_number(&m.message))
    .collect()
}

/// The corpus lines a scan of the blocks finds.
fn found_in_blocks(source: &str, query: &str) -> BTreeSet<usize> {
    let mut found = BTreeSet::new();
    let filter = ScanFilter {
        source: Some(source.to_owned()),
        search: Some(log_blocks::Query::parse(query)),
        ..ScanFilter::default()
    };
    scan(&mut db(), &filter, |e| {
        found.insert(line_number(&e.event.message));
        ControlFlow::Continue(())
    })
    .expect("scan");
    found
}

#[test]
fn blocks_find_what_full_text_finds_except_the_listed_changes() {
    let now = chrono::Utc::now();
    let (rows, blocks) = (unique("corpus-rows"), unique("corpus-blocks"));
    store(Layout::Rows, &rows, now);
    store(Layout::Blocks, &blocks, now);

    // The same lines both ways.
    let mut mismatches = Vec::new();
    for query in [
        "connection refused",
        "\"connection refused\"",
        "refused -pool",
        "timeout or expired",
        "password failed -invalid",
        "10.0.0.12",
        "10.0.0.1",
        "0193a4f2-7c1e-7d3b-9a4e-2f1c3b5d6e7f",
        "203.0.113.7",
        "192.0.2.44",
        "declined",
        "\"unique constraint\"",
        "OOMKilled",
        "profile",
        "nothing-matches-this",
    ] {
        let expected = found_in_rows(&rows, query);
        let found = found_in_blocks(&blocks, query);
        if found != expected {
            mismatches.push(format!("{query}: rows {expected:?}, blocks {found:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert!(!found_in_rows(&rows, "10.0.0.12").is_empty());

    // Deliberate differences, each in the README.
    let line = |text: &str| {
        CORPUS
            .iter()
            .position(|l| l.contains(text))
            .expect("a corpus line")
    };
    // No stemming: `connections` finds only the line that says it.
    assert!(found_in_rows(&rows, "connections").contains(&line("connection refused")));
    assert_eq!(
        found_in_blocks(&blocks, "connections"),
        BTreeSet::from([line("Connections exhausted")])
    );
    // A word inside a path, a dotted name or a key:value is found; PostgreSQL keeps
    // those whole.
    for (query, within) in [
        ("users", "GET /api/v1/users/42"),
        ("NullPointerException", "java.lang.NullPointerException"),
        ("OrderService", "OrderService.place"),
    ] {
        assert!(
            !found_in_rows(&rows, query).contains(&line(within)),
            "{query}"
        );
        assert!(
            found_in_blocks(&blocks, query).contains(&line(within)),
            "{query}"
        );
    }
    // So a word of a host excludes the line too.
    assert!(found_in_rows(&rows, "refused -db").contains(&line("db-01.example.com")));
    assert!(!found_in_blocks(&blocks, "refused -db").contains(&line("db-01.example.com")));
    // A host or an address found with its port, or without, a path by its beginning.
    // (PostgreSQL's query parser cuts `host:port` otherwise than its document parser
    // does, so it does not find even the whole of it.)
    for (query, within) in [
        ("db-01.example.com:5432", "db-01.example.com:5432"),
        ("db-01.example.com", "db-01.example.com:5432"),
        ("/var/log/app", "/var/log/app/app.log.1"),
        ("10.0.0", "10.0.0.12 -"),
    ] {
        assert!(
            !found_in_rows(&rows, query).contains(&line(within)),
            "{query}"
        );
        assert!(
            found_in_blocks(&blocks, query).contains(&line(within)),
            "{query}"
        );
    }
    // An IP never finds a longer one, either way.
    assert!(!found_in_blocks(&blocks, "10.0.0.1").contains(&line("10.0.0.12 -")));
    assert!(!found_in_blocks(&blocks, "10.0.0.1").contains(&line("110.0.0.1")));
}
