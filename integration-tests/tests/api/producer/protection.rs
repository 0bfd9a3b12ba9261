//! What protects the producer and Kafka per client: rate limits, the breaker, API keys.

use super::producer_on_own_topic_with;
use crate::helpers::{
    event, eventually, get_json, http, json, post_json, spawn_producer, unique, Running,
};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn over_the_rate_limit_answers_429_with_retry_after_counted_in_events() {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.rate_limit.events_per_second = 1;
        s.rate_limit.burst = 5;
    })
    .await;
    let client = http();
    // Five events without a level: charged before validation (a flood of invalid
    // events costs like any other) and answered without waiting for Kafka, so the
    // next request comes well within the second one token takes to refill.
    let batch: Vec<Value> = (0..5)
        .map(|i| json!({"message": format!("{i}"), "source": "rl"}))
        .collect();
    let response = client
        .post(format!("{}/producer/api/logs/batch", app.base))
        .json(&batch)
        .send()
        .await
        .expect("batch");
    assert_eq!(response.status(), 400, "a batch of 5 uses the whole burst");
    let response = client
        .post(format!("{}/producer/api/logs/ingest", app.base))
        .json(&event("rl", "INFO", "one more"))
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let (_, body) = json(response).await;
    assert_eq!(body["status"], 429);

    let metrics =
        crate::helpers::metrics_text(&format!("{}/producer/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("rate_limit_rejections_total{endpoint=\"ingest\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

/// A producer on a topic that does not exist (auto-create is off): every delivery fails,
/// like a broker that is away, without stopping the shared broker other tests use. Its
/// breaker opens after `failures` and stays open `open_ms` at first.
async fn producer_on_a_missing_topic(failures: u32, open_ms: u64) -> Running {
    spawn_producer(|s| {
        s.kafka.topic = unique("no-such-topic");
        s.producer.delivery_timeout_ms = 1000;
        s.breaker.failure_threshold = failures;
        s.breaker.open_ms = open_ms;
    })
    .await
}

#[tokio::test]
async fn a_missing_topic_opens_the_breaker_and_answers_503_without_any_2xx() {
    let app = producer_on_a_missing_topic(2, 60_000).await;
    let client = http();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let response = client
            .post(format!("{}/producer/api/logs/ingest", app.base))
            .json(&event("breaker", "INFO", &format!("{i}")))
            .send()
            .await
            .expect("ingest");
        statuses.push(response.status().as_u16());
        if i == 3 {
            assert!(response.headers().contains_key("retry-after"));
            let (_, body) = json(response).await;
            assert_eq!(body["status"], "unavailable", "{body}");
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 503),
        "never a 2xx for an undelivered event: {statuses:?}"
    );
    let (status, health) = get_json(format!("{}/producer/actuator/health", app.base)).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(
        health["components"]["circuitBreaker"]["details"]["state"], "open",
        "{health}"
    );
    app.stop().await;
}

/// `Retry-After` says what is left of the breaker's current open period, which doubles
/// when a probe fails: 1 s after the first failure, 2 s after the failed probe.
#[tokio::test]
async fn the_breakers_retry_after_grows_with_its_open_period() {
    let app = producer_on_a_missing_topic(1, 1000).await;
    let url = format!("{}/producer/api/logs/ingest", app.base);
    let retry_after = || {
        let request = http()
            .post(&url)
            .json(&event("breaker", "INFO", "m"))
            .send();
        async move {
            let response = request.await.expect("ingest");
            assert_eq!(
                response.status(),
                503,
                "never a 2xx for an undelivered event"
            );
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .expect("Retry-After in seconds")
        }
    };
    assert_eq!(retry_after().await, 1, "the first open period");
    // Once the first period is over the next request is the probe; it fails.
    eventually(
        "a failed probe to double the open period",
        Duration::from_secs(20),
        || async { (retry_after().await == 2).then_some(()) },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn with_api_keys_ingest_needs_a_valid_key_and_limits_are_per_key() {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.auth.api_keys = Some("key-a,key-b".parse().expect("infallible"));
        s.rate_limit.events_per_second = 1;
        s.rate_limit.burst = 2;
    })
    .await;
    let client = http();
    let url = format!("{}/producer/api/logs/ingest", app.base);
    let one = event("keys", "INFO", "m");

    let (status, body) = post_json(&url, &one).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("X-API-Key"),
        "{body}"
    );
    let send = |header: &'static str, value: &'static str| {
        client.post(&url).header(header, value).json(&one).send()
    };
    let (status, body) = json(send("X-API-Key", "key-c").await.expect("bad key")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains("key-c"),
        "the key is not echoed: {body}"
    );

    for _ in 0..2 {
        let r = send("X-API-Key", "key-a").await.expect("key a");
        assert_eq!(r.status(), 200);
    }
    let r = send("X-API-Key", "key-a").await.expect("key a");
    assert_eq!(r.status(), 429, "key-a spent its burst");
    let r = send("Authorization", "Bearer key-b").await.expect("key b");
    assert_eq!(r.status(), 200, "key-b has its own bucket");

    let health = client
        .get(format!("{}/producer/api/logs/health", app.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "liveness stays open");
    app.stop().await;
}

/// With API keys on, liveness is open by its registered route, not because a path ends in
/// `/health`: another path under the keyed scope that ends so still needs a key.
#[tokio::test]
async fn with_api_keys_only_the_liveness_route_is_open() {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.auth.api_keys = Some("key-a".parse().expect("infallible"));
    })
    .await;
    let (status, body) = get_json(format!("{}/producer/api/logs/health", app.base)).await;
    assert_eq!(status, 200, "{body}");
    for path in [
        "/producer/api/logs/x/health",
        "/producer/api/logs/ingest/health",
    ] {
        let (status, body) = get_json(format!("{}{path}", app.base)).await;
        assert_eq!(status, 401, "{path} is not the liveness route: {body}");
    }
    app.stop().await;
}
