//! The producer-wide bound on request bytes held at once (`INGEST_MAX_INFLIGHT_MIB`).

use super::{producer_on_own_topic_with, read_back};
use crate::helpers::{event, eventually, http, json, metrics_text, post_json, Running};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::net::TcpStream;

/// What a gauge of the producer reads now.
async fn gauge(app: &Running, name: &str) -> i64 {
    let text = metrics_text(&format!("{}/producer/actuator/prometheus", app.base)).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no gauge {name}: {text}"))
}

/// Waits until a gauge of the producer reads `value`.
async fn gauge_reaches(app: &Running, name: &str, value: i64) {
    eventually(
        &format!("{name} to read {value}"),
        Duration::from_secs(10),
        || async move { (gauge(app, name).await == value).then_some(()) },
    )
    .await;
}

/// A client that declares a 1,048,000-byte body (all of a 1 MiB limit) and sends only
/// part of it: the producer holds its reservation while it waits for the rest.
async fn hold_the_whole_inflight_limit(app: &Running) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    slow.write_all(
        b"POST /producer/api/logs/ingest HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 1048000\r\n\r\n{\"level\":",
    )
    .await
    .expect("write the head");
    // Held once the producer counts the reservation: the whole 1 MiB.
    gauge_reaches(app, "producer_inflight_request_bytes", 1024 * 1024).await;
    slow
}

/// A producer whose 1 MiB in-flight limit a slow client holds whole, where a request
/// waits up to `wait_ms` for room; and the URL of its single-event route.
async fn producer_with_its_limit_held(wait_ms: u64) -> (Running, TcpStream, String) {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.admission.max_inflight_mib = 1;
        s.admission.wait_ms = wait_ms;
    })
    .await;
    let slow = hold_the_whole_inflight_limit(&app).await;
    let url = format!("{}/producer/api/logs/ingest", app.base);
    (app, slow, url)
}

/// The producer holds at most `INGEST_MAX_INFLIGHT_MIB` of requests at once: past it a
/// request waits `INGEST_ADMISSION_WAIT_MS`, then gets 503 + Retry-After (its body read
/// and dropped, its connection closed), and it is admitted again as soon as room frees up.
#[tokio::test]
async fn past_the_inflight_byte_limit_requests_get_503_until_room_frees_up() {
    let (app, slow, url) = producer_with_its_limit_held(200).await;

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
    let admitted = eventually(
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
    let (app, slow, url) = producer_with_its_limit_held(20_000).await;

    let waiting = tokio::spawn({
        let url = url.clone();
        async move { post_json(&url, &event("inflight", "INFO", "queued")).await }
    });
    // Waiting for room, as the producer counts it: not answered while the limit is taken.
    gauge_reaches(&app, "producer_admission_waiting_requests", 1).await;
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

/// Admission sizes a request by the route it reached, not by how its path ends: a POST
/// to no route at all reserves nothing and is answered 404 at once, even while the whole
/// limit is taken. (Sized by its `/batch` or `/bulk` suffix, it waited for a batch's room
/// and got a 503.)
#[tokio::test]
async fn admission_sizes_a_request_by_its_route_not_by_its_path() {
    let (app, slow, _url) = producer_with_its_limit_held(1_000).await;
    for path in [
        "/producer/api/logs/nowhere/batch",
        "/producer/api/logs/ingest/bulk",
    ] {
        let (status, body) = post_json(
            format!("{}{path}", app.base),
            &json!([event("by-route", "INFO", "m")]),
        )
        .await;
        assert_eq!(status, 404, "{path} is no ingest route: {body}");
    }
    drop(slow);
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

/// gzip of `text`.
fn gzipped(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

/// A client that declares `bytes` of body for `/ingest` and sends only its start, so
/// the producer holds that much of its limit for it.
async fn hold_part_of_the_limit(app: &Running, bytes: usize) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&address).await.expect("connect");
    let head = format!(
        "POST /producer/api/logs/ingest HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nContent-Length: {bytes}\r\n\r\n{{\"level\":"
    );
    slow.write_all(head.as_bytes())
        .await
        .expect("write the head");
    gauge_reaches(
        app,
        "producer_inflight_request_bytes",
        (bytes.div_ceil(1024) * 1024) as i64,
    )
    .await;
    slow
}

/// A compressed body reserves what it inflates to, not the route's 16 MiB: with most of
/// a 1 MiB limit taken and no wait allowed, a small gzip bulk still gets in (reserving
/// the maximum, it could not, and only two such requests fit the default 32 MiB). A
/// body that inflates past the route's limit stops there with a 413, one that does not
/// decode is a 400, and both give their room back.
#[tokio::test]
async fn a_compressed_body_reserves_what_it_inflates_to_up_to_the_routes_limit() {
    let (app, topic) = producer_on_own_topic_with(|s| {
        s.admission.max_inflight_mib = 1;
        s.admission.wait_ms = 0;
    })
    .await;
    let held = 600_000;
    let slow = hold_part_of_the_limit(&app, held).await;
    let bulk = format!("{}/producer/api/logs/bulk", app.base);
    let lines: String = (0..100)
        .map(|i| format!("{}\n", event("inflate", "INFO", &format!("line {i}"))))
        .collect();
    let response = http()
        .post(&bulk)
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .body(gzipped(&lines))
        .send()
        .await
        .expect("answer");
    let (status, body) = json(response).await;
    assert_eq!(
        (status, &body["successCount"]),
        (200, &json!(100)),
        "{body}"
    );
    assert_eq!(read_back(&topic, 100).await.len(), 100);
    drop(slow);
    gauge_reaches(&app, "producer_inflight_request_bytes", 0).await;

    // 17 MiB of blanks gzip to a few KiB and inflate past the 16 MiB limit.
    let bomb = gzipped(&" ".repeat(17 * 1024 * 1024));
    assert!(bomb.len() < 100_000);
    let response = http()
        .post(&bulk)
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("answer");
    let (status, body) = json(response).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("inflates")),
        "{body}"
    );

    let mut broken = gzipped(&lines);
    let middle = broken.len() / 2;
    broken[middle..].iter_mut().for_each(|b| *b = !*b);
    let response = http()
        .post(&bulk)
        .header("Content-Type", "application/x-ndjson")
        .header("Content-Encoding", "gzip")
        .body(broken)
        .send()
        .await
        .expect("answer");
    let (status, body) = json(response).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains("gzip")),
        "{body}"
    );
    gauge_reaches(&app, "producer_inflight_request_bytes", 0).await;
    assert_eq!(
        read_back(&topic, 100).await.len(),
        100,
        "nothing more published"
    );
    app.stop().await;
}
