//! The producer on port 0 against the real broker, writing to a topic of its own, by
//! topic: what it ingests, what it tells a client, how it protects itself, admission of
//! request bytes, and connections.

mod admission;
mod connections;
mod contract;
mod ingest;
mod protection;

use crate::helpers::{create_topic, spawn_producer, unique, KAFKA};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::Value;
use std::time::Duration;

/// What a test reads back from the producer's topic.
struct Record {
    key: Vec<u8>,
    partition: i32,
    event: Value,
    id_header: Option<String>,
}

/// Reads exactly `expected` records from `topic` (and waits a little for extras).
async fn read_back(topic: &str, expected: usize) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("group.id", unique("test-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // After the expected count, keep listening briefly: extras would be duplicates.
        let wait_until = if records.len() >= expected {
            tokio::time::Instant::now() + Duration::from_secs(2)
        } else {
            deadline
        };
        match tokio::time::timeout_at(wait_until, consumer.recv()).await {
            Ok(Ok(message)) => records.push(Record {
                key: message.key().unwrap_or_default().to_vec(),
                partition: message.partition(),
                event: serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("JSON payload"),
                id_header: message.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "event-id")
                        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                }),
            }),
            Ok(Err(e)) => panic!("read back failed: {e}"),
            Err(_) => break,
        }
    }
    records
}

async fn producer_on_own_topic() -> (crate::helpers::Running, String) {
    producer_on_own_topic_with(|_| {}).await
}

/// The producer on a fresh 3-partition topic of its own, with `configure` applied.
async fn producer_on_own_topic_with(
    configure: impl FnOnce(&mut log_producer::settings::Settings),
) -> (crate::helpers::Running, String) {
    let topic = unique("producer-test");
    create_topic(&topic, 3).await;
    let t = topic.clone();
    let app = spawn_producer(move |s| {
        s.kafka.topic = t;
        configure(s);
    })
    .await;
    (app, topic)
}
