//! Dead letters, on a topic, dead-letter topic and consumer group of their own: every
//! way a record can end there (it is not an event, or PostgreSQL rejects its row for
//! good) sends the original record unchanged (key, payload bytes, headers in order),
//! with `dlq-*` headers added after them, and the partition moves on.

use crate::consumer::{producer, send_events, topics, wait_for_rows};
use crate::helpers::{db, metrics_text, rows_for_source, spawn_consumer, unique, KAFKA};
use diesel::prelude::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

type HeaderList = Vec<(String, Option<Vec<u8>>)>;

/// A record as Kafka holds it.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: HeaderList,
}

/// Sends a record with its own headers: one with a value, one without.
async fn send_record(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) -> Record {
    let headers: HeaderList = vec![
        (
            "traceparent".into(),
            Some(format!("00-{key}-01").into_bytes()),
        ),
        ("no-value".into(), None),
    ];
    let mut owned = OwnedHeaders::new();
    for (name, value) in &headers {
        owned = owned.insert(Header {
            key: name.as_str(),
            value: value.as_deref(),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(owned),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    Record {
        key: key.as_bytes().to_vec(),
        payload: payload.to_vec(),
        headers,
    }
}

/// Reads `n` dead letters, by key: the record, and the value of each `dlq-*` header.
async fn read_dead_letters(
    dlq: &str,
    n: usize,
) -> BTreeMap<Vec<u8>, (Record, BTreeMap<String, String>)> {
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[dlq]).expect("subscribe");
    let mut letters = BTreeMap::new();
    while letters.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("dead letters arrive")
            .expect("message");
        let mut original = Vec::new();
        let mut dlq_headers = BTreeMap::new();
        for header in message
            .headers()
            .map(|h| h.iter().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if header.key.starts_with("dlq-") {
                let value = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                dlq_headers.insert(header.key.to_owned(), value.unwrap_or_default());
            } else {
                assert!(
                    dlq_headers.is_empty(),
                    "the record's own headers come first"
                );
                original.push((header.key.to_owned(), header.value.map(<[u8]>::to_vec)));
            }
        }
        let record = Record {
            key: message.key().unwrap_or_default().to_vec(),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers: original,
        };
        letters.insert(record.key.clone(), (record, dlq_headers));
    }
    letters
}

#[tokio::test]
async fn poison_records_go_to_the_dead_letter_topic_unchanged_and_the_partition_moves_on() {
    let t = topics().await;
    let source = unique("poison-src");
    let producer = producer();
    // A valid-looking event whose message is far over the 32 KiB limit (1 MiB).
    let huge =
        json!({"level": "INFO", "message": "x".repeat(1024 * 1024), "source": "s"}).to_string();
    // Dated past RETENTION_DAYS (30), or days after it was sent.
    let at = |days: i64| {
        json!({"level": "INFO", "message": "m", "source": "s",
               "timestamp": chrono::Utc::now() + chrono::Duration::days(days)})
        .to_string()
    };
    let (too_old, too_new) = (at(-40), at(3));
    let poison: [&[u8]; 8] = [
        too_old.as_bytes(),
        too_new.as_bytes(),
        b"not json at all",
        br#"{"level":"LOUD","message":"m","source":"s"}"#,
        br#"{"level":"INFO","message":42,"source":"s"}"#,
        b"\xff\xfe\xfd",
        b"",
        huge.as_bytes(),
    ];
    let mut sent = Vec::new();
    for (i, payload) in poison.iter().enumerate() {
        sent.push(send_record(&producer, &t.topic, &format!("poison-{i}"), payload).await);
    }
    let good: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &good).await;

    let app = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    wait_for_rows(&source, 20).await;
    assert_eq!(
        rows_for_source(&source).len(),
        20,
        "valid events after the poison are stored"
    );

    let letters = read_dead_letters(&t.dlq, poison.len()).await;
    let mut reasons = Vec::new();
    for record in &sent {
        let (letter, dlq) = letters
            .get(&record.key)
            .expect("a dead letter per poison record");
        assert_eq!(
            letter, record,
            "the dead letter is the record as it was sent"
        );
        assert_eq!(dlq.get("dlq-original-topic"), Some(&t.topic));
        assert!(dlq.contains_key("dlq-original-offset"), "{dlq:?}");
        assert!(dlq.contains_key("dlq-original-partition"), "{dlq:?}");
        assert!(dlq.contains_key("dlq-failed-at"), "{dlq:?}");
        assert!(
            ["empty", "not_json", "invalid_event", "too_old"]
                .contains(&dlq["dlq-reason-kind"].as_str()),
            "{dlq:?}"
        );
        reasons.push(dlq["dlq-error"].clone());
    }
    for expected in [
        "at most 32768 bytes",
        "unknown level",
        "not JSON",
        "empty",
        "the oldest day RETENTION_DAYS keeps",
        "at most one day after the time the event is received",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected}: {reasons:?}"
        );
    }

    let metrics = metrics_text(&format!("{}/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("dead_letter_messages_total 8"),
        "{metrics}"
    );
    app.stop().await;
}

/// What the database refuses as data, once the batch has been retried row by row.
/// The test database gets a CHECK constraint (the kind a DBA adds) that the event
/// validation knows nothing about.
const REJECTED: &str = "a message the database refuses";

fn add_a_constraint_the_validation_does_not_know() {
    let added = diesel::sql_query(format!(
        "ALTER TABLE log_events ADD CONSTRAINT integration_test_rejects \
         CHECK (message <> '{REJECTED}') NOT VALID"
    ))
    .execute(&mut db());
    match added {
        Ok(_) => {}
        // Another test in this binary added it first.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") => {}
        Err(e) => panic!("constraint: {e}"),
    }
}

#[tokio::test]
async fn a_row_postgresql_rejects_for_good_goes_to_the_dead_letter_topic_unchanged() {
    add_a_constraint_the_validation_does_not_know();
    let t = topics().await;
    let source = unique("rejected-src");
    let producer = producer();
    let good: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &good[..5]).await;
    let rejected = json!({"id": Uuid::now_v7(), "level": "ERROR", "message": REJECTED,
        "source": source, "correlationId": "corr-1", "requestId": "req-1", "traceId": "trace-1",
        "metadata": {"kept": "as sent"}})
    .to_string();
    let record = send_record(&producer, &t.topic, "rejected-0", rejected.as_bytes()).await;
    send_events(&producer, &t.topic, &source, &good[5..]).await;

    let app = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    wait_for_rows(&source, 10).await;
    let letters = read_dead_letters(&t.dlq, 1).await;
    let (letter, dlq) = letters
        .get(&record.key)
        .expect("the rejected row's dead letter");
    assert_eq!(letter, &record, "the original bytes, not a rebuilt event");
    assert!(
        dlq["dlq-error"].contains("integration_test_rejects"),
        "the reason names what refused it: {dlq:?}"
    );
    assert_eq!(dlq["dlq-reason-kind"], "rejected_by_database", "{dlq:?}");
    assert_eq!(
        rows_for_source(&source).len(),
        10,
        "the other rows are stored"
    );
    let metrics = metrics_text(&format!("{}/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("dead_letter_messages_total 1"),
        "{metrics}"
    );
    app.stop().await;
}
