//! The producer on port 0 against the real broker, writing to a topic of its own.

use crate::helpers::{
    create_topic, event, get_json, http, json, post_json, spawn_producer, unique, KAFKA,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

/// What a test reads back from the producer's topic.
struct Record {
    key: String,
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
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
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

#[tokio::test]
async fn single_event_is_acked_normalised_and_carries_its_id() {
    let (app, topic) = producer_on_own_topic().await;
    let (status, body) = post_json(
        format!("{}/producer/api/logs/ingest", app.base),
        &json!({"level": "warning", "message": "disk almost full", "source": "disk-svc",
                "timestamp": "2024-01-01T12:00:00+02:00", "correlation_id": "c-9"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["logId"].as_str().expect("logId").to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&id).expect("uuid").get_version_num(),
        7,
        "time-ordered id"
    );

    let records = read_back(&topic, 1).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(
        record.key, "",
        "no key: the sticky partitioner spreads the load"
    );
    assert_eq!(record.id_header.as_deref(), Some(id.as_str()));
    assert_eq!(record.event["level"], "WARN");
    assert_eq!(record.event["timestamp"], "2024-01-01T10:00:00Z");
    assert_eq!(record.event["correlationId"], "c-9");
    app.stop().await;
}

#[tokio::test]
async fn batch_sends_every_valid_event_once_and_lists_the_invalid_ones() {
    let (app, topic) = producer_on_own_topic().await;
    let mut events: Vec<Value> = (0..300)
        .map(|i| event(&format!("svc-{}", i % 7), "INFO", &format!("m{i}")))
        .collect();
    events[10] = json!({"level": "LOUD", "message": "x", "source": "s"});
    events[20] = json!({"message": "no level", "source": "s"});
    let (status, body) = post_json(format!("{}/producer/api/logs/batch", app.base), &events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["totalEvents"], 300);
    assert_eq!(body["successCount"], 298);
    assert_eq!(body["failureCount"], 2);
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors[0]["index"], 10);
    assert!(errors[0]["message"]
        .as_str()
        .expect("msg")
        .contains("level"));
    assert_eq!(errors[1]["index"], 20);

    let records = read_back(&topic, 298).await;
    assert_eq!(records.len(), 298, "exact count, no duplicates");
    let ids: HashSet<&str> = records
        .iter()
        .filter_map(|r| r.event["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 298, "every event once");
    app.stop().await;
}

#[tokio::test]
async fn bulk_accepts_ndjson_plain_and_gzip() {
    let (app, topic) = producer_on_own_topic().await;
    let lines: String = (0..50)
        .map(|i| format!("{}\n", event("bulk-svc", "DEBUG", &format!("line {i}"))))
        .collect();
    let body = format!("{lines}\n   \nnot json\n");
    let (status, report) = json(
        http()
            .post(format!("{}/producer/api/logs/bulk", app.base))
            .header("Content-Type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("bulk"),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["successCount"], 50);
    assert_eq!(report["failureCount"], 1);
    assert_eq!(
        report["errors"][0]["index"], 52,
        "0-based line number of the bad line"
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).expect("gzip");
    let (status, report) = json(
        http()
            .post(format!("{}/producer/api/logs/bulk", app.base))
            .header("Content-Type", "application/x-ndjson")
            .header("Content-Encoding", "gzip")
            .body(gz.finish().expect("gzip"))
            .send()
            .await
            .expect("bulk gzip"),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["successCount"], 50);

    let (status, report) = json(
        http()
            .post(format!("{}/producer/api/logs/bulk", app.base))
            .header("Content-Type", "application/x-ndjson")
            .header("Content-Encoding", "zstd")
            .body(zstd::encode_all(lines.as_bytes(), 3).expect("zstd"))
            .send()
            .await
            .expect("bulk zstd"),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["successCount"], 50);

    assert_eq!(read_back(&topic, 150).await.len(), 150);
    app.stop().await;
}

#[tokio::test]
async fn batch_limits_are_413_naming_the_limit() {
    let (app, _topic) = producer_on_own_topic().await;
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| event("limits", "INFO", &format!("{i}")))
        .collect();
    let (status, body) =
        post_json(format!("{}/producer/api/logs/batch", app.base), &too_many).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().expect("message").contains("10000"),
        "{body}"
    );

    // 17 MiB of NDJSON: over the 16 MiB body limit, refused before any parsing.
    let line = format!("{}\n", event("limits", "INFO", &"x".repeat(16 * 1024)));
    let body = line.repeat(17 * 1024 * 1024 / line.len() + 1);
    let response = http()
        .post(format!("{}/producer/api/logs/bulk", app.base))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("bulk");
    assert_eq!(response.status(), 413);
    app.stop().await;
}

#[tokio::test]
async fn async_ingest_answers_202_and_shutdown_flushes_every_queued_event() {
    // A long linger keeps events queued in the producer when the stop comes.
    let (app, topic) = producer_on_own_topic_with(|s| s.producer.linger_ms = 500).await;
    for i in 0..40 {
        let (status, body) = post_json(
            format!("{}/producer/api/logs/ingest/async", app.base),
            &event("async-svc", "INFO", &format!("{i}")),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "queued");
    }
    app.stop().await;
    assert_eq!(
        read_back(&topic, 40).await.len(),
        40,
        "graceful stop delivered every queued event"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_naming_the_problem() {
    let (app, _topic) = producer_on_own_topic().await;
    let client = http();
    let ingest = format!("{}/producer/api/logs/ingest", app.base);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            client
                .post(&ingest)
                .json(&json!({"message": "m", "source": "s"})),
            400,
            "level",
        ),
        (
            client
                .post(&ingest)
                .json(&json!({"level": "LOUD", "message": "m", "source": "s"})),
            400,
            "level",
        ),
        (
            client.post(&ingest).json(
                &json!({"level": "INFO", "message": "m", "source": "s", "timestamp": "soon"}),
            ),
            400,
            "timestamp",
        ),
        (
            client
                .post(&ingest)
                .json(&json!({"level": "INFO", "message": "m", "source": "s".repeat(101)})),
            400,
            "source",
        ),
        (
            client
                .post(&ingest)
                .json(&json!({"level": "INFO", "message": "m", "source": "s", "metadata": [1]})),
            400,
            "metadata",
        ),
        (
            client.post(&ingest).json(&json!([{"level": "INFO"}])),
            400,
            "$",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "application/json")
                .body("{not json"),
            400,
            "malformed",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "application/json"),
            400,
            "empty",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "text/plain")
                .body("{}"),
            415,
            "Content-Type",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "application/json")
                .body(vec![b' '; 1024 * 1024 + 1]),
            413,
            "limit",
        ),
        (
            client
                .post(format!("{}/producer/api/logs/batch", app.base))
                .json(&json!({"level": "INFO"})),
            400,
            "array",
        ),
        (
            client
                .post(format!("{}/producer/api/logs/batch", app.base))
                .json(&json!([])),
            400,
            "no events",
        ),
        (client.get(&ingest), 405, "Method Not Allowed"),
        (
            client.get(format!("{}/producer/nowhere", app.base)),
            404,
            "no route",
        ),
    ];
    for (request, expected_status, mentions) in cases {
        let (status, body) = json(request.send().await.expect("request")).await;
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(body["status"], expected_status, "{body}");
        assert!(
            body["timestamp"].is_string() && body["path"].is_string(),
            "{body}"
        );
        assert!(
            body.to_string().contains(mentions),
            "{body} should mention {mentions}"
        );
    }
    app.stop().await;
}

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

#[tokio::test]
async fn a_missing_topic_opens_the_breaker_and_answers_503_without_any_2xx() {
    // A topic that does not exist (auto-create is off) fails every delivery, like a
    // broker that is away, without stopping the shared broker other tests use.
    let app = spawn_producer(|s| {
        s.kafka.topic = unique("no-such-topic");
        s.producer.delivery_timeout_ms = 1000;
        s.breaker.failure_threshold = 2;
        s.breaker.open_ms = 60_000;
    })
    .await;
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

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let (app, _topic) = producer_on_own_topic().await;
    let client = http();
    let (status, doc) = get_json(format!("{}/producer/v3/api-docs", app.base)).await;
    assert_eq!(status, 200);
    for path in [
        "/producer/api/logs/ingest",
        "/producer/api/logs/batch",
        "/producer/api/logs/bulk",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let ui = client
        .get(format!("{}/producer/swagger-ui/", app.base))
        .send()
        .await
        .expect("ui");
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.expect("html").contains("swagger"));
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
    let (status, body) = json(
        client
            .post(&url)
            .header("X-API-Key", "key-c")
            .json(&one)
            .send()
            .await
            .expect("bad key"),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains("key-c"),
        "the key is not echoed: {body}"
    );

    for _ in 0..2 {
        let r = client
            .post(&url)
            .header("X-API-Key", "key-a")
            .json(&one)
            .send()
            .await
            .expect("key a");
        assert_eq!(r.status(), 200);
    }
    let r = client
        .post(&url)
        .header("X-API-Key", "key-a")
        .json(&one)
        .send()
        .await
        .expect("key a");
    assert_eq!(r.status(), 429, "key-a spent its burst");
    let r = client
        .post(&url)
        .header("Authorization", "Bearer key-b")
        .json(&one)
        .send()
        .await
        .expect("key b");
    assert_eq!(r.status(), 200, "key-b has its own bucket");

    let health = client
        .get(format!("{}/producer/api/logs/health", app.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200, "liveness stays open");
    app.stop().await;
}

/// A client that declares a 1,048,000-byte body (all of a 1 MiB limit) and sends only
/// part of it: the producer holds its reservation while it waits for the rest.
async fn hold_the_whole_inflight_limit(app: &crate::helpers::Running) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    slow.write_all(
        b"POST /producer/api/logs/ingest HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 1048000\r\n\r\n{\"level\":",
    )
    .await
    .expect("write the head");
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow
}

/// The producer holds at most `INGEST_MAX_INFLIGHT_MIB` of requests at once: past it a
/// request waits `INGEST_ADMISSION_WAIT_MS`, then gets 503 + Retry-After (its body read
/// and dropped, its connection closed), and it is admitted again as soon as room frees up.
#[tokio::test]
async fn past_the_inflight_byte_limit_requests_get_503_until_room_frees_up() {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.admission.max_inflight_mib = 1;
        s.admission.wait_ms = 200;
    })
    .await;
    let url = format!("{}/producer/api/logs/ingest", app.base);
    let slow = hold_the_whole_inflight_limit(&app).await;

    let response = http()
        .post(&url)
        .json(&event("inflight", "INFO", "while the limit is taken"))
        .send()
        .await
        .expect("answer");
    assert!(response.headers().contains_key("retry-after"));
    // The refused client's connection slot goes to the next one waiting.
    assert_eq!(
        response.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let (status, body) = json(response).await;
    crate::helpers::assert_unavailable_because(status, &body, "1 MiB");

    // The slow client goes away: its reservation is released and requests pass again.
    drop(slow);
    let admitted = crate::helpers::eventually(
        "a request to be admitted again",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move {
                let (status, _) = post_json(&url, &event("inflight", "INFO", "after")).await;
                (status == 200).then_some(status)
            }
        },
    )
    .await;
    assert_eq!(admitted, 200);
    app.stop().await;
}

/// A request that does not fit waits for room instead of failing at once: when the
/// limit frees up within `INGEST_ADMISSION_WAIT_MS` it is admitted and stored. (With no
/// wait it would be a 503, so a burst just over the limit would fail.)
#[tokio::test]
async fn a_request_over_the_inflight_limit_waits_for_room_and_is_admitted() {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.admission.max_inflight_mib = 1;
        s.admission.wait_ms = 20_000;
    })
    .await;
    let url = format!("{}/producer/api/logs/ingest", app.base);
    let slow = hold_the_whole_inflight_limit(&app).await;

    let waiting = tokio::spawn({
        let url = url.clone();
        async move { post_json(&url, &event("inflight", "INFO", "queued")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "answered while the limit was still taken"
    );

    drop(slow);
    let (status, body) = waiting.await.expect("the queued request");
    assert_eq!(status, 200, "{body}");
    assert!(body["logId"].is_string(), "{body}");
    app.stop().await;
}

/// Connections past `HTTP_MAX_CONNECTIONS` are not served until one closes: they wait
/// in the kernel's accept queue, so a flood of connections cannot grow the producer's
/// read buffers without bound. (Without the cap the third request is answered at once.)
#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.http.workers = 1;
        s.http.max_connections = 2;
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(
            tokio::net::TcpStream::connect(&address)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let url = format!("{}/producer/api/logs/ingest", app.base);
    let third = tokio::spawn(async move { post_json(&url, &event("cap", "INFO", "third")).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "served while both connection slots were taken"
    );

    drop(idle.pop());
    let (status, body) = third.await.expect("the third request");
    assert_eq!(status, 200, "{body}");
    drop(idle);
    app.stop().await;
}

/// A flood of large batches, together far over `INGEST_MAX_INFLIGHT_MIB`, degrades into
/// 503s: every request gets a JSON answer that is a 200 or a 503 with Retry-After, and
/// the topic holds exactly the acknowledged events (a refused batch leaves nothing).
/// No admission wait, so the refusals do not depend on how fast Kafka answers.
#[tokio::test]
async fn a_flood_of_large_batches_gets_200s_and_503s_only_and_the_acked_events_arrive() {
    const CLIENTS: usize = 24;
    const EVENTS_PER_BATCH: usize = 1000;
    let (app, topic) = producer_on_own_topic_with(|s| {
        s.admission.max_inflight_mib = 2;
        s.admission.wait_ms = 0;
    })
    .await;
    let url = format!("{}/producer/api/logs/batch", app.base);
    let padding = "x".repeat(300);
    let requests: Vec<_> = (0..CLIENTS)
        .map(|client| {
            // About 400 KB each: 24 of them are about 10 MB against a 2 MiB limit.
            let batch: Vec<Value> = (0..EVENTS_PER_BATCH)
                .map(|i| {
                    event(
                        &format!("flood-{client}"),
                        "INFO",
                        &format!("{i} {padding}"),
                    )
                })
                .collect();
            let request = http().post(&url).json(&batch);
            tokio::spawn(async move {
                let response = request.send().await.expect("an HTTP answer");
                let retry_after = response.headers().contains_key("retry-after");
                let (status, body) = json(response).await;
                (status, retry_after, body)
            })
        })
        .collect();

    let (mut acked, mut refused) = (0usize, 0usize);
    for request in requests {
        let (status, retry_after, body) = request.await.expect("client task");
        match status {
            200 => acked += body["successCount"].as_u64().expect("successCount") as usize,
            503 => {
                assert!(retry_after, "503 without Retry-After: {body}");
                assert_eq!(body["status"], "unavailable", "{body}");
                refused += 1;
            }
            other => panic!("a flood answered {other}: {body}"),
        }
    }
    assert!(refused > 0, "no batch was refused: the limit did not hold");
    assert!(acked > 0, "every batch was refused");
    assert_eq!(read_back(&topic, acked).await.len(), acked);
    app.stop().await;
}

/// A burst of connections far past `HTTP_MAX_CONNECTIONS` waits in the listen backlog
/// (`HTTP_LISTEN_BACKLOG`), and every request is answered once a slot frees up: the cap
/// delays connections, it never refuses or resets them.
#[tokio::test]
async fn a_burst_of_connections_past_the_cap_waits_in_the_backlog_and_all_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CONNECTIONS: usize = 200;
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.http.workers = 1;
        s.http.max_connections = 1;
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    // The only slot is taken, so every connection below waits in the backlog.
    let holder = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let requests: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&address).await?;
                stream
                    .write_all(
                        b"GET /producer/api/logs/health HTTP/1.1\r\nHost: x\r\n\
                          Connection: close\r\n\r\n",
                    )
                    .await?;
                let mut answer = Vec::new();
                tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
                    .await??;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned(),
                )
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(holder);

    let mut answers = HashMap::<String, usize>::new();
    for request in requests {
        let answer = match request.await.expect("client task") {
            Ok(status_line) => status_line,
            Err(e) => format!("no answer: {e}"),
        };
        *answers.entry(answer).or_default() += 1;
    }
    assert_eq!(
        answers.get("HTTP/1.1 200"),
        Some(&CONNECTIONS),
        "{answers:?}"
    );
    app.stop().await;
}

/// A keep-alive client at a normal pace gets an answer to every request: no reset, no
/// connection closed under it. The middle pause outlasts the server's keep-alive (5 s),
/// so the second phase also reuses connections the server closed while they were idle.
#[tokio::test]
async fn a_keep_alive_client_never_sees_a_dropped_connection() {
    let (app, _topic) = producer_on_own_topic().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = format!("{}/producer/api/logs/batch", app.base);
    for phase in 0..2 {
        let senders: Vec<_> = (0..4)
            .map(|sender| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    for request in 0..25 {
                        let batch: Vec<Value> = (0..100)
                            .map(|i| {
                                event(
                                    "keepalive",
                                    "INFO",
                                    &format!("{phase}/{sender}/{request}/{i}"),
                                )
                            })
                            .collect();
                        let outcome = client.post(&url).json(&batch).send().await;
                        outcomes.push(
                            outcome
                                .map(|r| r.status().as_u16())
                                .map_err(|e| format!("{e:?}")),
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    outcomes
                })
            })
            .collect();
        for sender in senders {
            for outcome in sender.await.expect("sender") {
                assert_eq!(outcome, Ok(200), "phase {phase}");
            }
        }
        if phase == 0 {
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
    }
    app.stop().await;
}
