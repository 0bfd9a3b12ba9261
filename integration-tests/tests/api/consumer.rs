//! The consumer on port 0 against the real broker and PostgreSQL, on a topic, dead
//! letter topic and consumer group of its own.

use crate::helpers::{
    create_topic, eventually, get_json, rows_for_source, spawn_consumer, spawn_consumer_with,
    unique, KAFKA,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

struct Topics {
    topic: String,
    dlq: String,
    group: String,
}

async fn topics() -> Topics {
    let t = Topics {
        topic: unique("consumer-test"),
        dlq: unique("consumer-test-dlq"),
        group: unique("consumer-test-group"),
    };
    create_topic(&t.topic, 3).await;
    create_topic(&t.dlq, 1).await;
    t
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("acks", "all")
        .set("message.max.bytes", "2097152")
        .create()
        .expect("producer")
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
}

async fn send_events(producer: &FutureProducer, topic: &str, source: &str, ids: &[Uuid]) {
    for (i, id) in ids.iter().enumerate() {
        // Recent timestamps: RETENTION_DAYS would delete old ones.
        let event = json!({"id": id, "level": "INFO", "message": format!("event {i}"), "source": source,
            "timestamp": chrono::Utc::now()});
        send(producer, topic, source, event.to_string().as_bytes()).await;
    }
}

async fn wait_for_rows(source: &str, expected: usize) -> Vec<Uuid> {
    let ids = eventually(
        &format!("{expected} rows for {source}"),
        Duration::from_secs(60),
        || async {
            let rows = rows_for_source(source);
            (rows.len() >= expected).then(|| rows.into_iter().map(|r| r.id).collect::<Vec<_>>())
        },
    )
    .await;
    // Give a late duplicate the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ids
}

#[tokio::test]
async fn stores_every_event_once_across_a_restart_and_replays() {
    let t = topics().await;
    let source = unique("consumer-src");
    let producer = producer();
    let first: Vec<Uuid> = (0..300).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &first).await;

    let app = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    let stored = wait_for_rows(&source, 300).await;
    assert_eq!(rows_for_source(&source).len(), 300);
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        first.iter().collect::<HashSet<_>>()
    );

    // Replaying ids already stored (a producer retry, a re-sent batch) adds nothing.
    send_events(&producer, &t.topic, &source, &first[..50]).await;
    let second: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &second).await;
    wait_for_rows(&source, 400).await;
    assert_eq!(
        rows_for_source(&source).len(),
        400,
        "replayed ids are stored once"
    );

    // A restart while events keep arriving: the new instance resumes from the
    // offsets in PostgreSQL and neither loses nor repeats anything. (kill -9 of the
    // real process is exercised against the stack setup.sh runs.)
    app.stop().await;
    let third: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &third).await;
    let app = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    wait_for_rows(&source, 500).await;
    let rows = rows_for_source(&source);
    assert_eq!(rows.len(), 500);
    assert_eq!(rows.iter().map(|r| r.id).collect::<HashSet<_>>().len(), 500);

    let (status, health) = get_json(format!("{}/actuator/health", app.base)).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "UP");
    app.stop().await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let t = topics().await;
    let source = unique("poison-src");
    let producer = producer();
    // A valid-looking event whose message is far over the 32 KiB limit (1 MiB).
    let huge =
        json!({"level": "INFO", "message": "x".repeat(1024 * 1024), "source": "s"}).to_string();
    let poison: [&[u8]; 6] = [
        b"not json at all",
        br#"{"level":"LOUD","message":"m","source":"s"}"#,
        br#"{"level":"INFO","message":42,"source":"s"}"#,
        b"\xff\xfe\xfd",
        b"",
        huge.as_bytes(),
    ];
    for payload in poison {
        send(&producer, &t.topic, &source, payload).await;
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

    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[t.dlq.as_str()]).expect("subscribe");
    let mut reasons = Vec::new();
    while reasons.len() < poison.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .expect("dead letters arrive")
            .expect("message");
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(
            header("dlq-original-topic").as_deref(),
            Some(t.topic.as_str())
        );
        assert!(header("dlq-original-offset").is_some());
        reasons.push(header("dlq-error").expect("reason"));
    }
    assert_eq!(reasons.len(), 6);
    assert!(
        reasons.iter().any(|r| r.contains("at most 32768 bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unknown level")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("empty")), "{reasons:?}");

    let metrics = crate::helpers::metrics_text(&format!("{}/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("dead_letter_messages_total 6"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_insert_mode_stores_the_same_rows_once() {
    for mode in [
        log_consumer::store::InsertMode::Values,
        log_consumer::store::InsertMode::Unnest,
        log_consumer::store::InsertMode::Copy,
    ] {
        let t = topics().await;
        let source = unique("insert-mode");
        let producer = producer();
        let ids: Vec<Uuid> = (0..120).map(|_| Uuid::now_v7()).collect();
        send_events(&producer, &t.topic, &source, &ids).await;
        // Half of them again: duplicates within and across batches are skipped.
        send_events(&producer, &t.topic, &source, &ids[..60]).await;
        let app = spawn_consumer_with(&t.topic, &t.dlq, &t.group, |s| {
            s.consumer.insert_mode = mode
        })
        .await;
        let stored = wait_for_rows(&source, 120).await;
        assert_eq!(stored.len(), 120, "{mode:?}");
        assert_eq!(
            stored.iter().collect::<HashSet<_>>(),
            ids.iter().collect::<HashSet<_>>(),
            "{mode:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn rebalances_while_streaming_lose_and_repeat_nothing() {
    let t = Topics {
        topic: unique("rebalance-test"),
        dlq: unique("rebalance-test-dlq"),
        group: unique("rebalance-group"),
    };
    create_topic(&t.topic, 6).await;
    create_topic(&t.dlq, 1).await;
    let source_prefix = unique("rebalance");
    // Many sources, so the keys spread over all six partitions.
    let sources: Vec<String> = (0..12).map(|i| format!("{source_prefix}-{i}")).collect();

    let first = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    let second = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    let stream = {
        let (topic, sources) = (t.topic.clone(), sources.clone());
        tokio::spawn(async move {
            let producer = producer();
            for round in 0..40 {
                for source in &sources {
                    let event = json!({"id": Uuid::now_v7(), "level": "INFO", "message": format!("round {round}"),
                        "source": source, "timestamp": chrono::Utc::now()});
                    send(&producer, &topic, source, event.to_string().as_bytes()).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let third = spawn_consumer(&t.topic, &t.dlq, &t.group).await; // joins mid-stream
    tokio::time::sleep(Duration::from_millis(700)).await;
    second.stop().await; // leaves mid-stream
    stream.await.expect("producer task");

    let expected = 40 * sources.len();
    let total = eventually(&format!("{expected} rows"), Duration::from_secs(90), || {
        let sources = sources.clone();
        async move {
            let n: usize = sources.iter().map(|s| rows_for_source(s).len()).sum();
            (n >= expected).then_some(n)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: usize = sources.iter().map(|s| rows_for_source(s).len()).sum();
    assert_eq!(
        (total, after),
        (expected, expected),
        "exactly once through two rebalances"
    );
    first.stop().await;
    third.stop().await;
}

#[tokio::test]
async fn retention_deletes_only_events_older_than_the_limit() {
    use diesel::prelude::*;
    use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
    let source = unique("retention");
    let mut conn = crate::helpers::db();
    for age_days in [40i64, 31, 29, 1] {
        diesel::sql_query(
            "INSERT INTO log_events (id, level, message, source, \"timestamp\", kafka_partition, kafka_offset) \
             VALUES ($1, 'INFO', 'm', $2, $3, 0, 0)",
        )
        .bind::<SqlUuid, _>(Uuid::now_v7())
        .bind::<Text, _>(&source)
        .bind::<Timestamptz, _>(chrono::Utc::now() - chrono::Duration::days(age_days))
        .execute(&mut conn)
        .expect("seed");
    }
    let settings = log_consumer::settings::Settings::defaults();
    let store = log_consumer::store::Store::new(
        &settings.postgres,
        "retention-test",
        "retention-test",
        settings.consumer.insert_mode,
    )
    .expect("store");
    let deleted = tokio::task::spawn_blocking(move || store.enforce_retention(30))
        .await
        .expect("task")
        .expect("retention");
    assert!(deleted >= 2, "at least this test's two old rows: {deleted}");
    assert_eq!(
        rows_for_source(&source).len(),
        2,
        "the 29- and 1-day-old events stay"
    );
}
