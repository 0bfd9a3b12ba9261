//! The consume loop: one task polls Kafka, decodes each record and deals it to the
//! writer that owns its partition; each writer writes its batches in transactions of
//! its own (see [`crate::writer`]). Decoding the next batch overlaps the writers'
//! transactions, and the writers' transactions overlap each other.
//!
//! The consumer runs one pipeline per lane (see [`Lane`]): the priority topic has a
//! Kafka consumer, a dispatcher and a writer of its own, so its records never wait
//! behind the normal topic's backlog, and the normal topic keeps all of its writers
//! whatever the priority traffic.

use crate::metrics::ConsumerMetrics;
use crate::rebalance::{Assignment, Claimer, PipelineContext};
use crate::record::{AcceptedTimes, Inbound};
use crate::settings::ConsumerTuning;
use crate::writer::{Batch, Writer};
use log_common::domain::Lane;
use rdkafka::consumer::Consumer;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub type LogConsumer = StreamConsumer<PipelineContext>;

/// What the health endpoint reads about the pipeline.
#[derive(Default)]
pub struct PipelineStatus {
    /// How many writers are retrying a batch because PostgreSQL failed.
    pub writers_retrying: AtomicUsize,
    pub last_error: Mutex<Option<String>>,
}

impl PipelineStatus {
    pub fn retrying(&self) -> bool {
        self.writers_retrying.load(Ordering::SeqCst) > 0
    }
}

/// The topic a pipeline reads, and the lane it is.
#[derive(Debug, Clone)]
pub struct LaneTopic {
    pub lane: Lane,
    pub name: String,
}

/// The batches a lane has read and not yet stored, each by the Kafka time of its first
/// (oldest) record: what `log_consumer_oldest_unstored_seconds` reports. A batch is
/// entered when its first record is taken off Kafka and leaves when it is dropped,
/// whether it was stored, fenced or abandoned (then its records are read again and
/// enter again).
#[derive(Default)]
pub struct Unstored {
    batches: Mutex<BTreeMap<u64, i64>>,
    next: AtomicU64,
}

impl Unstored {
    fn batches(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, i64>> {
        // Each update is one insert or remove: a poisoned map is still whole.
        self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters a batch whose first record Kafka stamped `first_ms`.
    pub fn enter(self: &Arc<Self>, first_ms: i64) -> UnstoredBatch {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        self.batches().insert(ticket, first_ms);
        UnstoredBatch {
            unstored: self.clone(),
            ticket,
        }
    }

    /// The Kafka time of the oldest record read and not stored, if any.
    pub fn oldest_ms(&self) -> Option<i64> {
        self.batches().values().copied().min()
    }
}

/// A batch's place in [`Unstored`], left when the batch is dropped.
pub struct UnstoredBatch {
    unstored: Arc<Unstored>,
    ticket: u64,
}

impl Drop for UnstoredBatch {
    fn drop(&mut self) {
        self.unstored.batches().remove(&self.ticket);
    }
}

pub struct Pipeline {
    pub consumer: Arc<LogConsumer>,
    pub metrics: ConsumerMetrics,
    pub tuning: ConsumerTuning,
    pub topic: LaneTopic,
    pub unstored: Arc<Unstored>,
    pub assignment: Arc<Assignment>,
    /// One per `CONSUMER_WRITERS`; index `i` handles the partitions the assignment deals to `i`.
    pub writers: Vec<Writer>,
    pub claimer: Claimer,
}

/// How far past `CONSUMER_BATCH_MAX_RECORDS` a batch grows while its writer is busy
/// before the dispatcher waits for that writer. Gathering on instead of waiting
/// keeps the other writers fed and Kafka's prefetch whole (a pause drops it, and
/// the refetch left every writer idle: drains ran at a quarter of the writers'
/// capacity).
const OVERFLOW_FACTOR: usize = 2;

/// How soon a batch whose wait is over is offered again to a writer that was busy.
const RETRY_HAND_OVER: Duration = Duration::from_millis(10);

/// A batch being gathered for one writer.
struct Gathering {
    batch: Batch,
    deadline: tokio::time::Instant,
}

impl Pipeline {
    /// Runs until `shutdown` turns true; the batches gathered so far are handed to the
    /// writers and written first (or abandoned, uncommitted, if the database is away).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        // One batch in flight and one queued per writer: past that the poll loop
        // waits, so fetching pauses when the writers are behind and memory stays flat.
        let lane = self.topic.lane;
        let mut senders = Vec::with_capacity(self.writers.len());
        let mut tasks = JoinSet::new();
        tasks.spawn(self.claimer.run(shutdown.clone()));
        tasks.spawn(report_unstored(
            self.unstored.clone(),
            self.metrics.clone(),
            self.topic.name.clone(),
            shutdown.clone(),
        ));
        for writer in self.writers {
            let (tx, rx) = mpsc::channel::<Batch>(1);
            senders.push(tx);
            tasks.spawn(writer.run(rx, shutdown.clone()));
        }
        let dispatcher = Dispatcher {
            consumer: self.consumer,
            metrics: self.metrics,
            tuning: self.tuning,
            topic: self.topic,
            unstored: self.unstored,
            assignment: self.assignment,
            senders,
        };
        dispatcher.run(shutdown).await;
        while let Some(result) = tasks.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "writer or claimer task failed");
            }
        }
        tracing::info!(lane = lane.as_str(), "pipeline stopped");
    }
}

struct Dispatcher {
    consumer: Arc<LogConsumer>,
    metrics: ConsumerMetrics,
    tuning: ConsumerTuning,
    topic: LaneTopic,
    unstored: Arc<Unstored>,
    assignment: Arc<Assignment>,
    senders: Vec<mpsc::Sender<Batch>>,
}

impl Dispatcher {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut owned = self.assignment.current();
        let mut gathering: Vec<Option<Gathering>> = self.senders.iter().map(|_| None).collect();
        // Records taken off Kafka while a hand-over waited, dealt before the next poll.
        let mut held: VecDeque<Inbound> = VecDeque::new();
        loop {
            let received = match held.pop_front() {
                Some(inbound) => Some(Ok(inbound)),
                None => {
                    let deadline = gathering.iter().flatten().map(|g| g.deadline).min();
                    tokio::select! {
                        _ = shutdown.wait_for(|stop| *stop) => break,
                        r = recv_until(&self.consumer, deadline) => r.map(|r| r.map(|m| self.take(&m))),
                    }
                }
            };
            match received {
                Some(Ok(inbound)) => {
                    if owned.generation != self.assignment.generation() {
                        owned = self.assignment.current();
                        self.drop_stale(&mut gathering, owned.generation);
                    }
                    // A record of a partition this instance no longer owns: its new
                    // owner reads it again from the offset stored in PostgreSQL.
                    let Some(partition) = owned.partitions.get(&inbound.partition) else {
                        continue;
                    };
                    let slot = &mut gathering[partition.writer];
                    let entry = slot.get_or_insert_with(|| {
                        // The batch's first record is its oldest.
                        let first_ms = inbound
                            .timestamp_ms
                            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                        Gathering {
                            batch: Batch::new(
                                owned.generation,
                                Instant::now(),
                                AcceptedTimes::now(&self.tuning.upkeep()),
                                self.unstored.enter(first_ms),
                            ),
                            deadline: tokio::time::Instant::now()
                                + Duration::from_millis(self.tuning.batch_max_wait_ms),
                        }
                    });
                    entry.batch.add(inbound, partition.epoch, &self.topic);
                    let gathered = entry.batch.len();
                    if gathered >= self.tuning.batch_max_records
                        && !self.try_hand_over(&mut gathering, partition.writer)
                        && gathered >= self.tuning.batch_max_records * OVERFLOW_FACTOR
                    {
                        held.extend(self.hand_over(&mut gathering, partition.writer).await);
                    }
                }
                Some(Err(e)) => {
                    self.metrics.errors.with_label_values(&["poll"]).inc();
                    tracing::warn!(error = %e, "Kafka poll error");
                }
                None => {
                    let now = tokio::time::Instant::now();
                    for writer in 0..gathering.len() {
                        let due = gathering[writer]
                            .as_ref()
                            .is_some_and(|g| g.deadline <= now);
                        if due && !self.try_hand_over(&mut gathering, writer) {
                            // The writer is still busy: its batch goes on growing
                            // and is offered again shortly.
                            if let Some(g) = gathering[writer].as_mut() {
                                g.deadline = now + RETRY_HAND_OVER;
                            }
                        }
                    }
                }
            }
        }
        // Shutdown: what was gathered is written before the writers stop. (Records
        // held or taken meanwhile are not: nothing commits them, so they are read again.)
        for writer in 0..gathering.len() {
            self.hand_over(&mut gathering, writer).await;
        }
    }

    /// A record copied out of the consumer.
    fn take(&self, message: &BorrowedMessage<'_>) -> Inbound {
        self.metrics.consumed.inc();
        Inbound {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            timestamp_ms: message.timestamp().to_millis(),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Sends the writer its batch if it can take it now (or drops it, logged, if the
    /// writer has stopped); false, the batch left in its slot, while the writer still
    /// has one queued.
    fn try_hand_over(&self, gathering: &mut [Option<Gathering>], writer: usize) -> bool {
        let permit = match self.senders[writer].try_reserve() {
            Ok(permit) => Some(permit),
            Err(TrySendError::Full(())) => return false,
            Err(TrySendError::Closed(())) => None,
        };
        if let Some(gathered) = gathering[writer].take() {
            match permit {
                Some(permit) => permit.send(gathered.batch),
                None => tracing::error!(writer, "writer has stopped; batch left uncommitted"),
            }
        }
        true
    }

    /// Sends the writer its batch. While the writer still has one queued (PostgreSQL
    /// slow or away), fetching is paused but Kafka is still polled: librdkafka serves a
    /// rebalance only to a consumer that polls, so a dispatcher waiting without polling
    /// would hold up the whole group until PostgreSQL came back. (A paused partition
    /// drops what it prefetched and resumes at the next record not taken.) A record that
    /// arrives meanwhile, of a partition assigned during the wait, is returned to be
    /// dealt like any other, and its partition is paused too.
    async fn hand_over(&self, gathering: &mut [Option<Gathering>], writer: usize) -> Vec<Inbound> {
        let mut held = Vec::new();
        if self.try_hand_over(gathering, writer) {
            return held;
        }
        let Some(gathered) = gathering[writer].take() else {
            return held;
        };
        let sender = &self.senders[writer];
        self.pause_fetching(true);
        let permit = loop {
            tokio::select! {
                permit = sender.reserve() => break permit.ok(),
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        held.push(self.take(&message));
                        self.pause_fetching(true);
                    }
                    Err(e) => {
                        self.metrics.errors.with_label_values(&["poll"]).inc();
                        tracing::warn!(error = %e, "Kafka poll error");
                    }
                },
            }
        };
        self.pause_fetching(false);
        match permit {
            Some(permit) => permit.send(gathered.batch),
            None => tracing::error!(writer, "writer has stopped; batch left uncommitted"),
        }
        held
    }

    /// Pauses (or resumes) every partition Kafka has assigned to this consumer.
    fn pause_fetching(&self, pause: bool) {
        let assigned = match self.consumer.assignment() {
            Ok(assigned) => assigned,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the assignment");
                return;
            }
        };
        if assigned.count() == 0 {
            return;
        }
        let result = if pause {
            self.consumer.pause(&assigned)
        } else {
            self.consumer.resume(&assigned)
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, pause, "cannot pause or resume fetching");
        }
    }

    /// Records gathered under an older assignment may be of partitions we no longer
    /// own, or were sought back; they are read again from the stored offsets.
    fn drop_stale(&self, gathering: &mut [Option<Gathering>], generation: u64) {
        let mut dropped = 0;
        for slot in gathering.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|g| g.batch.generation != generation)
            {
                dropped += slot.take().map_or(0, |g| g.batch.len());
            }
        }
        if dropped > 0 {
            tracing::info!(dropped, "records from a previous assignment dropped");
        }
    }
}

/// Sets `log_consumer_oldest_unstored_seconds{topic}` every second until shutdown: 0
/// when every record read has been stored.
async fn report_unstored(
    unstored: Arc<Unstored>,
    metrics: ConsumerMetrics,
    topic: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let gauge = metrics.oldest_unstored.with_label_values(&[&topic]);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = tick.tick() => {}
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let age_ms = unstored
            .oldest_ms()
            .map_or(0, |oldest| (now_ms - oldest).max(0));
        gauge.set(age_ms as f64 / 1000.0);
    }
}

/// The next record, or `None` once `deadline` passes (no deadline: wait for one).
async fn recv_until(
    consumer: &LogConsumer,
    deadline: Option<tokio::time::Instant>,
) -> Option<rdkafka::error::KafkaResult<rdkafka::message::BorrowedMessage<'_>>> {
    match deadline {
        None => Some(consumer.recv().await),
        Some(deadline) => tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .ok(),
    }
}
