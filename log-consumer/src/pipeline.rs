//! The consume loop: gather a batch, dead-letter what can never be stored, write the
//! rest and the offsets in one transaction (retrying transient failures), repeat.

use crate::dead_letter::DeadLetters;
use crate::metrics::ConsumerMetrics;
use crate::rebalance::{Assignment, PipelineContext};
use crate::record::{Inbound, NewLogEvent};
use crate::settings::ConsumerTuning;
use crate::store::{Store, StoreError};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub type LogConsumer = StreamConsumer<PipelineContext>;

/// What the health endpoint reads about the pipeline.
#[derive(Default)]
pub struct PipelineStatus {
    /// True while a batch is being retried because PostgreSQL failed.
    pub retrying: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

pub struct Pipeline {
    pub consumer: Arc<LogConsumer>,
    pub store: Store,
    pub dead_letters: DeadLetters,
    pub metrics: ConsumerMetrics,
    pub tuning: ConsumerTuning,
    pub topic: String,
    pub assignment: Arc<Assignment>,
    pub status: Arc<PipelineStatus>,
}

impl Pipeline {
    /// Runs until `shutdown` turns true; the batch in hand is finished and committed
    /// first (or abandoned, uncommitted, if the database is away).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let batch = self.collect_batch(&mut shutdown).await;
            if !batch.is_empty() {
                self.process(batch, &mut shutdown).await;
            }
            if *shutdown.borrow() {
                break;
            }
        }
        tracing::info!("pipeline stopped");
    }

    /// Waits for a first record, then gathers more until the batch is full or
    /// `batch_max_wait_ms` has passed.
    async fn collect_batch(&self, shutdown: &mut watch::Receiver<bool>) -> Vec<Inbound> {
        let mut batch = Vec::new();
        let mut deadline = None;
        while batch.len() < self.tuning.batch_max_records {
            let received = match deadline {
                None => tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return batch,
                    r = self.consumer.recv() => r,
                },
                Some(deadline) => tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return batch,
                    r = tokio::time::timeout_at(deadline, self.consumer.recv()) => match r {
                        Ok(r) => r,
                        Err(_elapsed) => return batch,
                    },
                },
            };
            match received {
                Ok(message) => {
                    self.metrics.consumed.inc();
                    batch.push(Inbound {
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                        timestamp_ms: message.timestamp().to_millis(),
                        generation: self.assignment.generation(),
                    });
                    deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now()
                            + Duration::from_millis(self.tuning.batch_max_wait_ms)
                    });
                }
                Err(e) => {
                    self.metrics.errors.with_label_values(&["poll"]).inc();
                    tracing::warn!(error = %e, "Kafka poll error");
                }
            }
        }
        batch
    }

    async fn process(&self, mut batch: Vec<Inbound>, shutdown: &mut watch::Receiver<bool>) {
        let started = Instant::now();
        // Records received before the latest rebalance may belong to partitions we
        // no longer own, or were re-sought; the owner reads them again from the
        // offset stored in PostgreSQL.
        let generation = self.assignment.generation();
        let owned = self.assignment.partitions();
        let before = batch.len();
        batch.retain(|m| m.generation == generation && owned.contains(&m.partition));
        if batch.len() < before {
            tracing::info!(
                dropped = before - batch.len(),
                "records from a previous assignment dropped"
            );
        }
        if batch.is_empty() {
            return;
        }
        self.metrics.batch_size.observe(batch.len() as f64);

        let mut next_offsets = BTreeMap::new();
        let mut rows = Vec::with_capacity(batch.len());
        let mut poison = Vec::new();
        for message in &batch {
            let next = next_offsets.entry(message.partition).or_insert(0);
            *next = (*next).max(message.offset + 1);
            match message.to_row(&self.topic) {
                Ok(row) => rows.push(row),
                Err(reason) => poison.push((message, reason)),
            }
        }

        // Dead letters first: once Kafka has them, their offsets may advance with
        // the transaction below. A crash in between sends them again (at-least-once
        // for the DLQ), never loses them.
        for (message, reason) in poison {
            if !self.dead_letter(message, &reason, shutdown).await {
                return;
            }
        }

        let rows = Arc::new(rows);
        let Some(inserted) = self.write_with_retry(&rows, &next_offsets, shutdown).await else {
            return;
        };
        self.metrics.rows_written.inc_by(inserted as u64);
        self.metrics
            .duplicates
            .inc_by((rows.len() - inserted.min(rows.len())) as u64);
        self.metrics
            .processing
            .observe(started.elapsed().as_secs_f64());
        self.commit_to_kafka(&next_offsets, generation);
    }

    /// Sends one poison message to the DLQ, retrying until Kafka takes it. False if
    /// shutdown came first (the batch is abandoned, nothing committed).
    async fn dead_letter(
        &self,
        message: &Inbound,
        reason: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut backoff = Backoff::new(&self.tuning);
        loop {
            match self.dead_letters.send(message, reason).await {
                Ok(()) => {
                    self.metrics.dead_letters.inc();
                    self.metrics.errors.with_label_values(&["poison"]).inc();
                    tracing::warn!(
                        partition = message.partition,
                        offset = message.offset,
                        reason,
                        "message sent to the dead-letter topic"
                    );
                    return true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "dead-letter send failed; retrying");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// The batch transaction, retried with capped exponential backoff on transient
    /// failures. `None` if shutdown came first.
    async fn write_with_retry(
        &self,
        rows: &Arc<Vec<NewLogEvent>>,
        next_offsets: &BTreeMap<i32, i64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<usize> {
        let mut backoff = Backoff::new(&self.tuning);
        loop {
            let started = Instant::now();
            let (store, batch, offsets) = (self.store.clone(), rows.clone(), next_offsets.clone());
            let result = tokio::task::spawn_blocking(move || store.write_batch(&batch, &offsets))
                .await
                .unwrap_or_else(|e| Err(StoreError::Transient(format!("write task failed: {e}"))));
            match result {
                Ok(inserted) => {
                    self.metrics
                        .db_write
                        .observe(started.elapsed().as_secs_f64());
                    if self.status.retrying.swap(false, Ordering::SeqCst) {
                        tracing::info!("database writes recovered");
                    }
                    return Some(inserted);
                }
                Err(StoreError::Transient(e)) => {
                    self.metrics.retries.inc();
                    self.metrics
                        .errors
                        .with_label_values(&["db_transient"])
                        .inc();
                    self.status.retrying.store(true, Ordering::SeqCst);
                    if let Ok(mut last) = self.status.last_error.lock() {
                        *last = Some(e.clone());
                    }
                    tracing::warn!(error = %e, rows = rows.len(), "batch write failed; retrying (fetching paused)");
                    if !backoff.wait(shutdown).await {
                        tracing::warn!("shutdown during retry: batch abandoned uncommitted; it is read again on restart");
                        return None;
                    }
                }
                Err(StoreError::Permanent(e)) => {
                    tracing::error!(error = %e, "batch rejected by the database; storing row by row");
                    return self.write_row_by_row(rows, next_offsets, shutdown).await;
                }
            }
        }
    }

    /// Fallback when the database rejects a batch as data: each row alone, the ones
    /// it still rejects to the DLQ, then the offsets. Rows committed before a crash
    /// here are skipped as duplicates on replay.
    async fn write_row_by_row(
        &self,
        rows: &Arc<Vec<NewLogEvent>>,
        next_offsets: &BTreeMap<i32, i64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<usize> {
        let mut inserted = 0;
        for row in rows.iter() {
            let (store, one) = (self.store.clone(), Arc::new(vec![row.clone()]));
            let result =
                tokio::task::spawn_blocking(move || store.write_batch(&one, &BTreeMap::new()))
                    .await
                    .unwrap_or_else(|e| Err(StoreError::Transient(e.to_string())));
            match result {
                Ok(n) => inserted += n,
                Err(StoreError::Permanent(reason)) => {
                    let message = Inbound {
                        partition: row.kafka_partition,
                        offset: row.kafka_offset,
                        key: Some(row.source.clone().into_bytes()),
                        payload: serde_json::to_vec(&serde_json::json!({
                            "id": row.id, "level": row.level, "message": row.message, "source": row.source,
                            "timestamp": row.timestamp, "metadata": row.metadata,
                        }))
                        .ok(),
                        timestamp_ms: None,
                        generation: 0,
                    };
                    if !self.dead_letter(&message, &reason, shutdown).await {
                        return None;
                    }
                }
                // The database went away mid-fallback: retry the whole batch.
                Err(StoreError::Transient(_)) => {
                    return Box::pin(self.write_with_retry(rows, next_offsets, shutdown)).await
                }
            }
        }
        let store = self.store.clone();
        let offsets = next_offsets.clone();
        match tokio::task::spawn_blocking(move || store.write_batch(&[], &offsets)).await {
            Ok(Ok(_)) => Some(inserted),
            _ => Box::pin(self.write_with_retry(&Arc::new(Vec::new()), next_offsets, shutdown))
                .await
                .map(|_| inserted),
        }
    }

    /// Kafka's committed offsets are only a mirror, for lag tools; PostgreSQL is the
    /// truth. Skipped if a rebalance happened since the batch was taken.
    fn commit_to_kafka(&self, next_offsets: &BTreeMap<i32, i64>, generation: u64) {
        if self.assignment.generation() != generation {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next_offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
            {
                tracing::debug!(error = %e, "cannot mirror offset");
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "offset mirror to Kafka failed (harmless)");
        }
    }
}

/// Capped exponential backoff with jitter, interruptible by shutdown.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(tuning: &ConsumerTuning) -> Self {
        Backoff {
            next: Duration::from_millis(tuning.retry_initial_ms.max(1)),
            max: Duration::from_millis(tuning.retry_max_ms.max(tuning.retry_initial_ms)),
        }
    }

    /// Sleeps for the next delay (half fixed, half random); false if shutdown came.
    async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let half = self.next / 2;
        let delay = half + half.mul_f64(jitter());
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// A number in [0, 1) that differs between instances and retries; enough to keep
/// several consumers from retrying in lockstep.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    (hasher.finish() % 10_000) as f64 / 10_000.0
}
