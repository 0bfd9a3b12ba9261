//! A writer: owns a disjoint set of partitions (dealt by the assignment) and a
//! database connection at a time, and writes each batch it is handed: dead letters
//! first, then the rows and the next offsets in one transaction, fenced on the claim
//! epochs, retrying transient failures with backoff.

use crate::dead_letter::{self, DeadLetters};
use crate::metrics::ConsumerMetrics;
use crate::pipeline::{LaneTopic, LogConsumer, PipelineStatus, UnstoredBatch};
use crate::rebalance::Assignment;
use crate::record::{AcceptedTimes, Inbound, Poison};
use crate::retry::Retry;
use crate::settings::ConsumerTuning;
use chrono::{DateTime, Utc};
use log_store::dead_letters::ReasonKind;
use log_store::{NewLogEvent, PartitionCommit, Store, StoreError};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// The records of one writer's partitions, decoded, with the offsets they move to.
pub struct Batch {
    /// The assignment generation the records arrived under.
    pub generation: u64,
    /// When the first record was taken off Kafka.
    started: Instant,
    records: usize,
    rows: Vec<NewLogEvent>,
    /// The record each row came from, same order: what a dead letter carries if
    /// PostgreSQL rejects the row for good, and its Kafka timestamp for
    /// `log_pipeline_latency_seconds`. (The bytes were read anyway; keeping them costs
    /// no copy.)
    originals: Vec<Inbound>,
    poison: Vec<(Inbound, Poison)>,
    commits: BTreeMap<i32, PartitionCommit>,
    /// The event times this batch stores, fixed when it was started.
    accepted: AcceptedTimes,
    /// Its place among the lane's unstored batches, left when the batch is dropped.
    _unstored: UnstoredBatch,
}

impl Batch {
    pub fn new(
        generation: u64,
        started: Instant,
        accepted: AcceptedTimes,
        unstored: UnstoredBatch,
    ) -> Self {
        Batch {
            generation,
            started,
            accepted,
            _unstored: unstored,
            records: 0,
            rows: Vec::new(),
            originals: Vec::new(),
            poison: Vec::new(),
            commits: BTreeMap::new(),
        }
    }

    /// Decodes one record into a row (or a reason it is poison) and moves its
    /// partition's next offset past it.
    pub fn add(&mut self, record: Inbound, epoch: i64, topic: &LaneTopic) {
        self.records += 1;
        let commit = self
            .commits
            .entry(record.partition)
            .or_insert(PartitionCommit {
                next_offset: 0,
                epoch,
            });
        commit.next_offset = commit.next_offset.max(record.offset + 1);
        match record.to_row(&topic.name, topic.lane, &self.accepted) {
            Ok(row) => {
                self.rows.push(row);
                self.originals.push(record);
            }
            Err(reason) => self.poison.push((record, reason)),
        }
    }

    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

pub struct Writer {
    pub index: usize,
    pub consumer: Arc<LogConsumer>,
    pub store: Store,
    pub dead_letters: Arc<DeadLetters>,
    pub metrics: ConsumerMetrics,
    pub tuning: ConsumerTuning,
    pub topic: LaneTopic,
    pub assignment: Arc<Assignment>,
    pub status: Arc<PipelineStatus>,
}

impl Writer {
    /// Writes batches until the dispatcher closes the channel (at shutdown, after
    /// handing over what it had gathered).
    pub async fn run(
        self,
        mut batches: mpsc::Receiver<Batch>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while let Some(batch) = batches.recv().await {
            self.process(batch, &mut shutdown).await;
        }
        tracing::debug!(writer = self.index, "writer stopped");
    }

    async fn process(&self, batch: Batch, shutdown: &mut watch::Receiver<bool>) {
        // Cheap early exit; the fence in the transaction is what guarantees it.
        if batch.generation != self.assignment.generation() {
            tracing::info!(
                writer = self.index,
                dropped = batch.len(),
                "batch from a previous assignment dropped"
            );
            return;
        }
        if batch.is_empty() {
            return;
        }
        self.metrics.batch_size.observe(batch.len() as f64);

        // Dead letters first: once Kafka has them (and their index rows are written),
        // their offsets may advance with the transaction below. A crash in between
        // sends them again (at-least-once for the DLQ; the index keeps one row per
        // origin), never loses them.
        for (message, reason) in &batch.poison {
            if !self.dead_letter(message, reason, shutdown).await {
                return;
            }
        }

        let rows = Arc::new(batch.rows);
        let originals = batch.originals;
        let work = Work {
            rows: &rows,
            originals: &originals,
            commits: &batch.commits,
        };
        let written = self.write_with_retry(work, shutdown).await;
        let inserted = match written {
            Written::Committed(inserted) => inserted,
            Written::Fenced(partitions) => {
                self.metrics.fenced_batches.inc();
                tracing::warn!(
                    writer = self.index,
                    ?partitions,
                    records = batch.records,
                    "partitions claimed by a newer owner; batch dropped uncommitted"
                );
                return;
            }
            Written::Abandoned => return,
        };
        self.metrics.rows_written.inc_by(inserted as u64);
        self.metrics
            .duplicates
            .inc_by((rows.len() - inserted.min(rows.len())) as u64);
        self.metrics
            .processing
            .observe(batch.started.elapsed().as_secs_f64());
        let now_ms = chrono::Utc::now().timestamp_millis();
        for ts in originals.iter().filter_map(|record| record.timestamp_ms) {
            self.metrics
                .pipeline_latency
                .observe((now_ms - ts).max(0) as f64 / 1000.0);
        }
        self.commit_to_kafka(&batch.commits, batch.generation);
    }

    /// Sends one poison message to the DLQ, retrying until Kafka takes it, then
    /// writes its index row. False if shutdown came first (the batch is abandoned,
    /// nothing committed).
    async fn dead_letter(
        &self,
        message: &Inbound,
        poison: &Poison,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut retry = Retry::for_writes(&self.tuning);
        let failed_at = loop {
            match self.dead_letters.send(message, poison).await {
                Ok(failed_at) => {
                    self.metrics.dead_letters.inc();
                    self.metrics.errors.with_label_values(&["poison"]).inc();
                    tracing::warn!(
                        partition = message.partition,
                        offset = message.offset,
                        reason_kind = poison.kind.as_str(),
                        reason = %poison,
                        "message sent to the dead-letter topic"
                    );
                    break failed_at;
                }
                Err(e) => {
                    tracing::error!(error = %e, "dead-letter send failed; retrying");
                    if !retry.wait(shutdown).await {
                        return false;
                    }
                }
            }
        };
        self.index_dead_letter(message, poison, failed_at, shutdown)
            .await
    }

    /// Writes a dead letter's index row (`ON CONFLICT DO NOTHING`: one row per origin),
    /// retrying transient PostgreSQL failures like the batch write does. A row the
    /// database refuses for good is logged and skipped: the record is in the DLQ
    /// topic, and the partition must not stall on its index entry. False on shutdown.
    async fn index_dead_letter(
        &self,
        message: &Inbound,
        poison: &Poison,
        failed_at: DateTime<Utc>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let entry = Arc::new(dead_letter::index_entry(
            &self.topic.name,
            message,
            poison,
            failed_at,
        ));
        let mut retry = Retry::for_writes(&self.tuning);
        let mut retrying = false;
        let indexed = loop {
            let (store, row) = (self.store.clone(), entry.clone());
            let indexed = tokio::task::spawn_blocking(move || store.index_dead_letter(&row))
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::Transient(
                        format!("index task failed: {e}").into(),
                    ))
                });
            match indexed {
                Ok(_) => break true,
                Err(StoreError::Transient(e)) => {
                    self.metrics.retries.inc();
                    // Health says the writer is down meanwhile, as for a batch write.
                    if !retrying {
                        retrying = true;
                        self.status.writers_retrying.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(mut last) = self.status.last_error.lock() {
                        *last = Some(format!("dead-letter index: {e}"));
                    }
                    tracing::warn!(writer = self.index, error = %e, "dead-letter index write failed; retrying");
                    if !retry.wait(shutdown).await {
                        break false;
                    }
                }
                Err(e) => {
                    tracing::error!(writer = self.index, error = %e, partition = message.partition,
                        offset = message.offset, "dead letter not indexed (it is in the dead-letter topic)");
                    break true;
                }
            }
        };
        if retrying {
            self.status.writers_retrying.fetch_sub(1, Ordering::SeqCst);
        }
        indexed
    }

    /// One write on the blocking pool (diesel is synchronous).
    async fn write(
        &self,
        rows: Arc<Vec<NewLogEvent>>,
        commits: BTreeMap<i32, PartitionCommit>,
    ) -> Result<usize, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.write_batch(&rows, &commits))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Transient(
                    format!("write task failed: {e}").into(),
                ))
            })
    }

    /// The batch transaction, retried with capped exponential backoff on transient
    /// failures.
    async fn write_with_retry(
        &self,
        work: Work<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Written {
        let Work { rows, commits, .. } = work;
        let mut retry = Retry::for_writes(&self.tuning);
        let mut retrying = false;
        let written = loop {
            let started = Instant::now();
            match self.write(rows.clone(), commits.clone()).await {
                Ok(inserted) => {
                    self.metrics
                        .db_write
                        .observe(started.elapsed().as_secs_f64());
                    break Written::Committed(inserted);
                }
                Err(StoreError::Fenced(partitions)) => break Written::Fenced(partitions),
                Err(StoreError::Transient(e)) => {
                    self.metrics.retries.inc();
                    self.metrics
                        .errors
                        .with_label_values(&["db_transient"])
                        .inc();
                    if !retrying {
                        retrying = true;
                        self.status.writers_retrying.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(mut last) = self.status.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    tracing::warn!(writer = self.index, error = %e, rows = rows.len(), "batch write failed; retrying (fetching pauses once the writers are behind)");
                    if !retry.wait(shutdown).await {
                        tracing::warn!("shutdown during retry: batch abandoned uncommitted; it is read again on restart");
                        break Written::Abandoned;
                    }
                }
                Err(StoreError::Permanent(e)) => {
                    tracing::error!(error = %e, "batch rejected by the database; storing row by row");
                    break self.write_row_by_row(work, shutdown).await;
                }
            }
        };
        if retrying {
            self.status.writers_retrying.fetch_sub(1, Ordering::SeqCst);
            tracing::info!(writer = self.index, "database writes recovered");
        }
        written
    }

    /// Fallback when the database rejects a batch as data: each row alone, the ones
    /// it still rejects to the DLQ, then the offsets. Rows committed before a crash
    /// (or a fence) here are skipped as duplicates when the batch is read again.
    async fn write_row_by_row(
        &self,
        work: Work<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Written {
        let Work {
            rows,
            originals,
            commits,
        } = work;
        let mut inserted = 0;
        for (row, original) in rows.iter().zip(originals) {
            match self
                .write(Arc::new(vec![row.clone()]), BTreeMap::new())
                .await
            {
                Ok(n) => inserted += n,
                Err(StoreError::Permanent(reason)) => {
                    let poison = Poison::new(ReasonKind::RejectedByDatabase, reason.to_string());
                    if !self.dead_letter(original, &poison, shutdown).await {
                        return Written::Abandoned;
                    }
                }
                Err(StoreError::Fenced(partitions)) => return Written::Fenced(partitions),
                // The database went away mid-fallback: retry the whole batch.
                Err(StoreError::Transient(_)) => {
                    return Box::pin(self.write_with_retry(work, shutdown)).await
                }
            }
        }
        let offsets_only = Work {
            rows: &Arc::new(Vec::new()),
            originals: &[],
            commits,
        };
        match Box::pin(self.write_with_retry(offsets_only, shutdown)).await {
            Written::Committed(_) => Written::Committed(inserted),
            other => other,
        }
    }

    /// Kafka's committed offsets are only a mirror, for lag tools; PostgreSQL is the
    /// truth. Skipped if a rebalance happened since the batch was taken.
    fn commit_to_kafka(&self, commits: &BTreeMap<i32, PartitionCommit>, generation: u64) {
        if self.assignment.generation() != generation {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, commit) in commits {
            if let Err(e) = tpl.add_partition_offset(
                &self.topic.name,
                *partition,
                Offset::Offset(commit.next_offset),
            ) {
                tracing::debug!(error = %e, "cannot mirror offset");
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "offset mirror to Kafka failed (harmless)");
        }
    }
}

/// What one write carries: the rows, the records they came from (same order; what
/// a dead letter is made of) and the next offset of each partition.
#[derive(Clone, Copy)]
struct Work<'a> {
    rows: &'a Arc<Vec<NewLogEvent>>,
    originals: &'a [Inbound],
    commits: &'a BTreeMap<i32, PartitionCommit>,
}

/// How a batch's write ended.
enum Written {
    Committed(usize),
    /// Another owner claimed one of its partitions: nothing was written.
    Fenced(Vec<i32>),
    /// Shutdown came while retrying: nothing was committed.
    Abandoned,
}
