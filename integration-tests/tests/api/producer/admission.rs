//! The producer-wide bound on request bytes held at once (`INGEST_MAX_INFLIGHT_MIB`).

use super::{producer_on_own_topic_with, read_back};
use crate::helpers::{event, http, json, post_json};
use serde_json::Value;
use std::time::Duration;

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
