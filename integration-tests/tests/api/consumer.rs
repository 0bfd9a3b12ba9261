//! The consumer on port 0 against the real broker and PostgreSQL, on a topic, dead
//! letter topic and consumer group of its own.

use crate::helpers::{
    create_topic, eventually, get_json, rows_for_source, spawn_consumer, spawn_consumer_with,
    unique, KAFKA,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

pub(crate) struct Topics {
    pub topic: String,
    pub dlq: String,
    pub group: String,
}

pub(crate) async fn topics() -> Topics {
    let t = Topics {
        topic: unique("consumer-test"),
        dlq: unique("consumer-test-dlq"),
        group: unique("consumer-test-group"),
    };
    create_topic(&t.topic, 3).await;
    create_topic(&t.dlq, 1).await;
    t
}

pub(crate) fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .set("acks", "all")
        .set("message.max.bytes", "2097152")
        .create()
        .expect("producer")
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("sent");
}

pub(crate) async fn send_events(
    producer: &FutureProducer,
    topic: &str,
    source: &str,
    ids: &[Uuid],
) {
    for (i, id) in ids.iter().enumerate() {
        // Recent timestamps: RETENTION_DAYS would delete old ones.
        let event = json!({"id": id, "level": "INFO", "message": format!("event {i}"), "source": source,
            "timestamp": chrono::Utc::now(), "metadata": {"i": i, "nested": {"zoë": [1.5e300, "x"]}}});
        send(producer, topic, source, event.to_string().as_bytes()).await;
    }
}

pub(crate) async fn wait_for_rows(source: &str, expected: usize) -> Vec<Uuid> {
    let ids = eventually(
        &format!("{expected} rows for {source}"),
        Duration::from_secs(60),
        || async {
            let rows = rows_for_source(source);
            (rows.len() >= expected).then(|| rows.into_iter().map(|r| r.id).collect::<Vec<_>>())
        },
    )
    .await;
    // Give a late duplicate the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ids
}

#[tokio::test]
async fn stores_every_event_once_across_a_restart_and_replays() {
    let t = topics().await;
    let source = unique("consumer-src");
    let producer = producer();
    let first: Vec<Uuid> = (0..300).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &first).await;

    let app = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    let stored = wait_for_rows(&source, 300).await;
    assert_eq!(rows_for_source(&source).len(), 300);
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        first.iter().collect::<HashSet<_>>()
    );
    // Every committed row's Kafka-to-commit time is in the pipeline latency histogram.
    let metrics = crate::helpers::metrics_text(&format!("{}/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("log_pipeline_latency_seconds_count 300"),
        "{metrics}"
    );
    // The partition upkeep ran at start (the days ahead exist) and did not fail.
    assert!(
        metrics.contains("log_partitions_created_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("log_partition_upkeep_failures_total 0"),
        "{metrics}"
    );

    // Replaying ids already stored (a producer retry, a re-sent batch) adds nothing.
    send_events(&producer, &t.topic, &source, &first[..50]).await;
    let second: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &second).await;
    wait_for_rows(&source, 400).await;
    assert_eq!(
        rows_for_source(&source).len(),
        400,
        "replayed ids are stored once"
    );

    // A restart while events keep arriving: the new instance resumes from the
    // offsets in PostgreSQL and neither loses nor repeats anything. (kill -9 of the
    // real process is exercised against the stack setup.sh runs.)
    app.stop().await;
    let third: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &third).await;
    let app = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    wait_for_rows(&source, 500).await;
    let rows = rows_for_source(&source);
    assert_eq!(rows.len(), 500);
    assert_eq!(rows.iter().map(|r| r.id).collect::<HashSet<_>>().len(), 500);

    let (status, health) = get_json(format!("{}/actuator/health", app.base)).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "UP");
    app.stop().await;
}

#[tokio::test]
async fn an_id_sent_again_is_stored_once_whatever_its_timestamp() {
    let t = topics().await;
    let source = unique("dedup");
    let producer = producer();
    let ids: Vec<Uuid> = (0..120).map(|_| Uuid::now_v7()).collect();
    send_events(&producer, &t.topic, &source, &ids).await;
    // Half of them again, as a client retry without a timestamp would arrive: a new
    // receive time, here a day earlier, so another day's partition.
    let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    for (i, id) in ids[..60].iter().enumerate() {
        let event = json!({"id": id, "level": "INFO", "message": format!("retry {i}"),
            "source": &source, "timestamp": yesterday});
        send(&producer, &t.topic, &source, event.to_string().as_bytes()).await;
    }
    // And the first ten once more, unchanged (duplicates within one batch too).
    send_events(&producer, &t.topic, &source, &ids[..10]).await;
    let app = spawn_consumer(&t.topic, &t.dlq, &t.group).await;
    let stored = wait_for_rows(&source, 120).await;
    assert_eq!(stored.len(), 120);
    assert_eq!(
        stored.iter().collect::<HashSet<_>>(),
        ids.iter().collect::<HashSet<_>>()
    );
    assert_eq!(
        rows_with_metadata(&source, r#"{"nested": {"zoë": [1.5e300, "x"]}}"#),
        120,
        "the first copies, metadata stored as sent"
    );
    assert_eq!(
        crate::helpers::counted_events_in(&mut crate::helpers::db(), &source),
        120
    );
    app.stop().await;
}

#[tokio::test]
async fn rebalances_while_streaming_lose_and_repeat_nothing_with_one_writer() {
    rebalances_while_streaming(1).await;
}

#[tokio::test]
async fn rebalances_while_streaming_lose_and_repeat_nothing_with_two_writers() {
    rebalances_while_streaming(2).await;
}

/// Three instances of `writers` writers each join and leave a group while events stream in.
async fn rebalances_while_streaming(writers: usize) {
    let t = Topics {
        topic: unique("rebalance-test"),
        dlq: unique("rebalance-test-dlq"),
        group: unique("rebalance-group"),
    };
    create_topic(&t.topic, 6).await;
    create_topic(&t.dlq, 1).await;
    let source_prefix = unique("rebalance");
    // Many sources, so the keys spread over all six partitions.
    let sources: Vec<String> = (0..12).map(|i| format!("{source_prefix}-{i}")).collect();

    let spawn =
        || spawn_consumer_with(&t.topic, &t.dlq, &t.group, |s| s.consumer.writers = writers);
    let first = spawn().await;
    let second = spawn().await;
    let stream = {
        let (topic, sources) = (t.topic.clone(), sources.clone());
        tokio::spawn(async move {
            let producer = producer();
            for round in 0..40 {
                for source in &sources {
                    let event = json!({"id": Uuid::now_v7(), "level": "INFO", "message": format!("round {round}"),
                        "source": source, "timestamp": chrono::Utc::now()});
                    send(&producer, &topic, source, event.to_string().as_bytes()).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let third = spawn().await; // joins mid-stream
    tokio::time::sleep(Duration::from_millis(700)).await;
    second.stop().await; // leaves mid-stream
    stream.await.expect("producer task");

    let expected = 40 * sources.len();
    let total = eventually(&format!("{expected} rows"), Duration::from_secs(90), || {
        let sources = sources.clone();
        async move {
            let n: usize = sources.iter().map(|s| rows_for_source(s).len()).sum();
            (n >= expected).then_some(n)
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: usize = sources.iter().map(|s| rows_for_source(s).len()).sum();
    assert_eq!(
        (total, after),
        (expected, expected),
        "exactly once through two rebalances, {writers} writer(s) each"
    );
    first.stop().await;
    third.stop().await;
}

/// How many of `source`'s rows have metadata containing `json`.
fn rows_with_metadata(source: &str, json: &str) -> i64 {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM log_events WHERE source = $1 AND metadata @> $2::jsonb",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .bind::<diesel::sql_types::Text, _>(json)
    .get_result::<Count>(&mut crate::helpers::db())
    .expect("count")
    .n
}

/// Rows for the fence tests, as a writer would hand them to the store.
fn rows(
    source: &str,
    partition: i32,
    offsets: std::ops::Range<i64>,
) -> Vec<log_store::NewLogEvent> {
    offsets
        .map(|offset| log_store::NewLogEvent {
            id: Uuid::now_v7(),
            level: "INFO".into(),
            message: format!("offset {offset}"),
            source: source.to_owned(),
            timestamp: chrono::Utc::now(),
            metadata: None,
            correlation_id: None,
            request_id: None,
            trace_id: None,
            lane: 0,
            kafka_partition: partition,
            kafka_offset: offset,
        })
        .collect()
}

fn store_for(group: &str, topic: &str) -> log_store::Store {
    let mut settings = log_consumer::settings::Settings::defaults();
    crate::helpers::use_test_database(&mut settings.postgres);
    log_store::Store::new(&settings.postgres, group, topic).expect("store")
}

fn stored_offset(group: &str, topic: &str, partition: i32) -> Option<i64> {
    use diesel::prelude::*;
    use log_store::schema::consumer_offsets::dsl as o;
    o::consumer_offsets
        .filter(o::consumer_group.eq(group))
        .filter(o::topic.eq(topic))
        .filter(o::partition.eq(partition))
        .select(o::next_offset)
        .first::<Option<i64>>(&mut crate::helpers::db())
        .expect("offset row")
}

/// The fence: once another owner has claimed a partition, a writer still holding the
/// old claim (its instance was rebalanced away, or paused past its session) commits
/// neither rows nor offsets for it. Without the check in the batch transaction, the
/// stale batch below is stored and moves the offset past what the new owner reads.
#[tokio::test]
async fn a_writer_whose_partition_was_claimed_again_commits_nothing() {
    use log_store::{PartitionCommit, StoreError};
    use std::collections::BTreeMap;
    let (group, topic, source) = (
        unique("fence-group"),
        unique("fence-topic"),
        unique("fence"),
    );
    let (old_owner, new_owner) = (store_for(&group, &topic), store_for(&group, &topic));
    let commit = |next_offset, epoch| PartitionCommit { next_offset, epoch };
    let (g, t, s) = (group.clone(), topic.clone(), source.clone());
    tokio::task::spawn_blocking(move || {
        let old = old_owner.claim_partitions(&[0, 1]).expect("claim");
        assert_eq!(
            old[&0].next_offset, None,
            "nothing stored yet: start at the beginning"
        );
        let first = rows(&s, 0, 0..2);
        let written = old_owner
            .write_batch(&first, &BTreeMap::from([(0, commit(2, old[&0].epoch))]))
            .expect("the owner writes");
        assert_eq!(written, 2);

        // A rebalance: partition 0 goes to another instance, which claims it.
        let new = new_owner.claim_partitions(&[0]).expect("claim");
        assert_eq!(
            new[&0].next_offset,
            Some(2),
            "the new owner starts after what was committed"
        );
        assert!(new[&0].epoch > old[&0].epoch);

        // The old owner's batch in flight for partition 0 is refused whole.
        let stale = rows(&s, 0, 2..5);
        let refused = old_owner.write_batch(
            &stale,
            &BTreeMap::from([(0, commit(5, old[&0].epoch)), (1, commit(7, old[&1].epoch))]),
        );
        assert!(
            matches!(refused, Err(StoreError::Fenced(ref p)) if p == &vec![0]),
            "{refused:?}"
        );
        assert_eq!(
            rows_for_source(&s).len(),
            2,
            "no row of the fenced batch is stored"
        );
        assert_eq!(stored_offset(&g, &t, 0), Some(2));
        assert_eq!(
            stored_offset(&g, &t, 1),
            None,
            "the fenced transaction moved no offset"
        );

        // Partition 1 is still the old owner's: its batches commit.
        old_owner
            .write_batch(
                &rows(&s, 1, 0..3),
                &BTreeMap::from([(1, commit(3, old[&1].epoch))]),
            )
            .expect("still owned");
        assert_eq!(stored_offset(&g, &t, 1), Some(3));

        // The new owner reads the same records again and stores them once.
        new_owner
            .write_batch(&stale, &BTreeMap::from([(0, commit(5, new[&0].epoch))]))
            .expect("new owner writes");
        assert_eq!(stored_offset(&g, &t, 0), Some(5));
    })
    .await
    .expect("fence scenario");
    assert_eq!(rows_for_source(&source).len(), 8);
}

/// A claim that arrives while a batch for the same partition is in flight waits for
/// that transaction and starts after what it committed; the claim never reads an
/// offset that a commit is about to move.
#[tokio::test]
async fn a_claim_waits_for_the_batch_in_flight_and_starts_after_it() {
    use diesel::prelude::*;
    let (group, topic) = (unique("claim-group"), unique("claim-topic"));
    let (first, second) = (store_for(&group, &topic), store_for(&group, &topic));
    let claimed = tokio::task::spawn_blocking(move || first.claim_partitions(&[0]))
        .await
        .expect("task")
        .expect("claim");
    assert_eq!(claimed[&0].next_offset, None);

    // A batch transaction of the first owner, holding the partition's row.
    let mut in_flight = crate::helpers::db();
    diesel::sql_query("BEGIN")
        .execute(&mut in_flight)
        .expect("begin");
    diesel::sql_query(
        "SELECT owner_epoch FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 FOR UPDATE",
    )
    .bind::<diesel::sql_types::Text, _>(&group)
    .bind::<diesel::sql_types::Text, _>(&topic)
    .execute(&mut in_flight)
    .expect("lock");

    let claim = tokio::task::spawn_blocking(move || second.claim_partitions(&[0]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !claim.is_finished(),
        "the claim waits for the batch in flight"
    );
    diesel::sql_query(
        "UPDATE consumer_offsets SET next_offset = 42 WHERE consumer_group = $1 AND topic = $2",
    )
    .bind::<diesel::sql_types::Text, _>(&group)
    .bind::<diesel::sql_types::Text, _>(&topic)
    .execute(&mut in_flight)
    .expect("move offset");
    diesel::sql_query("COMMIT")
        .execute(&mut in_flight)
        .expect("commit");

    let reclaimed = claim.await.expect("task").expect("claim");
    assert_eq!(reclaimed[&0].next_offset, Some(42));
    assert_eq!(reclaimed[&0].epoch, claimed[&0].epoch + 1);
}
