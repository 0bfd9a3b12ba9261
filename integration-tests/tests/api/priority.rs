//! The priority lane, on topics, a dead-letter topic and a consumer group of each
//! test's own: FATAL and ERROR are read from their own topic by a pipeline of their
//! own, so they are stored ahead of a normal backlog, and the normal topic still
//! drains while priority traffic keeps coming.

use crate::consumer::{producer, topics};
use crate::helpers::{
    db, ensure_topic, eventually, priority_topic_of, rows_for_source, spawn_consumer, unique, KAFKA,
};
use diesel::prelude::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Writes `count` events of `level` straight to `topic` (as any Kafka client could),
/// queued together and then every acknowledgement awaited.
async fn send_backlog(
    producer: &FutureProducer,
    topic: &str,
    source: &str,
    level: &str,
    count: usize,
) {
    for chunk_start in (0..count).step_by(20_000) {
        let deliveries: Vec<_> = (chunk_start..count.min(chunk_start + 20_000))
            .map(|i| {
                let event = json!({"level": level, "message": format!("{level} {i}"), "source": source,
                    "timestamp": chrono::Utc::now()});
                producer
                    .send_result(FutureRecord::<(), _>::to(topic).payload(&event.to_string()))
                    .map_err(|(e, _)| e)
                    .expect("queued")
            })
            .collect();
        for delivery in deliveries {
            delivery
                .await
                .expect("delivered")
                .map_err(|(e, _)| e)
                .expect("acknowledged");
        }
    }
}

/// ERROR and INFO rows of `source`, counted in one snapshot.
fn level_counts(source: &str) -> (i64, i64) {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        errors: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        infos: i64,
    }
    let counts: Counts = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE level = 'ERROR') AS errors, \
                count(*) FILTER (WHERE level = 'INFO') AS infos \
         FROM log_events WHERE source = $1",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .get_result(&mut db())
    .expect("count rows");
    (counts.errors, counts.infos)
}

#[tokio::test]
async fn an_error_sent_after_a_normal_backlog_is_stored_before_the_backlog_is() {
    const BACKLOG: i64 = 150_000;
    let t = topics().await;
    let priority = priority_topic_of(&t.topic);
    ensure_topic(&priority, 2).await;
    let source = unique("priority-src");
    let producer = producer();
    // The consumer is not running yet: the backlog waits in Kafka, and the ERROR is
    // written after all of it.
    send_backlog(&producer, &t.topic, &source, "INFO", BACKLOG as usize).await;
    send_backlog(&producer, &priority, &source, "ERROR", 1).await;

    let _consumer = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    let infos_when_the_error_showed =
        eventually("the ERROR to be stored", Duration::from_secs(60), || {
            let source = source.clone();
            async move {
                let (errors, infos) = level_counts(&source);
                (errors == 1).then_some(infos)
            }
        })
        .await;
    assert!(
        infos_when_the_error_showed < BACKLOG,
        "the ERROR became visible only after the whole INFO backlog ({infos_when_the_error_showed} rows)"
    );
    eventually("the backlog to drain", Duration::from_secs(120), || {
        let source = source.clone();
        async move { (level_counts(&source) == (1, BACKLOG)).then_some(()) }
    })
    .await;
    let rows = rows_for_source(&source);
    assert!(
        rows.iter().all(|r| (r.level == "ERROR") == (r.lane == 1)),
        "each row records the topic it came from"
    );
}

#[tokio::test]
async fn the_normal_topic_drains_while_priority_traffic_keeps_coming() {
    const BACKLOG: i64 = 60_000;
    let t = topics().await;
    let priority = priority_topic_of(&t.topic);
    ensure_topic(&priority, 2).await;
    let source = unique("starve-src");
    let _consumer = spawn_consumer(&t.topic, &t.dlq, &t.group).await;

    // Steady priority traffic (about 2,000 events a second) until told to stop, for
    // two minutes at most.
    let sending = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (sending, sent, priority, source) = (
            sending.clone(),
            sent.clone(),
            priority.clone(),
            source.clone(),
        );
        tokio::spawn(async move {
            let producer = producer();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while sending.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
                send_backlog(&producer, &priority, &source, "ERROR", 100).await;
                sent.fetch_add(100, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    send_backlog(&producer(), &t.topic, &source, "INFO", BACKLOG as usize).await;
    eventually(
        "the INFO backlog to drain",
        Duration::from_secs(100),
        || {
            let source = source.clone();
            async move { (level_counts(&source).1 == BACKLOG).then_some(()) }
        },
    )
    .await;
    assert!(
        !sender.is_finished(),
        "priority traffic was still flowing when the normal backlog had drained"
    );
    sending.store(false, Ordering::SeqCst);
    sender.await.expect("sender");
    let sent = sent.load(Ordering::SeqCst) as i64;
    assert!(sent > 0);
    eventually("every ERROR stored", Duration::from_secs(60), || {
        let source = source.clone();
        async move { (level_counts(&source) == (sent, BACKLOG)).then_some(()) }
    })
    .await;
    let ids: HashSet<_> = rows_for_source(&source).into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len() as i64, sent + BACKLOG, "each event once");
}

#[tokio::test]
async fn poison_on_the_priority_topic_is_dead_lettered_with_its_topic_and_the_lane_moves_on() {
    let t = topics().await;
    let priority = priority_topic_of(&t.topic);
    ensure_topic(&priority, 2).await;
    let source = unique("priority-poison");
    let producer = producer();
    producer
        .send(
            FutureRecord::<(), _>::to(&priority)
                .partition(0)
                .payload(&b"{not json"[..]),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    let event = json!({"level": "FATAL", "message": "after the poison", "source": source});
    producer
        .send(
            FutureRecord::<(), _>::to(&priority)
                .partition(0)
                .payload(&event.to_string()),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
    let _consumer = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    eventually(
        "the FATAL after the poison",
        Duration::from_secs(60),
        || {
            let source = source.clone();
            async move { (rows_for_source(&source).len() == 1).then_some(()) }
        },
    )
    .await;

    let dlq: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", unique("priority-dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("DLQ reader");
    dlq.subscribe(&[&t.dlq]).expect("subscribe");
    let letter = tokio::time::timeout(Duration::from_secs(30), dlq.recv())
        .await
        .expect("a dead letter within 30 s")
        .expect("read");
    assert_eq!(letter.payload(), Some(&b"{not json"[..]));
    let header = |name: &str| {
        letter
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(
        header("dlq-original-topic").as_deref(),
        Some(priority.as_str())
    );
    assert_eq!(header("dlq-original-partition").as_deref(), Some("0"));
    assert_eq!(header("dlq-original-offset").as_deref(), Some("0"));
}
