//! Kafka stopped under the running stack (`./setup.sh stop kafka`): the producer never
//! answers 2xx for an event Kafka did not take, never hangs, opens its breaker (503 +
//! Retry-After), and closes it by itself once `./setup.sh start kafka` brings Kafka back.
//!
//! Its own test binary, so no other test runs while Kafka is away.

#[path = "api/helpers.rs"]
mod helpers;

use helpers::{
    event, eventually, get_json, json, require_infrastructure, rows_for_source, unique, Outage,
};
use std::time::{Duration, Instant};

const PRODUCER: &str = "http://127.0.0.1:8081";

#[tokio::test]
async fn producer_sheds_load_while_kafka_is_down_and_recovers_by_itself() {
    require_infrastructure();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let health = client
        .get(format!("{PRODUCER}/producer/actuator/health"))
        .send()
        .await;
    assert!(
        health.is_ok_and(|r| r.status().is_success()),
        "the stack's producer is not ready: run ./setup.sh"
    );
    let source = unique("outage");

    let outage = Outage::begin("kafka");
    let mut statuses = Vec::new();
    let mut longest = Duration::ZERO;
    let mut saw_retry_after = false;
    let outage_started = Instant::now();
    while outage_started.elapsed() < Duration::from_secs(15) {
        let started = Instant::now();
        let response = client
            .post(format!("{PRODUCER}/producer/api/logs/ingest"))
            .json(&event(&source, "ERROR", "during the outage"))
            .send()
            .await
            .expect("an answer, not a hang (client timeout 20 s)");
        longest = longest.max(started.elapsed());
        let status = response.status().as_u16();
        if status == 503 {
            saw_retry_after |= response.headers().contains_key("retry-after");
            let (_, body) = json(response).await;
            assert_eq!(body["status"], "unavailable", "{body}");
        }
        statuses.push(status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "during the outage: {} requests, longest answer {longest:?}",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 503),
        "only 503 while Kafka is away: {statuses:?}"
    );
    assert!(saw_retry_after, "503s carry Retry-After");
    let (status, health) = get_json(format!("{PRODUCER}/producer/actuator/health")).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(
        health["components"]["circuitBreaker"]["details"]["state"], "open",
        "{health}"
    );

    outage.end();
    let recovered = Instant::now();
    eventually(
        "the breaker to close once Kafka is back",
        Duration::from_secs(90),
        || {
            let client = client.clone();
            let source = source.clone();
            async move {
                let response = client
                    .post(format!("{PRODUCER}/producer/api/logs/ingest"))
                    .json(&event(&source, "INFO", "after the outage"))
                    .send()
                    .await
                    .ok()?;
                response.status().is_success().then_some(())
            }
        },
    )
    .await;
    println!(
        "first 2xx {:?} after Kafka was started again",
        recovered.elapsed()
    );

    // Exactly the one accepted event is stored: none of the 503s slipped through.
    eventually(
        "the accepted event to be stored",
        Duration::from_secs(60),
        || {
            let source = source.clone();
            async move { (!rows_for_source(&source).is_empty()).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rows_for_source(&source).len(), 1);
}
