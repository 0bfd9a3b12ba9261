//! PostgreSQL stopped under the running stack (`./setup.sh stop postgres`): the
//! consumer keeps every event and retries until the database is back; the gateway
//! answers 503 with Retry-After instead of hanging; both recover by themselves.
//!
//! Its own test binary, so no other test runs while PostgreSQL is away.

#[path = "api/helpers.rs"]
mod helpers;

use helpers::{
    event, eventually, json, post_json, require_infrastructure, rows_for_source, unique, Outage,
};
use std::time::{Duration, Instant};

const PRODUCER: &str = "http://127.0.0.1:8081";
const CONSUMER: &str = "http://127.0.0.1:8082";
const GATEWAY: &str = "http://127.0.0.1:8080";

#[tokio::test]
async fn events_wait_for_postgres_and_queries_fail_fast_meanwhile() {
    require_infrastructure();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let source = unique("pg-outage");

    let outage = Outage::begin("postgres");
    for i in 0..5 {
        let batch: Vec<_> = (0..100)
            .map(|j| event(&source, "INFO", &format!("{i}-{j}")))
            .collect();
        let (status, body) = post_json(format!("{PRODUCER}/producer/api/logs/batch"), &batch).await;
        assert_eq!(status, 200, "ingest does not need PostgreSQL: {body}");
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
        "all 500 events stored after PostgreSQL is back",
        Duration::from_secs(90),
        || {
            let source = source.clone();
            async move {
                let n = rows_for_source(&source).len();
                (n >= 500).then_some(n)
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        (rows, rows_for_source(&source).len()),
        (500, 500),
        "nothing lost, nothing doubled"
    );

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
