//! The stack `./setup.sh` started: health as the contract says, and the walking
//! skeleton from curl to PostgreSQL and back through the gateway.

use crate::helpers::{
    eventually, get_json, http, json, post_json, require_infrastructure, stack, unique, CONSUMER,
    GATEWAY, PRODUCER,
};
use std::time::{Duration, Instant};

/// Fails fast with what to do when setup.sh's services are not running.
async fn require_stack() {
    require_infrastructure();
    let client = crate::helpers::http_with_timeout(Duration::from_secs(3));
    for url in [
        format!("{PRODUCER}/producer/api/logs/health"),
        format!("{CONSUMER}/actuator/health"),
        format!("{GATEWAY}/gateway/api/query/health"),
    ] {
        if client.get(&url).send().await.is_err() {
            panic!("{url} does not answer: start the stack with ./setup.sh (./setup.sh status shows what is down)");
        }
    }
}

#[tokio::test]
async fn every_service_reports_health_as_the_contract_says() {
    require_stack().await;
    for (url, service) in [
        (
            format!("{PRODUCER}/producer/api/logs/health"),
            "log-producer",
        ),
        (format!("{GATEWAY}/gateway/api/query/health"), "api-gateway"),
    ] {
        let (status, body) = get_json(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["status"], "healthy", "{url}: {body}");
        assert_eq!(body["service"], service, "{url}: {body}");
    }
    for (url, service) in [
        (
            format!("{PRODUCER}/producer/actuator/health"),
            "log-producer",
        ),
        (format!("{CONSUMER}/actuator/health"), "log-consumer"),
        (format!("{GATEWAY}/gateway/actuator/health"), "api-gateway"),
    ] {
        let (status, body) = get_json(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(body["status"], "UP", "{url}: {body}");
        assert_eq!(body["service"], service, "{url}: {body}");
    }
}

#[tokio::test]
async fn every_service_exposes_prometheus_metrics() {
    require_stack().await;
    let client = http();
    for (url, metric) in [
        (
            format!("{PRODUCER}/producer/actuator/prometheus"),
            "circuit_breaker_state",
        ),
        (
            format!("{CONSUMER}/actuator/prometheus"),
            "kafka_consumer_assigned_partitions",
        ),
        (
            format!("{GATEWAY}/gateway/actuator/prometheus"),
            "circuit_breaker_state",
        ),
    ] {
        let response = client.get(&url).send().await.expect("request");
        assert_eq!(response.status(), 200, "{url}");
        let text = response.text().await.expect("body");
        assert!(text.contains(metric), "{url} lacks {metric}:\n{text}");
    }
}

#[tokio::test]
async fn an_ingested_event_is_queryable_through_the_gateway() {
    require_stack().await;
    let client = http();
    let source = unique("e2e-single");
    let started = Instant::now();
    let (status, body) = post_json(
        format!("{PRODUCER}/producer/api/logs/ingest"),
        &serde_json::json!({
            "level": "error", "message": "Database connection failed", "source": source,
            "metadata": {"userId": "12345", "duration": 5000}, "correlationId": "corr-1"
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted");
    let id = body["logId"].as_str().expect("logId").to_owned();

    let url = format!("{GATEWAY}/gateway/api/query/logs?source={source}");
    let page = eventually("the event to be queryable", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let (_, page) = json(client.get(&url).send().await.ok()?).await;
            (page["totalElements"] == 1).then_some(page)
        }
    })
    .await;
    println!(
        "ingest -> queryable through the gateway in {:?}",
        started.elapsed()
    );
    let stored = &page["content"][0];
    assert_eq!(stored["id"], id.as_str());
    assert_eq!(stored["level"], "ERROR");
    assert_eq!(stored["message"], "Database connection failed");
    assert_eq!(stored["metadata"]["duration"], 5000);
    assert_eq!(stored["correlationId"], "corr-1");

    let (status, by_id) = get_json(format!("{GATEWAY}/gateway/api/query/logs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id["source"], source.as_str());
}

#[tokio::test]
async fn a_batch_arrives_complete_and_exactly_once() {
    require_stack().await;
    let client = http();
    let source = unique("e2e-batch");
    let body = stack::ingest_batch(&source, "INFO", 200, |i| format!("event {i}")).await;
    assert_eq!(body["successCount"], 200, "{body}");
    assert_eq!(body["failureCount"], 0, "{body}");

    let url = format!("{GATEWAY}/gateway/api/query/logs?source={source}&size=1000");
    let page = eventually(
        "all 200 events to be stored",
        Duration::from_secs(30),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let (_, page) = json(client.get(&url).send().await.ok()?).await;
                (page["totalElements"] == 200).then_some(page)
            }
        },
    )
    .await;
    let mut messages: Vec<String> = page["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_owned())
        .collect();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), 200, "every event once");
    // Stays at 200: nothing arrives twice later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stack::rows_for_source(&source).len(), 200);
}

/// The curl examples of the seed's README, as written there (host and port aside),
/// against the stack: clients of the Spring original keep working.
#[tokio::test]
async fn the_seed_readme_examples_work_as_written() {
    require_stack().await;
    let client = http();
    for url in [
        format!("{PRODUCER}/producer/api/logs/health"),
        format!("{CONSUMER}/actuator/health"),
        format!("{GATEWAY}/gateway/api/query/health"),
        format!("{PRODUCER}/producer/actuator/prometheus"),
        format!("{CONSUMER}/actuator/prometheus"),
        format!("{GATEWAY}/gateway/actuator/prometheus"),
    ] {
        assert_eq!(
            client.get(&url).send().await.expect("get").status(),
            200,
            "{url}"
        );
    }

    let (status, single) = json(
        client
            .post(format!("{PRODUCER}/producer/api/logs/ingest"))
            .header("Content-Type", "application/json")
            .body(
                r#"{
    "level": "ERROR",
    "message": "Database connection failed",
    "source": "user-service",
    "metadata": {
      "userId": "12345",
      "operation": "login",
      "duration": 5000
    }
  }"#,
            )
            .send()
            .await
            .expect("single"),
    )
    .await;
    assert_eq!(status, 200, "{single}");
    let id = single["logId"].as_str().expect("logId").to_owned();

    let (status, batch) = json(
        client
            .post(format!("{PRODUCER}/producer/api/logs/batch"))
            .header("Content-Type", "application/json")
            .body(
                r#"[
    {
      "level": "INFO",
      "message": "User logged in",
      "source": "auth-service"
    },
    {
      "level": "WARN", 
      "message": "Rate limit approaching",
      "source": "api-gateway"
    }
  ]"#,
            )
            .send()
            .await
            .expect("batch"),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["successCount"], 2);

    let (status, range) = get_json(format!("{GATEWAY}/gateway/api/query/logs?startTime=2024-01-01T00:00:00&endTime=2024-01-02T00:00:00")).await;
    assert_eq!(status, 200, "{range}");
    for field in [
        "content",
        "number",
        "size",
        "totalElements",
        "totalPages",
        "numberOfElements",
        "first",
        "last",
        "empty",
    ] {
        assert!(range.get(field).is_some(), "page field {field}: {range}");
    }

    // Level and source together (the seed dropped `source` when `level` was given).
    let filtered = eventually("the seed's event under level+source", Duration::from_secs(30), || {
        let client = client.clone();
        let id = id.clone();
        async move {
            let url = format!("{GATEWAY}/gateway/api/query/logs?level=ERROR&source=user-service&page=0&size=50");
            let (_, page) = json(client.get(url).send().await.ok()?).await;
            let content = page["content"].as_array()?.clone();
            content.iter().any(|e| e["id"] == id.as_str()).then_some(content)
        }
    })
    .await;
    assert!(filtered
        .iter()
        .all(|e| e["level"] == "ERROR" && e["source"] == "user-service"));

    let found = eventually("the seed's search to find the event", Duration::from_secs(30), || {
        let client = client.clone();
        let id = id.clone();
        async move {
            let url = format!("{GATEWAY}/gateway/api/query/search?query=database&startTime=2024-01-01T00:00:00");
            let (_, page) = json(client.get(url).send().await.ok()?).await;
            let content = page["content"].as_array()?.clone();
            content.iter().any(|e| e["id"] == id.as_str()).then_some(content)
        }
    })
    .await;
    assert!(found.iter().all(|e| e["message"]
        .as_str()
        .unwrap_or("")
        .to_lowercase()
        .contains("database")));

    let (status, stats) = get_json(format!("{GATEWAY}/gateway/api/query/stats?hoursBack=24")).await;
    assert_eq!(status, 200, "{stats}");
    for field in ["totalLogs", "levelCounts", "sourceCounts", "timeRange"] {
        assert!(stats.get(field).is_some(), "stats field {field}: {stats}");
    }
}
