//! The minute counts and `/histogram`: a consumer on a topic of its own stores events
//! with known timestamps and levels (and replays of some of them), and a gateway on
//! the same test database answers the histogram from the counts.

use crate::consumer::{producer, topics, wait_for_rows};
use crate::helpers::{counted_events_in, db, get_json, spawn_consumer, spawn_gateway, unique};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

async fn send(producer: &FutureProducer, topic: &str, event: &Value) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(&event.to_string()),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
}

fn bucket_counts(histogram: &Value, level: &str) -> Vec<i64> {
    histogram["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["counts"][level].as_i64().unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn the_histogram_counts_each_stored_event_once_per_bucket_and_level() {
    let t = topics().await;
    let source = unique("histogram");
    let producer = producer();
    let base: DateTime<Utc> = (Utc::now() - TimeDelta::hours(1))
        .duration_trunc(TimeDelta::minutes(10))
        .expect("minute");
    // (minute after base, level, how many); two of the ERRORs at minute 7 say "disk full".
    let plan = [
        (0, "INFO", 3),
        (0, "ERROR", 1),
        (1, "WARN", 2),
        (7, "ERROR", 4),
    ];
    let mut events = Vec::new();
    for (minute, level, count) in plan {
        for i in 0..count {
            let message = if minute == 7 && i < 2 {
                format!("disk full on db-{i}")
            } else {
                format!("event {minute}-{i}")
            };
            events.push(
                json!({"id": Uuid::now_v7(), "level": level, "message": message,
                "source": source,
                "timestamp": base + TimeDelta::minutes(minute) + TimeDelta::seconds(i * 7)}),
            );
        }
    }
    for event in &events {
        send(&producer, &t.topic, event).await;
    }
    // Replays of stored ids (a producer retry): no row, and no count, added.
    for event in &events[..5] {
        send(&producer, &t.topic, event).await;
    }
    let consumer = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    wait_for_rows(&source, events.len()).await;
    assert_eq!(
        counted_events_in(&mut db(), &source),
        events.len() as i64,
        "one count per stored row"
    );

    let gateway = spawn_gateway(|_| {}).await;
    let url = |extra: &str| {
        format!(
            "{}/gateway/api/query/histogram?source={source}&startTime={}&endTime={}{extra}",
            gateway.base,
            base.to_rfc3339().replace('+', "%2B"),
            (base + TimeDelta::minutes(10))
                .to_rfc3339()
                .replace('+', "%2B"),
        )
    };

    let (status, h) = get_json(url("&interval=5m")).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["intervalSeconds"], 300, "{h}");
    assert_eq!(h["exact"], true, "{h}");
    let totals: Vec<i64> = h["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["total"].as_i64().expect("total"))
        .collect();
    assert_eq!(totals, [6, 4], "{h}");
    assert_eq!(bucket_counts(&h, "ERROR"), [1, 4], "{h}");
    assert_eq!(bucket_counts(&h, "WARN"), [2, 0], "{h}");

    let (_, h) = get_json(url("&interval=1m")).await;
    assert_eq!(
        bucket_counts(&h, "INFO"),
        [3, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "{h}"
    );
    assert_eq!(
        bucket_counts(&h, "ERROR"),
        [1, 0, 0, 0, 0, 0, 0, 4, 0, 0],
        "{h}"
    );

    let (_, h) = get_json(url("&interval=5m&level=error")).await;
    assert_eq!(bucket_counts(&h, "ERROR"), [1, 4], "{h}");
    assert_eq!(
        bucket_counts(&h, "INFO"),
        [0, 0],
        "only the level asked for: {h}"
    );

    let (status, h) = get_json(url("&interval=5m&query=disk%20full")).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(
        bucket_counts(&h, "ERROR"),
        [0, 2],
        "matching events only: {h}"
    );
    assert_eq!(h["exact"], true, "{h}");

    let (status, body) = get_json(url("&interval=7m")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "interval", "{body}");

    gateway.stop().await;
    consumer.stop().await;
}
