//! The consumer context: on assignment, seek every partition to the offset stored
//! in PostgreSQL (not Kafka's committed offset), claiming it there, and keep track of
//! what we own.

use crate::metrics::ConsumerMetrics;
use log_store::{PartitionClaim, Store};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What this instance owns right now, and which of its writers handles each partition.
/// `generation` moves on every rebalance, so the pipeline can tell records received
/// under an older assignment and drop them early; the epoch of each partition's claim
/// is what the batch transaction is fenced on (see [`Store::claim_partitions`]).
pub struct Assignment {
    writers: usize,
    owned: Mutex<Arc<Owned>>,
    generation: AtomicU64,
}

/// One assignment: every partition owned, with its claim epoch and its writer.
#[derive(Debug, Default)]
pub struct Owned {
    pub generation: u64,
    pub partitions: BTreeMap<i32, OwnedPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedPartition {
    /// The epoch of this instance's claim: its batches commit only while it holds.
    pub epoch: i64,
    /// Index of the writer that owns this partition's records for this assignment.
    pub writer: usize,
}

impl Assignment {
    pub fn new(writers: usize) -> Self {
        Assignment {
            writers: writers.max(1),
            owned: Mutex::new(Arc::default()),
            generation: AtomicU64::new(0),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The current assignment, as one consistent snapshot.
    pub fn current(&self) -> Arc<Owned> {
        self.owned
            .lock()
            .map(|owned| owned.clone())
            .unwrap_or_default()
    }

    pub fn partitions(&self) -> BTreeSet<i32> {
        self.current().partitions.keys().copied().collect()
    }

    /// Replaces the assignment. Partitions are dealt to the writers round-robin in
    /// partition order, so each writer owns a disjoint set (and one writer gets all of
    /// a partition's records: per-partition order holds).
    pub(crate) fn replace(&self, claims: &BTreeMap<i32, PartitionClaim>) {
        if let Ok(mut owned) = self.owned.lock() {
            let generation = owned.generation + 1;
            let partitions = claims
                .iter()
                .enumerate()
                .map(|(i, (partition, claim))| {
                    let owned = OwnedPartition {
                        epoch: claim.epoch,
                        writer: i % self.writers,
                    };
                    (*partition, owned)
                })
                .collect();
            *owned = Arc::new(Owned {
                generation,
                partitions,
            });
            self.generation.store(generation, Ordering::SeqCst);
        }
    }
}

pub struct PipelineContext {
    pub store: Store,
    pub assignment: Arc<Assignment>,
    pub metrics: ConsumerMetrics,
    pub topic: String,
    /// Set at shutdown, so a rebalance waiting for PostgreSQL gives up.
    pub stopping: Arc<AtomicBool>,
}

impl ClientContext for PipelineContext {
    /// librdkafka's statistics (every few seconds): per-partition lag for Prometheus.
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .with_label_values(&[&partition.to_string()])
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                let claims = self.claim_patiently(&partitions);
                for (&partition, claim) in &claims {
                    let offset = claim.next_offset.map_or(Offset::Beginning, Offset::Offset);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, partition, offset) {
                        tracing::error!(partition, error = %e, "cannot set start offset");
                    }
                }
                tracing::info!(
                    ?partitions,
                    ?claims,
                    "partitions assigned and claimed; seeking to offsets stored in PostgreSQL"
                );
                self.assignment.replace(&claims);
                self.metrics.assigned.set(partitions.len() as i64);
                log_failure("assign", consumer.assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(
                    ?partitions,
                    "partitions revoked; uncommitted work on them is abandoned"
                );
                self.assignment.replace(&BTreeMap::new());
                self.metrics.assigned.set(0);
                for partition in partitions {
                    let _ = self
                        .metrics
                        .lag
                        .remove_label_values(&[&partition.to_string()]);
                }
                log_failure("unassign", consumer.unassign());
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                self.assignment.replace(&BTreeMap::new());
                log_failure("unassign", consumer.unassign());
            }
        }
    }
}

impl PipelineContext {
    /// Without the stored offsets (and the claim) we cannot start a partition
    /// correctly, so wait for PostgreSQL (with backoff) rather than guess. When
    /// stopping, give up with no claim: this instance writes nothing more.
    fn claim_patiently(&self, partitions: &[i32]) -> BTreeMap<i32, PartitionClaim> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.store.claim_partitions(partitions) {
                Ok(claims) => return claims,
                Err(e) if !self.stopping.load(Ordering::SeqCst) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot claim partitions");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, "stopping: partitions left unclaimed");
                    return BTreeMap::new();
                }
            }
        }
    }
}

fn log_failure(what: &str, result: KafkaResult<()>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "{what} failed");
    }
}
