//! Two consumer processes of two writers each share a topic; one is killed with -9 in
//! the middle of a stream and the other takes its partitions over. Afterwards every
//! id is stored once and every partition's stored offset is the topic's end.
//!
//! The consumers are the real `log-consumer` binary (the one `./setup.sh up` builds),
//! so the kill is a real SIGKILL: open transactions die with the connection.

#[path = "api/helpers.rs"]
mod helpers;

use diesel::prelude::*;
use helpers::{create_topic, eventually, get_json, metrics_text, unique, KAFKA};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

const PARTITIONS: i32 = 6;
const ROUNDS: usize = 12;
const PER_ROUND: usize = 2_500;

/// A `log-consumer` process, killed (SIGKILL) when dropped.
struct ConsumerProcess {
    child: Child,
    log: PathBuf,
    base: String,
}

impl ConsumerProcess {
    async fn start(name: &str, topic: &str, dlq: &str, group: &str) -> ConsumerProcess {
        let binary = helpers::release_binary("log-consumer");
        let log = std::env::temp_dir().join(format!("{}.log", unique(name)));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&binary)
            .env("SERVER_PORT", "0")
            .env("POSTGRES_URL", helpers::test_database_url())
            .env("KAFKA_TOPIC", topic)
            .env("KAFKA_DLQ_TOPIC", dlq)
            .env("KAFKA_PRIORITY_TOPIC", helpers::priority_topic_of(topic))
            .env("KAFKA_GROUP_ID", group)
            .env("CONSUMER_WRITERS", "2")
            .env("CONSUMER_BATCH_MAX_WAIT_MS", "50")
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("RETENTION_DAYS", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let port = eventually(
            &format!("{name} to listen (log: {})", log.display()),
            Duration::from_secs(60),
            || {
                let log = log.clone();
                async move { listening_port(&std::fs::read_to_string(log).unwrap_or_default()) }
            },
        )
        .await;
        ConsumerProcess {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn assigned_partitions(&self) -> usize {
        let (_, health) = get_json(format!("{}/actuator/health", self.base)).await;
        health["components"]["kafka"]["details"]["assignedPartitions"]
            .as_array()
            .map_or(0, Vec::len)
    }

    async fn rows_stored(&self) -> u64 {
        let text = metrics_text(&format!("{}/actuator/prometheus", self.base)).await;
        text.lines()
            .find_map(|l| l.strip_prefix("log_events_stored_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("consumer log kept at {}", self.log.display());
    }
}

/// The port from the consumer's "log-consumer listening" line (JSON logs, fields flattened).
fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .filter(|l| l.contains("log-consumer listening"))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
}

fn count_rows(source: &str) -> (i64, i64) {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        total: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        distinct_ids: i64,
    }
    let c: Counts = diesel::sql_query(
        "SELECT count(*) AS total, count(DISTINCT id) AS distinct_ids FROM log_events WHERE source = $1",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .get_result(&mut helpers::db())
    .expect("count");
    (c.total, c.distinct_ids)
}

fn stored_offsets(group: &str, topic: &str) -> BTreeMap<i32, Option<i64>> {
    use log_store::schema::consumer_offsets::dsl as o;
    o::consumer_offsets
        .filter(o::consumer_group.eq(group))
        .filter(o::topic.eq(topic))
        .select((o::partition, o::next_offset))
        .load::<(i32, Option<i64>)>(&mut helpers::db())
        .expect("offsets")
        .into_iter()
        .collect()
}

fn topic_ends(topic: &str) -> BTreeMap<i32, Option<i64>> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .expect("client");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = client
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, Some(high))
        })
        .collect()
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_is_taken_over_and_every_event_is_stored_once() {
    let (topic, dlq, group) = (
        unique("takeover"),
        unique("takeover-dlq"),
        unique("takeover-group"),
    );
    create_topic(&topic, PARTITIONS).await;
    create_topic(&dlq, 1).await;
    let source = unique("takeover-src");

    let mut doomed = ConsumerProcess::start("doomed", &topic, &dlq, &group).await;
    let survivor = ConsumerProcess::start("survivor", &topic, &dlq, &group).await;
    eventually(
        "both instances to own partitions",
        Duration::from_secs(60),
        || async {
            (doomed.assigned_partitions().await > 0 && survivor.assigned_partitions().await > 0)
                .then_some(())
        },
    )
    .await;

    let stream = {
        let (topic, source) = (topic.clone(), source.clone());
        tokio::spawn(async move {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", KAFKA)
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create()
                .expect("producer");
            for round in 0..ROUNDS {
                let deliveries: Vec<_> = (0..PER_ROUND)
                    .map(|i| {
                        let event = serde_json::json!({"id": Uuid::now_v7(), "level": "INFO",
                            "message": format!("round {round} event {i}"), "source": source,
                            "timestamp": chrono::Utc::now()});
                        let key = format!("key-{i}");
                        producer
                            .send_result(
                                FutureRecord::to(&topic)
                                    .key(key.as_str())
                                    .payload(&event.to_string()),
                            )
                            .expect("queued")
                    })
                    .collect();
                for delivery in deliveries {
                    delivery.await.expect("delivered").expect("acked");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            producer.flush(Duration::from_secs(10)).expect("flushed");
        })
    };

    // Kill it once it has written part of the stream, so it dies with batches in hand.
    eventually(
        "the doomed instance to store rows",
        Duration::from_secs(60),
        || async { (doomed.rows_stored().await >= 2 * PER_ROUND as u64).then_some(()) },
    )
    .await;
    doomed.kill_9();
    eventually(
        "the survivor to own every partition",
        Duration::from_secs(60),
        || async { (survivor.assigned_partitions().await == PARTITIONS as usize).then_some(()) },
    )
    .await;
    stream.await.expect("producer task");

    let expected = (ROUNDS * PER_ROUND) as i64;
    eventually(
        &format!("{expected} rows"),
        Duration::from_secs(120),
        || {
            let source = source.clone();
            async move { (count_rows(&source).0 >= expected).then_some(()) }
        },
    )
    .await;
    let ends = topic_ends(&topic);
    eventually(
        "every stored offset at the topic's end",
        Duration::from_secs(30),
        || {
            let (group, topic, ends) = (group.clone(), topic.clone(), ends.clone());
            async move { (stored_offsets(&group, &topic) == ends).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count_rows(&source),
        (expected, expected),
        "every id stored, and stored once"
    );
    assert_eq!(stored_offsets(&group, &topic), ends);
}
