//! PostgreSQL stopped under the running stack (`./setup.sh stop postgres`): the
//! consumer keeps every event and retries until the database is back; the gateway
//! answers 503 with Retry-After instead of hanging; both recover by themselves. A
//! rebalance during the outage leaves the partitions waiting for their claim (their
//! stored offsets are in PostgreSQL) without blocking the consumer, and they start
//! from those offsets once the database is back.
//!
//! Its own test binary, so no other test runs while PostgreSQL is away.

#[path = "api/helpers.rs"]
mod helpers;

use helpers::{eventually, json, require_infrastructure, stack, unique, Outage, CONSUMER, GATEWAY};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};

/// The stack consumer's group and topic (the services' defaults).
const GROUP: &str = "log-consumer-group";
const TOPIC: &str = "log-events";

/// Joins the stack consumer's group until Kafka gives this member partitions, then
/// leaves: two rebalances for the stack consumer. It commits nothing.
async fn join_and_leave_the_consumer_group() {
    tokio::task::spawn_blocking(|| {
        let member: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", helpers::KAFKA)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .create()
            .expect("test consumer");
        member.subscribe(&[TOPIC]).expect("subscribe");
        let started = Instant::now();
        while member.assignment().map_or(0, |a| a.count()) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the stack consumer never let the group rebalance while PostgreSQL was down"
            );
            let _ = member.poll(Duration::from_millis(200));
        }
        // Dropping the consumer closes it: it leaves the group at once.
    })
    .await
    .expect("test consumer task");
}

/// How many partitions the stack's topic has.
async fn topic_partitions() -> usize {
    tokio::task::spawn_blocking(|| {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", helpers::KAFKA)
            .create()
            .expect("metadata client");
        let metadata = client
            .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
            .expect("topic metadata");
        metadata.topics()[0].partitions().len()
    })
    .await
    .expect("metadata task")
}

/// The stack consumer's Kafka health details.
async fn consumer_kafka_details(client: &reqwest::Client) -> Option<serde_json::Value> {
    let response = client
        .get(format!("{CONSUMER}/actuator/health"))
        .send()
        .await
        .ok()?;
    let (_, body) = json(response).await;
    Some(body["components"]["kafka"]["details"].clone())
}

#[tokio::test]
async fn events_wait_for_postgres_and_queries_fail_fast_meanwhile() {
    require_infrastructure();
    let client = helpers::http_with_timeout(Duration::from_secs(20));
    let source = unique("pg-outage");

    // More than the writers can hold (a batch in each one's hands and one queued, a
    // batch gathering): the dispatcher has to wait for them, and must keep polling
    // Kafka meanwhile, or the rebalance below would wait for PostgreSQL too.
    const BATCHES: usize = 30;
    const PER_BATCH: usize = 2_000;
    const EVENTS: usize = BATCHES * PER_BATCH;
    let outage = Outage::begin("postgres");
    for i in 0..BATCHES {
        // Ingest does not need PostgreSQL.
        stack::ingest_batch(&source, "INFO", PER_BATCH, |j| format!("{i}-{j}")).await;
    }

    let consumer_health = eventually(
        "the consumer to report PostgreSQL down",
        Duration::from_secs(30),
        || {
            let client = client.clone();
            async move {
                let (status, body) = json(
                    client
                        .get(format!("{CONSUMER}/actuator/health"))
                        .send()
                        .await
                        .ok()?,
                )
                .await;
                (status == 503).then_some(body)
            }
        },
    )
    .await;
    assert_eq!(
        consumer_health["components"]["postgres"]["status"], "DOWN",
        "{consumer_health}"
    );

    // A rebalance now: the stack consumer is handed its partitions back while the
    // offsets it must start from are out of reach. It keeps answering, owns nothing
    // yet, and says which partitions wait for their claim.
    join_and_leave_the_consumer_group().await;
    let waiting = eventually(
        "the consumer's partitions to wait for their claim",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let details = consumer_kafka_details(&client).await?;
                let waiting = details["awaitingClaim"].as_array()?.len();
                (waiting > 0 && details["assignedPartitions"].as_array()?.is_empty())
                    .then_some(waiting)
            }
        },
    )
    .await;
    println!("after a rebalance during the outage: {waiting} partitions wait for their claim");

    let mut longest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let response = client
            .get(format!(
                "{GATEWAY}/gateway/api/query/logs?source={source}&size=7"
            ))
            .send()
            .await
            .expect("an answer, not a hang");
        longest = longest.max(started.elapsed());
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    println!("gateway during the outage: longest answer {longest:?}");

    outage.end();
    let rows = eventually(
        "every event stored after PostgreSQL is back",
        Duration::from_secs(90),
        || {
            let source = source.clone();
            async move {
                let n = stack::rows_for_source(&source).len();
                (n >= EVENTS).then_some(n)
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (rows, stack::rows_for_source(&source).len()),
        (EVENTS, EVENTS),
        "nothing lost, nothing doubled"
    );
    // The rebalance that came while the claim waited (the test member leaving) was
    // held back by librdkafka until the claim was answered; then the consumer owns
    // the whole topic again, every partition claimed.
    let partitions = topic_partitions().await;
    eventually(
        "the consumer to own every partition of the topic again",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let details = consumer_kafka_details(&client).await?;
                let owned = details["assignedPartitions"].as_array()?.len();
                let waiting = details["awaitingClaim"].as_array()?.len();
                (owned == partitions && waiting == 0).then_some(())
            }
        },
    )
    .await;

    eventually(
        "the gateway to answer again",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            let source = source.clone();
            async move {
                let r = client
                    .get(format!(
                        "{GATEWAY}/gateway/api/query/logs?source={source}&size=1000"
                    ))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            }
        },
    )
    .await;
}
