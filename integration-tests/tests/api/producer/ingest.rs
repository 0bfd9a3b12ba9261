//! What the producer takes and what reaches its topic: one event, a batch, NDJSON, async.

use super::{producer_on_own_topic, producer_on_own_topic_with, read_back};
use crate::helpers::{event, http, json, post_json};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;

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
    let uuid = uuid::Uuid::parse_str(&id).expect("uuid");
    assert_eq!(uuid.get_version_num(), 7, "time-ordered id");
    assert_eq!(
        log_common::ids::id_time_millis(uuid),
        Some(1_704_103_200_000),
        "minted at the event's time, not at receipt"
    );

    let records = read_back(&topic, 1).await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.key, uuid.as_bytes(), "keyed by the id");
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
    let bulk = |encoding: &'static str, body: Vec<u8>| {
        let mut request = http()
            .post(format!("{}/producer/api/logs/bulk", app.base))
            .header("Content-Type", "application/x-ndjson");
        if !encoding.is_empty() {
            request = request.header("Content-Encoding", encoding);
        }
        async move { json(request.body(body).send().await.expect(encoding)).await }
    };
    let (status, report) = bulk("", body.into_bytes()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["successCount"], 50);
    assert_eq!(report["failureCount"], 1);
    assert_eq!(
        report["errors"][0]["index"], 52,
        "0-based line number of the bad line"
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).expect("gzip");
    let gzip = gz.finish().expect("gzip");
    let zstd = zstd::encode_all(lines.as_bytes(), 3).expect("zstd");
    for (encoding, body) in [("gzip", gzip), ("zstd", zstd)] {
        let (status, report) = bulk(encoding, body).await;
        assert_eq!(status, 200, "{encoding}: {report}");
        assert_eq!(report["successCount"], 50, "{encoding}");
    }

    assert_eq!(read_back(&topic, 150).await.len(), 150);
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
async fn every_copy_of_an_id_goes_to_one_partition_and_ids_spread_over_all() {
    let (app, topic) = producer_on_own_topic().await;
    let retried = uuid::Uuid::new_v4().to_string();
    let mut events: Vec<Value> = (0..6)
        .map(|_| json!({"id": retried, "level": "INFO", "message": "retried", "source": "keys"}))
        .collect();
    events.extend((0..30).map(|i| event("keys", "INFO", &format!("distinct {i}"))));
    let (status, body) = post_json(format!("{}/producer/api/logs/batch", app.base), &events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["successCount"], 36);

    let records = read_back(&topic, 36).await;
    assert_eq!(records.len(), 36);
    let copies: HashSet<i32> = records
        .iter()
        .filter(|r| r.event["id"] == retried.as_str())
        .map(|r| r.partition)
        .collect();
    assert_eq!(copies.len(), 1, "the six copies share a partition");
    let all: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(all.len(), 3, "30 distinct ids reach all three partitions");
    app.stop().await;
}
