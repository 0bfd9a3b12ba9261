//! The operator's side of the dead letters, against the real Kafka and PostgreSQL: a
//! producer, consumer and gateway of the test's own (own topic, dead-letter topic,
//! group and database). Poison is written straight to the topic, as kcat would; the
//! gateway lists it from the consumer's index, counts it, replays it through the
//! producer (corrected or as it is) and audits every attempt.

use crate::helpers::{
    create_topic, eventually, http, json, metrics_text, new_migrated_database, spawn_consumer_with,
    spawn_gateway, spawn_producer, unique, Running, KAFKA,
};
use diesel::prelude::*;
use log_common::auth::{fingerprint, API_KEY_HEADER};
use log_common::domain::derived_event_id;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

const ADMIN: &str = "/gateway/api/admin/dead-letters";

/// Sends one raw record to partition 0 of `topic`.
async fn send_raw(topic: &str, payload: &[u8]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("acks", "all")
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<(), [u8]>::to(topic)
                .partition(0)
                .payload(payload),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
}

/// Rows with this id in the database at `url`.
fn rows_with_id(url: &str, id: Uuid) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query("SELECT count(*) AS n FROM log_events WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result::<Count>(&mut conn)
        .expect("count")
        .n
}

async fn get(url: String, key: Option<&str>) -> (u16, Value) {
    let mut request = http().get(url);
    if let Some(key) = key {
        request = request.header(API_KEY_HEADER, key);
    }
    json(request.send().await.expect("GET")).await
}

async fn post(url: String, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut request = http().post(url);
    if let Some(key) = key {
        request = request.header(API_KEY_HEADER, key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    json(request.send().await.expect("POST")).await
}

/// The list entry of the record at `offset`.
fn entry_at(list: &Value, offset: i64) -> Value {
    list["content"]
        .as_array()
        .expect("content")
        .iter()
        .find(|e| e["originalOffset"] == offset)
        .unwrap_or_else(|| panic!("no entry at offset {offset}: {list}"))
        .clone()
}

/// A topic (one partition, so offsets are known), its dead-letter topic, a database,
/// and a producer and consumer on them.
struct Pipeline {
    topic: String,
    database: String,
    producer: Running,
    consumer: Running,
}

async fn pipeline(
    configure_producer: impl FnOnce(&mut log_producer::settings::Settings),
) -> Pipeline {
    let (topic, dlq, group) = (
        unique("admin-dlq"),
        unique("admin-dlq-dlq"),
        unique("admin-dlq-group"),
    );
    create_topic(&topic, 1).await;
    create_topic(&dlq, 1).await;
    let database = new_migrated_database();
    let consumer = spawn_consumer_with(&topic, &dlq, &group, |s| {
        s.postgres.url = database.clone();
    })
    .await;
    let producer_topic = topic.clone();
    let producer = spawn_producer(move |s| {
        s.kafka.topic = producer_topic;
        configure_producer(s);
    })
    .await;
    Pipeline {
        topic,
        database,
        producer,
        consumer,
    }
}

async fn gateway(
    p: &Pipeline,
    configure: impl FnOnce(&mut api_gateway::settings::Settings),
) -> Running {
    let (database, producer) = (p.database.clone(), p.producer.base.clone());
    spawn_gateway(move |s| {
        s.postgres.url = database;
        s.replay.producer_url = producer;
        configure(s);
    })
    .await
}

/// Waits until the gateway lists `n` dead letters, and returns the list.
async fn listed(base: &str, n: i64, key: Option<&str>) -> Value {
    eventually(
        &format!("{n} dead letters listed"),
        Duration::from_secs(60),
        || async {
            let (status, list) = get(format!("{base}{ADMIN}?size=100"), key).await;
            assert_eq!(status, 200, "{list}");
            (list["totalElements"] == n).then_some(list)
        },
    )
    .await
}

#[tokio::test]
async fn dead_letters_are_listed_counted_replayed_once_and_audited() {
    let p = pipeline(|_| {}).await;
    let source = unique("admin-dlq-src");
    send_raw(&p.topic, b"\xff\xfe\xfd binary").await; // offset 0
    send_raw(&p.topic, b"{not json").await; // offset 1
    let loud = json!({"level": "LOUD", "message": "disk almost full", "source": source});
    send_raw(&p.topic, loud.to_string().as_bytes()).await; // offset 2
    let good = Uuid::now_v7();
    let event = json!({"id": good, "level": "INFO", "message": "fine", "source": source});
    send_raw(&p.topic, event.to_string().as_bytes()).await; // offset 3
    eventually("the good event stored", Duration::from_secs(60), || async {
        (rows_with_id(&p.database, good) == 1).then_some(())
    })
    .await;

    let gateway = gateway(&p, |_| {}).await;
    let base = gateway.base.clone();
    let list = listed(&base, 3, None).await;
    let ids: Vec<i64> = list["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {list}");
    let binary = entry_at(&list, 0);
    assert_eq!(binary["reasonKind"], "not_json");
    assert_eq!(binary["originalTopic"], p.topic.as_str());
    assert_eq!(binary["originalPartition"], 0);
    assert_eq!(binary["payloadEncoding"], "hex");
    assert_eq!(binary["payloadPreview"], "fffefd2062696e617279");
    assert_eq!(binary["payloadBytes"], 10);
    let broken = entry_at(&list, 1);
    assert_eq!(broken["reasonKind"], "not_json");
    assert_eq!(broken["payloadEncoding"], "utf8");
    assert_eq!(broken["payloadPreview"], "{not json");
    let invalid = entry_at(&list, 2);
    assert_eq!(invalid["reasonKind"], "invalid_event");
    assert!(
        invalid["reason"]
            .as_str()
            .expect("reason")
            .contains("unknown level"),
        "{invalid}"
    );
    assert_eq!(invalid["payloadPreview"], loud.to_string());
    assert_eq!(
        (invalid["replayed"].clone(), invalid["replayCount"].clone()),
        (json!(false), json!(0))
    );
    let invalid_id = invalid["id"].as_i64().expect("id");

    let (status, only) = get(format!("{base}{ADMIN}?reasonKind=not_json"), None).await;
    assert_eq!(
        (status, only["totalElements"].clone()),
        (200, json!(2)),
        "{only}"
    );
    let (status, counts) = get(format!("{base}{ADMIN}/counts"), None).await;
    assert_eq!(status, 200, "{counts}");
    let kind = |counts: &Value, kind: &str| {
        let k = counts["kinds"]
            .as_array()
            .expect("kinds")
            .iter()
            .find(|k| k["reasonKind"] == kind)
            .expect("kind")
            .clone();
        (
            k["total"].as_i64().expect("total"),
            k["unreplayed"].as_i64().expect("unreplayed"),
        )
    };
    assert_eq!(kind(&counts, "not_json"), (2, 2));
    assert_eq!(kind(&counts, "invalid_event"), (1, 1));
    assert_eq!(kind(&counts, "empty"), (0, 0));

    // The whole of one, payload and all.
    let (status, detail) = get(format!("{base}{ADMIN}/{}", binary["id"]), None).await;
    assert_eq!(
        (status, detail["payload"].clone()),
        (200, json!("fffefd2062696e617279")),
        "{detail}"
    );

    // A corrected event, twice: both published with the id derived from the origin,
    // one row stored.
    let expected_id = derived_event_id(&p.topic, 0, 2);
    let corrected =
        json!({"event": {"level": "WARN", "message": "disk almost full", "source": source}});
    for _ in 0..2 {
        let (status, replayed) = post(
            format!("{base}{ADMIN}/{invalid_id}/replay"),
            None,
            Some(corrected.clone()),
        )
        .await;
        assert_eq!(status, 200, "{replayed}");
        assert_eq!(replayed["outcome"], "published");
        assert_eq!(replayed["eventId"], expected_id.to_string());
        assert_eq!(replayed["corrected"], true);
    }
    eventually(
        "the replayed event stored",
        Duration::from_secs(60),
        || async { (rows_with_id(&p.database, expected_id) >= 1).then_some(()) },
    )
    .await;
    // The second copy is behind the first in the topic; the good event sent after both
    // shows that the consumer has read past them.
    let marker = Uuid::now_v7();
    let (status, body) = post(
        format!("{}/producer/api/logs/ingest", p.producer.base),
        None,
        Some(json!({"id": marker, "level": "INFO", "message": "marker", "source": source})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually("the marker stored", Duration::from_secs(60), || async {
        (rows_with_id(&p.database, marker) == 1).then_some(())
    })
    .await;
    assert_eq!(
        rows_with_id(&p.database, expected_id),
        1,
        "replayed twice, stored once"
    );

    // As it is, the event is still invalid: the producer's reason comes back.
    let (status, refused) = post(format!("{base}{ADMIN}/{invalid_id}/replay"), None, None).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .expect("message")
            .contains("unknown level"),
        "{refused}"
    );
    assert_eq!(refused["errors"][0]["field"], "level", "{refused}");

    let (status, audit) = get(format!("{base}{ADMIN}/{invalid_id}/replays"), None).await;
    assert_eq!(status, 200, "{audit}");
    let audit = audit.as_array().expect("audit rows");
    let outcomes: Vec<&str> = audit
        .iter()
        .map(|a| a["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["published", "published", "rejected"]);
    for row in audit {
        assert_eq!(row["keyFingerprint"], "anonymous", "keys are off: {row}");
        assert_eq!(row["eventId"], expected_id.to_string());
        assert_eq!(
            (row["originalTopic"].clone(), row["originalOffset"].clone()),
            (json!(p.topic), json!(2))
        );
    }
    assert_eq!(
        (audit[0]["corrected"].clone(), audit[2]["corrected"].clone()),
        (json!(true), json!(false))
    );
    assert!(audit[2]["detail"]
        .as_str()
        .expect("detail")
        .contains("unknown level"));

    let list = listed(&base, 3, None).await;
    let invalid = entry_at(&list, 2);
    assert_eq!(invalid["replayed"], true);
    assert_eq!(invalid["replayCount"], 2, "two successful replays");
    assert!(invalid["lastReplayedAt"].is_string(), "{invalid}");
    let (_, counts) = get(format!("{base}{ADMIN}/counts"), None).await;
    assert_eq!(kind(&counts, "invalid_event"), (1, 0));

    // Many at once, as they are: not JSON, so the producer rejects both.
    let (status, bulk) = post(
        format!("{base}{ADMIN}/replay"),
        None,
        Some(json!({"reasonKind": "not_json", "limit": 10})),
    )
    .await;
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(
        (
            bulk["matched"].clone(),
            bulk["rejected"].clone(),
            bulk["published"].clone()
        ),
        (json!(2), json!(2), json!(0)),
        "{bulk}"
    );
    assert_eq!(bulk["stoppedEarly"], false);
    let (_, counts) = get(format!("{base}{ADMIN}/counts"), None).await;
    assert_eq!(
        kind(&counts, "not_json"),
        (2, 2),
        "a rejected replay leaves it unreplayed"
    );

    // The gauges: unreplayed per kind, read from the index.
    let metrics_url = format!("{base}/gateway/actuator/prometheus");
    let metrics = metrics_text(&metrics_url).await;
    assert!(
        metrics.contains("log_dead_letter_oldest_unreplayed_age_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("log_dead_letter_replays_total{outcome=\"rejected\"} 3"),
        "{metrics}"
    );
    eventually("the gauges read the index", Duration::from_secs(40), || {
        let url = metrics_url.clone();
        async move {
            let metrics = metrics_text(&url).await;
            (metrics.contains("log_dead_letters{reason_kind=\"not_json\"} 2")
                && metrics.contains("log_dead_letters{reason_kind=\"invalid_event\"} 0"))
            .then_some(())
        }
    })
    .await;

    gateway.stop().await;
    p.consumer.stop().await;
    p.producer.stop().await;
}

#[tokio::test]
async fn bad_requests_name_their_field_and_unknown_dead_letters_are_404() {
    let p = pipeline(|_| {}).await;
    let gateway = gateway(&p, |_| {}).await;
    let base = gateway.base.clone();
    for (query, field) in [
        ("size=101", "size"),
        ("size=0", "size"),
        ("page=-1", "page"),
        ("reasonKind=loud", "reasonKind"),
        ("from=yesterday", "from"),
        ("from=2026-11-29T12:00:00Z&to=2026-11-29T11:00:00Z", "to"),
    ] {
        let (status, body) = get(format!("{base}{ADMIN}?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
    for body in [
        json!({"limit": 1001}),
        json!({"limit": 0}),
        json!({"reasonKind": "loud"}),
    ] {
        let (status, answer) =
            post(format!("{base}{ADMIN}/replay"), None, Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, answer) = get(format!("{base}{ADMIN}/abc/replays"), None).await;
    assert_eq!(
        (status, answer["errors"][0]["field"].clone()),
        (400, json!("id")),
        "{answer}"
    );
    for (status, answer) in [
        get(format!("{base}{ADMIN}/987654"), None).await,
        get(format!("{base}{ADMIN}/987654/replays"), None).await,
        post(format!("{base}{ADMIN}/987654/replay"), None, None).await,
    ] {
        assert_eq!(status, 404, "{answer}");
        assert_eq!(answer["status"], 404);
    }
    let (status, answer) = post(
        format!("{base}{ADMIN}/1/replay"),
        None,
        Some(json!({"event": "not an object"})),
    )
    .await;
    // Validated before the dead letter is looked up.
    assert_eq!(
        (status, answer["errors"][0]["field"].clone()),
        (400, json!("event")),
        "{answer}"
    );
    // Nothing matches: an empty bulk replay.
    let (status, bulk) = post(format!("{base}{ADMIN}/replay"), None, Some(json!({}))).await;
    assert_eq!((status, bulk["matched"].clone()), (200, json!(0)), "{bulk}");
    gateway.stop().await;
    p.consumer.stop().await;
    p.producer.stop().await;
}

#[tokio::test]
async fn a_producer_that_cannot_be_reached_fails_the_replay_with_503_and_an_audit_row() {
    let p = pipeline(|_| {}).await;
    let source = unique("admin-dlq-down");
    for i in 0..2 {
        let loud = json!({"level": "LOUD", "message": format!("m{i}"), "source": source});
        send_raw(&p.topic, loud.to_string().as_bytes()).await;
    }
    // Nothing listens on port 1.
    let gateway = gateway(&p, |s| {
        s.replay.producer_url = "http://127.0.0.1:1".to_owned()
    })
    .await;
    let base = gateway.base.clone();
    let list = listed(&base, 2, None).await;
    let id = entry_at(&list, 0)["id"].as_i64().expect("id");
    let corrected = json!({"event": {"level": "INFO", "message": "m", "source": source}});
    let (status, answer) = post(format!("{base}{ADMIN}/{id}/replay"), None, Some(corrected)).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["status"], "unavailable");
    assert!(
        answer["message"]
            .as_str()
            .expect("message")
            .contains("producer unreachable"),
        "{answer}"
    );
    let (_, audit) = get(format!("{base}{ADMIN}/{id}/replays"), None).await;
    assert_eq!(audit[0]["outcome"], "failed", "{audit}");
    let (_, bulk) = post(
        format!("{base}{ADMIN}/replay"),
        None,
        Some(json!({"reasonKind": "invalid_event"})),
    )
    .await;
    assert_eq!(
        (
            bulk["matched"].clone(),
            bulk["failed"].clone(),
            bulk["stoppedEarly"].clone()
        ),
        (json!(2), json!(1), json!(true)),
        "{bulk}"
    );
    let list = listed(&base, 2, None).await;
    assert!(
        list["content"]
            .as_array()
            .expect("content")
            .iter()
            .all(|e| e["replayed"] == false),
        "{list}"
    );
    gateway.stop().await;
    p.consumer.stop().await;
    p.producer.stop().await;
}

#[tokio::test]
async fn with_api_keys_only_an_admin_key_reaches_the_admin_endpoints_and_its_fingerprint_is_audited(
) {
    let keys = |s: &mut log_common::auth::AuthSettings| {
        s.api_keys = Some("reader-key".parse().expect("infallible"));
        s.admin_api_keys = Some("admin-key".parse().expect("infallible"));
    };
    let p = pipeline(|s| keys(&mut s.auth)).await;
    let source = unique("admin-dlq-keys");
    send_raw(
        &p.topic,
        json!({"level": "LOUD", "message": "m", "source": source})
            .to_string()
            .as_bytes(),
    )
    .await;
    let gateway = gateway(&p, |s| keys(&mut s.auth)).await;
    let base = gateway.base.clone();
    let list = listed(&base, 1, Some("admin-key")).await;
    let id = entry_at(&list, 0)["id"].as_i64().expect("id");

    for path in [
        "".to_owned(),
        "/counts".to_owned(),
        format!("/{id}"),
        format!("/{id}/replays"),
    ] {
        let url = format!("{base}{ADMIN}{path}");
        for (key, expected) in [
            (None, 401),
            (Some("wrong"), 401),
            (Some("reader-key"), 403),
            (Some("admin-key"), 200),
        ] {
            let (status, body) = get(url.clone(), key).await;
            assert_eq!(status, expected, "{path} with {key:?}: {body}");
            if expected != 200 {
                assert_eq!(
                    body["status"], expected,
                    "the contract's error JSON: {body}"
                );
            }
        }
    }
    let (status, _) = post(
        format!("{base}{ADMIN}/{id}/replay"),
        Some("reader-key"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(format!("{base}{ADMIN}/replay"), None, Some(json!({}))).await;
    assert_eq!(status, 401);
    // An ordinary key still queries.
    let (status, _) = get(
        format!("{base}/gateway/api/query/logs?source={source}"),
        Some("reader-key"),
    )
    .await;
    assert_eq!(status, 200);

    // The admin key goes on to the producer, which takes it as an ordinary key.
    let corrected = json!({"event": {"level": "ERROR", "message": "m", "source": source}});
    let (status, replayed) = post(
        format!("{base}{ADMIN}/{id}/replay"),
        Some("admin-key"),
        Some(corrected),
    )
    .await;
    assert_eq!(
        (status, replayed["outcome"].clone()),
        (200, json!("published")),
        "{replayed}"
    );
    let (_, audit) = get(format!("{base}{ADMIN}/{id}/replays"), Some("admin-key")).await;
    assert_eq!(
        audit[0]["keyFingerprint"],
        fingerprint("admin-key"),
        "{audit}"
    );
    assert!(
        !audit.to_string().contains("admin-key"),
        "the key itself is never stored"
    );
    gateway.stop().await;
    p.consumer.stop().await;
    p.producer.stop().await;
}

/// Dead letters in the index of the database at `url`.
fn indexed(url: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query("SELECT count(*) AS n FROM dead_letters")
        .get_result::<Count>(&mut conn)
        .expect("count")
        .n
}

fn execute(url: &str, sql: &str) {
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query(sql).execute(&mut conn).expect(sql);
}

/// A counter's value in Prometheus text, 0 when absent.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The consumer alone, with one writer and quick retries, on a fresh topic and database.
/// A record that is not JSON, then a valid event behind it on the same partition:
/// the event's id, to see whether the partition moved past the poison.
async fn send_poison_then_an_event(topic: &str) -> Uuid {
    send_raw(topic, b"not json").await;
    let good = Uuid::now_v7();
    let event = json!({"id": good, "level": "INFO", "message": "after", "source": "s"});
    send_raw(topic, event.to_string().as_bytes()).await;
    good
}

async fn consumer_alone(database: &str) -> (String, Running) {
    let (topic, dlq, group) = (
        unique("admin-dlq"),
        unique("admin-dlq-dlq"),
        unique("admin-dlq-group"),
    );
    create_topic(&topic, 1).await;
    create_topic(&dlq, 1).await;
    let url = database.to_owned();
    let consumer = spawn_consumer_with(&topic, &dlq, &group, move |s| {
        s.postgres.url = url;
        s.consumer.writers = 1;
        s.consumer.retry_initial_ms = 50;
        s.consumer.retry_max_ms = 200;
    })
    .await;
    (topic, consumer)
}

#[tokio::test]
async fn a_dead_letter_is_indexed_before_its_partition_moves_on_retrying_while_postgresql_fails() {
    let database = new_migrated_database();
    // The index insert fails (42501, a code diesel does not name: retried as transient).
    execute(&database, "REVOKE INSERT ON dead_letters FROM CURRENT_USER");
    let (topic, consumer) = consumer_alone(&database).await;
    let good = send_poison_then_an_event(&topic).await;
    let metrics_url = format!("{}/actuator/prometheus", consumer.base);
    eventually("the index write retried", Duration::from_secs(60), || {
        let url = metrics_url.clone();
        async move {
            let metrics = metrics_text(&url).await;
            (counter(&metrics, "dead_letter_messages_total") == 1.0
                && counter(&metrics, "db_write_retries_total") >= 3.0)
                .then_some(())
        }
    })
    .await;
    let (_, health) = get(format!("{}/actuator/health", consumer.base), None).await;
    assert!(
        health.to_string().contains("dead-letter index"),
        "health says what the writer retries: {health}"
    );
    // Retrying, the writer holds the batch: the event after the poison waits.
    assert_eq!(
        rows_with_id(&database, good),
        0,
        "nothing commits past an unindexed dead letter"
    );
    assert_eq!(indexed(&database), 0);

    execute(&database, "GRANT INSERT ON dead_letters TO CURRENT_USER");
    eventually(
        "the event after the poison stored",
        Duration::from_secs(60),
        || async { (rows_with_id(&database, good) == 1).then_some(()) },
    )
    .await;
    assert_eq!(indexed(&database), 1, "indexed once");
    let metrics = metrics_text(&metrics_url).await;
    assert_eq!(
        counter(&metrics, "dead_letter_messages_total"),
        1.0,
        "sent to Kafka once"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn a_dead_letter_the_index_refuses_for_good_does_not_stall_its_partition() {
    let database = new_migrated_database();
    execute(&database, "ALTER TABLE dead_letters ADD CONSTRAINT test_refuses CHECK (reason_kind <> 'not_json') NOT VALID");
    let (topic, consumer) = consumer_alone(&database).await;
    let good = send_poison_then_an_event(&topic).await;
    eventually(
        "the event after the poison stored",
        Duration::from_secs(60),
        || async { (rows_with_id(&database, good) == 1).then_some(()) },
    )
    .await;
    assert_eq!(indexed(&database), 0, "refused, logged, skipped");
    let metrics = metrics_text(&format!("{}/actuator/prometheus", consumer.base)).await;
    assert_eq!(
        counter(&metrics, "dead_letter_messages_total"),
        1.0,
        "still in the topic"
    );
    consumer.stop().await;
}

#[tokio::test]
async fn the_upkeep_deletes_dead_letters_past_their_retention_with_their_audit() {
    let database = new_migrated_database();
    execute(
        &database,
        "INSERT INTO dead_letters (original_topic, original_partition, original_offset, reason_kind, reason, failed_at, payload) VALUES \
         ('t', 0, 1, 'empty', 'empty message', now() - interval '40 days', ''), \
         ('t', 0, 2, 'empty', 'empty message', now() - interval '2 days', '')",
    );
    execute(
        &database,
        "INSERT INTO dead_letter_replays (dead_letter_id, key_fingerprint, original_topic, original_partition, original_offset, corrected, event_id, outcome, detail) \
         SELECT id, 'anonymous', 't', 0, 1, false, gen_random_uuid(), 'rejected', 'x' FROM dead_letters",
    );
    let mut conn = PgConnection::establish(&database).expect("connect");
    let upkeep = |days| log_store::Upkeep {
        retention_days: 30,
        id_memory_days: 2,
        dead_letter_retention_days: days,
    };
    let now = chrono::Utc::now();
    assert_eq!(
        upkeep(0)
            .run(&mut conn, now)
            .expect("upkeep")
            .dead_letters_purged,
        0,
        "0 keeps all"
    );
    assert_eq!(
        upkeep(30)
            .run(&mut conn, now)
            .expect("upkeep")
            .dead_letters_purged,
        1
    );
    assert_eq!(indexed(&database), 1, "the recent one is kept");
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let audit: Count = diesel::sql_query("SELECT count(*) AS n FROM dead_letter_replays")
        .get_result(&mut conn)
        .expect("audit");
    assert_eq!(audit.n, 1, "the purged one's audit went with it");
}

#[tokio::test]
async fn without_postgresql_the_admin_endpoints_answer_503() {
    let gateway = spawn_gateway(|s| {
        s.postgres.url = "postgres://127.0.0.1:1/nowhere".to_owned();
        s.postgres.connect_timeout_ms = 200;
    })
    .await;
    for (status, body) in [
        get(format!("{}{ADMIN}", gateway.base), None).await,
        get(format!("{}{ADMIN}/counts", gateway.base), None).await,
        post(format!("{}{ADMIN}/1/replay", gateway.base), None, None).await,
    ] {
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unavailable", "{body}");
    }
    gateway.stop().await;
}
