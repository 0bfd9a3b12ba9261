//! The live tail (`GET /tail`, Server-Sent Events) against the real broker and
//! PostgreSQL: resumes with no gap and no duplicate through parallel writers, old
//! timestamps and a late commit; its limits, its errors and the explorer's files.

use crate::consumer::{producer, topics};
use crate::helpers::{
    db, eventually, get_json, http, json, metrics_text, priority_topic_of, spawn_consumer_with,
    spawn_gateway, unique, Running,
};
use api_gateway::settings::TailSettings;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Text, Timestamptz};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// One Server-Sent Events message.
#[derive(Debug, Default)]
pub(crate) struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
}

/// A tail stream read as a client would: messages end at a blank line.
pub(crate) struct SseStream {
    response: reqwest::Response,
    buffer: String,
    /// The last `id:` seen, in any message: where a reconnect resumes.
    pub last_id: Option<String>,
}

impl SseStream {
    pub async fn open(base: &str, query: &str, last_event_id: Option<&str>) -> SseStream {
        let mut request = http().get(format!("{base}/gateway/api/query/tail?{query}"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("GET /tail");
        assert_eq!(response.status(), 200, "GET /tail?{query}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "content type"
        );
        let mut stream = SseStream {
            response,
            buffer: String::new(),
            last_id: None,
        };
        let ready = stream
            .next(Duration::from_secs(10))
            .await
            .expect("the ready message");
        assert_eq!(ready.event.as_deref(), Some("ready"), "{ready:?}");
        if let Some(id) = last_event_id {
            assert_eq!(
                ready.id.as_deref(),
                Some(id),
                "resumes where it was asked to"
            );
        }
        stream
    }

    /// The next message (comments skipped), or None when the stream ends or `limit`
    /// passes first.
    pub async fn next(&mut self, limit: Duration) -> Option<SseMessage> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = SseMessage::default();
                for line in block
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with(':'))
                {
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "id" => message.id = Some(value.to_owned()),
                        "event" => message.event = Some(value.to_owned()),
                        "data" => message.data = Some(value.to_owned()),
                        _ => {}
                    }
                }
                if message.id.is_some() {
                    self.last_id = message.id.clone();
                }
                if message.id.is_some() || message.data.is_some() {
                    return Some(message);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(_) => return None,
                Err(_) => return None,
            }
        }
    }

    /// Log events until `want` have arrived or `limit` passes.
    pub async fn events(&mut self, want: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        while events.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(SseMessage {
                    data: Some(data),
                    event: None,
                    ..
                }) => events.push(serde_json::from_str(&data).expect("event JSON")),
                Some(_) => {}
                None => break,
            }
        }
        events
    }
}

fn ids_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn gateway_following(topic: &str, group: &str) -> Running {
    gateway_following_with(topic, group, |_| {}).await
}

/// A gateway whose tail follows `topic` and `group`, polling every 50 ms with a
/// heartbeat a second, then `configure`d.
async fn gateway_following_with(
    topic: &str,
    group: &str,
    configure: impl FnOnce(&mut TailSettings) + Send + 'static,
) -> Running {
    let (topic, group) = (topic.to_owned(), group.to_owned());
    spawn_gateway(move |s| {
        s.tail.topic = topic;
        s.tail.group_id = group;
        s.tail.poll_ms = 50;
        s.tail.heartbeat_secs = 1;
        configure(&mut s.tail);
    })
    .await
}

/// A consumer group, topic and source of a test's own whose offsets the test stores
/// itself (no consumer): each of `partitions` starts at `base`, a region of offsets
/// (`region` × 10^12 on) no other test of this database writes into.
struct OwnOffsets {
    group: String,
    topic: String,
    source: String,
    base: i64,
}

fn own_offsets(region: i64, partitions: &[i32], conn: &mut PgConnection) -> OwnOffsets {
    let own = OwnOffsets {
        group: unique("tail-group"),
        topic: unique("tail-topic"),
        source: unique("tail-src"),
        base: region * 1_000_000_000_000 + i64::from(rand_u16()) * 100_000,
    };
    for &partition in partitions {
        store_offset(conn, &own.group, &own.topic, partition, own.base);
    }
    own
}

#[tokio::test]
async fn a_resumed_tail_has_no_gap_and_no_duplicate_through_parallel_writers_and_old_timestamps() {
    let t = topics().await;
    let source = unique("tail-src");
    let _consumer = spawn_consumer_with(&t.topic, &t.dlq, &t.group, |s| {
        s.consumer.writers = 2;
    })
    .await;
    let gateway = gateway_following(&t.topic, &t.group).await;
    let filter = format!("source={source}");
    let mut first = SseStream::open(&gateway.base, &filter, None).await;
    // Full text is filtered by PostgreSQL, on polls of the stream's own.
    let mut text = SseStream::open(&gateway.base, &format!("{filter}&query=event"), None).await;

    // Half the events carry timestamps two days old, in no order: a tail that
    // followed timestamps would skip them. Keys spread them over the three
    // partitions, which two writers commit independently. The ERRORs go to the
    // priority topic, as the producer sends them: its offsets are a second series,
    // committed by the priority lane's own writer.
    let producer = producer();
    let send = |round: usize| {
        let producer = producer.clone();
        let (topic, source) = (t.topic.clone(), source.clone());
        let priority = priority_topic_of(&topic);
        async move {
            let mut sent = Vec::new();
            for i in 0..60 {
                let id = Uuid::now_v7();
                let age = if i % 2 == 0 {
                    chrono::Duration::hours(48) - chrono::Duration::seconds(i as i64 * 97)
                } else {
                    chrono::Duration::seconds(i as i64)
                };
                let error = i % 5 == 0;
                let event = json!({"id": id, "level": if error { "ERROR" } else { "INFO" },
                    "message": format!("round {round} event {i}"), "source": source,
                    "timestamp": chrono::Utc::now() - age});
                producer
                    .send(
                        FutureRecord::to(if error { &priority } else { &topic })
                            .key(&format!("key-{i}"))
                            .payload(&event.to_string()),
                        Timeout::After(Duration::from_secs(10)),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("sent");
                sent.push(id.to_string());
            }
            sent
        }
    };
    let mut sent = send(1).await;
    let before_drop = first.events(25, Duration::from_secs(60)).await;
    assert_eq!(before_drop.len(), 25, "the first 25 events arrive live");
    let resume_at = first.last_id.clone().expect("an id to resume from");
    drop(first);

    sent.extend(send(2).await);
    let mut second = SseStream::open(&gateway.base, &filter, Some(&resume_at)).await;
    let after_resume = second
        .events(sent.len() - 25, Duration::from_secs(60))
        .await;
    // Anything sent twice would arrive after the rest: give it the time to.
    let late = second.events(1, Duration::from_secs(1)).await;
    assert!(late.is_empty(), "nothing more arrives: {late:?}");

    let by_text = text.events(sent.len(), Duration::from_secs(60)).await;
    assert_eq!(
        ids_of(&by_text).iter().collect::<HashSet<_>>(),
        sent.iter().collect::<HashSet<_>>(),
        "the full-text stream gets every event"
    );
    assert_eq!(by_text.len(), sent.len(), "and each once");

    assert!(
        second
            .last_id
            .as_deref()
            .is_some_and(|id| id.contains(".p")),
        "the cursor covers the priority topic's partitions: {:?}",
        second.last_id
    );
    let mut received = ids_of(&before_drop);
    received.extend(ids_of(&after_resume));
    let unique_received: HashSet<&String> = received.iter().collect();
    assert_eq!(unique_received.len(), received.len(), "no event twice");
    assert_eq!(
        unique_received,
        sent.iter().collect::<HashSet<_>>(),
        "every event sent, and nothing else"
    );
}

/// A row and its partition's stored offset, written as a consumer's batch does.
fn commit_row(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    source: &str,
    partition: i32,
    offset: i64,
    timestamp: chrono::DateTime<chrono::Utc>,
) -> Uuid {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO log_events (id, level, message, source, \"timestamp\", kafka_partition, kafka_offset) \
         VALUES ($1, 'ERROR', 'late commit test', $2, $3, $4, $5)",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<Text, _>(source)
    .bind::<Timestamptz, _>(timestamp)
    .bind::<Integer, _>(partition)
    .bind::<BigInt, _>(offset)
    .execute(conn)
    .expect("insert the row");
    store_offset(conn, group, topic, partition, offset + 1);
    id
}

/// Sets a partition's stored next offset, as a consumer's batch commit does.
fn store_offset(conn: &mut PgConnection, group: &str, topic: &str, partition: i32, next: i64) {
    diesel::sql_query(
        "INSERT INTO consumer_offsets (consumer_group, topic, \"partition\", next_offset, owner_epoch) \
         VALUES ($1, $2, $3, $4, 1) \
         ON CONFLICT (consumer_group, topic, \"partition\") DO UPDATE SET next_offset = EXCLUDED.next_offset",
    )
    .bind::<Text, _>(group)
    .bind::<Text, _>(topic)
    .bind::<Integer, _>(partition)
    .bind::<BigInt, _>(next)
    .execute(conn)
    .expect("store the offset");
}

#[tokio::test]
async fn an_older_event_committed_late_by_another_writer_is_still_sent_once() {
    let mut conn = db();
    let OwnOffsets {
        group,
        topic,
        source,
        base,
    } = own_offsets(1, &[0, 1], &mut conn);
    let gateway = gateway_following(&topic, &group).await;
    let filter = format!("source={source}");
    let mut stream = SseStream::open(&gateway.base, &filter, None).await;

    // Writer A stores an event of an hour ago on partition 0 and has not committed.
    let (commit, committed) = std::sync::mpsc::channel::<()>();
    let (written, written_seen) = std::sync::mpsc::channel::<Uuid>();
    let writer_a = {
        let (group, topic, source) = (group.clone(), topic.clone(), source.clone());
        std::thread::spawn(move || {
            let mut conn = db();
            conn.transaction::<_, diesel::result::Error, _>(|conn| {
                let id = commit_row(
                    conn,
                    &group,
                    &topic,
                    &source,
                    0,
                    base,
                    chrono::Utc::now() - chrono::Duration::hours(1),
                );
                written.send(id).expect("report the row");
                committed
                    .recv_timeout(Duration::from_secs(60))
                    .expect("told to commit");
                Ok(())
            })
            .expect("writer A commits");
        })
    };
    let older = written_seen
        .recv_timeout(Duration::from_secs(10))
        .expect("writer A wrote");
    // Writer B commits a newer event on partition 1 meanwhile.
    let newer = commit_row(
        &mut conn,
        &group,
        &topic,
        &source,
        1,
        base,
        chrono::Utc::now(),
    );

    let first = stream.events(1, Duration::from_secs(10)).await;
    assert_eq!(ids_of(&first), vec![newer.to_string()]);
    let early = stream.events(1, Duration::from_millis(500)).await;
    assert!(
        early.is_empty(),
        "the uncommitted row is not sent: {early:?}"
    );

    commit.send(()).expect("commit writer A");
    writer_a.join().expect("writer A");
    let second = stream.events(1, Duration::from_secs(10)).await;
    assert_eq!(
        ids_of(&second),
        vec![older.to_string()],
        "the older event, committed last, still arrives"
    );

    // Resuming from the last id sends neither again.
    let resume_at = stream.last_id.clone().expect("an id");
    drop(stream);
    let mut resumed = SseStream::open(&gateway.base, &filter, Some(&resume_at)).await;
    let again = resumed.events(1, Duration::from_secs(1)).await;
    assert!(again.is_empty(), "nothing is sent twice: {again:?}");
}

#[tokio::test]
async fn a_stream_that_started_before_the_shared_reader_gets_what_was_stored_in_between() {
    let mut conn = db();
    let OwnOffsets {
        group,
        topic,
        source,
        base,
    } = own_offsets(3, &[0], &mut conn);
    // A slow poll: the shared reader, idle while no stream listens, takes up to 2 s
    // to notice this one; the stream's own first poll is at once.
    let gateway = gateway_following_with(&topic, &group, |tail| tail.poll_ms = 2_000).await;
    let mut stream = SseStream::open(&gateway.base, &format!("source={source}"), None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Stored after the stream's first poll and (most often) before the shared reader
    // starts: the reader's first chunk then starts past it, and the stream must notice
    // the gap rather than wait for a later row.
    let id = commit_row(
        &mut conn,
        &group,
        &topic,
        &source,
        0,
        base,
        chrono::Utc::now(),
    );
    let events = stream.events(1, Duration::from_secs(15)).await;
    assert_eq!(ids_of(&events), vec![id.to_string()]);
}

#[tokio::test]
async fn a_narrow_filter_steps_through_rows_that_do_not_match_and_invalid_rows_are_passed_over() {
    let mut conn = db();
    let OwnOffsets {
        group,
        topic,
        source,
        base,
    } = own_offsets(4, &[0], &mut conn);
    // 2,000 rows of another source, then a row whose message is blank (not a valid
    // event), then the one row the stream wants.
    diesel::sql_query(
        "INSERT INTO log_events (id, level, message, source, \"timestamp\", kafka_partition, kafka_offset) \
         SELECT gen_random_uuid(), 'INFO', 'other ' || n, $1, now(), 0, $2 + n \
         FROM generate_series(0, 1999) AS n",
    )
    .bind::<Text, _>(format!("{source}-other"))
    .bind::<BigInt, _>(base)
    .execute(&mut conn)
    .expect("insert the rows");
    diesel::sql_query(
        "INSERT INTO log_events (id, level, message, source, \"timestamp\", kafka_partition, kafka_offset) \
         VALUES (gen_random_uuid(), 'ERROR', '   ', $1, now(), 0, $2)",
    )
    .bind::<Text, _>(&source)
    .bind::<BigInt, _>(base + 2_000)
    .execute(&mut conn)
    .expect("insert the invalid row");
    let wanted = commit_row(
        &mut conn,
        &group,
        &topic,
        &source,
        0,
        base + 2_001,
        chrono::Utc::now(),
    );

    // One event a poll: each poll examines at most 100 offsets, so the stream steps
    // through the 2,000 it does not want; resuming from before all of them.
    let gateway = gateway_following_with(&topic, &group, |tail| tail.batch = 1).await;
    let mut stream = SseStream::open(
        &gateway.base,
        &format!("source={source}"),
        Some(&format!("0:{base}")),
    )
    .await;
    let events = stream.events(1, Duration::from_secs(30)).await;
    assert_eq!(ids_of(&events), vec![wanted.to_string()]);
    let metrics = metrics_text(&format!("{}/gateway/actuator/prometheus", gateway.base)).await;
    assert!(
        metrics.contains("log_store_invalid_rows_total{column=\"message\"} 1"),
        "{metrics}"
    );
}

fn rand_u16() -> u16 {
    let bytes = Uuid::new_v4().into_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]])
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_field_and_clients_past_the_limit_get_503() {
    let gateway = spawn_gateway(|s| {
        s.tail.max_clients = 1;
        s.tail.heartbeat_secs = 1;
    })
    .await;
    let tail = format!("{}/gateway/api/query/tail", gateway.base);
    let (status, body) = get_json(format!("{tail}?level=LOUD")).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (400, Some("level")),
        "{body}"
    );
    let (status, body) = json(
        http()
            .get(&tail)
            .header("Last-Event-ID", "not-a-cursor")
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (400, Some("Last-Event-ID")),
        "{body}"
    );

    let open = SseStream::open(&gateway.base, "level=ERROR", None).await;
    let refused = http().get(&tail).send().await.expect("GET");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let (_, body) = json(refused).await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("TAIL_MAX_CLIENTS")),
        "{body}"
    );
    let metrics_url = format!("{}/gateway/actuator/prometheus", gateway.base);
    let metrics = metrics_text(&metrics_url).await;
    assert!(metrics.contains("log_tail_clients 1"), "{metrics}");
    assert!(
        metrics.contains("log_tail_drops_total{reason=\"too_many_clients\"} 1"),
        "{metrics}"
    );

    // A client that leaves gives its place back (noticed at the next heartbeat).
    drop(open);
    eventually(
        "the slot to be free again",
        Duration::from_secs(15),
        || async {
            let response = http().get(&tail).send().await.expect("GET");
            (response.status() == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_shutdown_ends_every_stream() {
    let mut conn = db();
    let OwnOffsets {
        group,
        topic,
        source,
        base,
    } = own_offsets(2, &[0], &mut conn);
    // A poll's events go out as one message, and a client has the time limit to take
    // each: small polls (50 events, 400 KB) and 2 s, so the reading client, parsing
    // 80 MB in a debug build on a busy machine, is never taken for a stalled one.
    let gateway = gateway_following_with(&topic, &group, |tail| {
        tail.slow_client_ms = 2_000;
        tail.batch = 50;
    })
    .await;
    let filter = format!("source={source}");
    let stalled = SseStream::open(&gateway.base, &filter, None).await;
    let mut reading = SseStream::open(&gateway.base, &filter, None).await;

    // 10,000 events of 8 KiB: far more than the socket buffers and the stream's own
    // buffer hold for a client that reads nothing.
    diesel::sql_query(
        "INSERT INTO log_events (id, level, message, source, \"timestamp\", kafka_partition, kafka_offset) \
         SELECT gen_random_uuid(), 'INFO', repeat('padding ', 1024) || n, $1, now(), 0, $2 + n \
         FROM generate_series(0, 9999) AS n",
    )
    .bind::<Text, _>(&source)
    .bind::<BigInt, _>(base)
    .execute(&mut conn)
    .expect("insert the rows");
    store_offset(&mut conn, &group, &topic, 0, base + 10_000);

    let metrics_url = format!("{}/gateway/actuator/prometheus", gateway.base);
    // The client that reads gets everything, and stays connected; the stalled one
    // is dropped.
    let read = reading.events(10_000, Duration::from_secs(60)).await;
    assert_eq!(read.len(), 10_000);
    eventually(
        "the stalled client to be dropped",
        Duration::from_secs(30),
        || async {
            let metrics = metrics_text(&metrics_url).await;
            metrics
                .contains("log_tail_drops_total{reason=\"slow_client\"} 1")
                .then_some(())
        },
    )
    .await;
    let metrics = metrics_text(&metrics_url).await;
    assert!(metrics.contains("log_tail_clients 1"), "{metrics}");
    drop(stalled);

    // Shutdown does not wait for open streams: they end, and the drain completes.
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), gateway.stop())
        .await
        .expect("the gateway stops with a stream open");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        reading.next(Duration::from_secs(5)).await.is_none(),
        "the stream ended"
    );
}

#[tokio::test]
async fn api_keys_guard_the_tail_and_the_explorer_is_served_from_the_binary() {
    let gateway = spawn_gateway(|s| {
        s.auth.api_keys = Some("tail-key".parse().expect("infallible"));
    })
    .await;
    let tail = format!("{}/gateway/api/query/tail", gateway.base);
    let (status, body) = get_json(&tail).await;
    assert_eq!(status, 401, "{body}");
    let keyed = http()
        .get(&tail)
        .header("X-API-Key", "tail-key")
        .send()
        .await
        .expect("GET");
    assert_eq!(keyed.status(), 200);
    drop(keyed);

    // The explorer's files need no key: the page asks for one when the API does.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = no_redirects
        .get(format!("{}/", gateway.base))
        .send()
        .await
        .expect("GET /");
    assert_eq!(root.status(), 302);
    assert_eq!(root.headers()["location"], "/gateway/ui/");
    let page = http()
        .get(format!("{}/gateway/ui/", gateway.base))
        .send()
        .await
        .expect("GET ui");
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(page.text().await.expect("body").contains("Log explorer"));
    let script = http()
        .get(format!("{}/gateway/ui/app.js", gateway.base))
        .send()
        .await
        .expect("GET app.js");
    assert!(script.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/javascript"));
    let (status, body) = get_json(format!("{}/gateway/ui/missing.js", gateway.base)).await;
    assert_eq!(status, 404, "{body}");

    // The OpenAPI document describes the tail.
    let (_, doc) = get_json(format!("{}/gateway/v3/api-docs", gateway.base)).await;
    let tail_doc = &doc["paths"]["/gateway/api/query/tail"]["get"];
    assert!(
        tail_doc["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{tail_doc}"
    );
}
