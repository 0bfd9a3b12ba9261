//! The consumer context: on assignment, seek every partition to the offset stored
//! in PostgreSQL (not Kafka's committed offset), and keep track of what we own.

use crate::metrics::ConsumerMetrics;
use crate::store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What this instance owns right now. `generation` moves on every rebalance, so the
/// pipeline can tell messages received under an older assignment and drop them
/// instead of committing offsets for partitions it may no longer own.
#[derive(Default)]
pub struct Assignment {
    partitions: Mutex<BTreeSet<i32>>,
    generation: AtomicU64,
}

impl Assignment {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn partitions(&self) -> BTreeSet<i32> {
        self.partitions
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    fn replace(&self, partitions: BTreeSet<i32>) {
        if let Ok(mut owned) = self.partitions.lock() {
            *owned = partitions;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
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
                let stored = self.load_offsets_patiently(&partitions);
                for &partition in &partitions {
                    let offset = stored
                        .get(&partition)
                        .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                    if let Err(e) = tpl.set_partition_offset(&self.topic, partition, offset) {
                        tracing::error!(partition, error = %e, "cannot set start offset");
                    }
                }
                tracing::info!(
                    ?partitions,
                    ?stored,
                    "partitions assigned; seeking to offsets stored in PostgreSQL"
                );
                self.assignment
                    .replace(partitions.iter().copied().collect());
                self.metrics.assigned.set(partitions.len() as i64);
                log_failure("assign", consumer.assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(
                    ?partitions,
                    "partitions revoked; uncommitted work on them is abandoned"
                );
                self.assignment.replace(BTreeSet::new());
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
                self.assignment.replace(BTreeSet::new());
                log_failure("unassign", consumer.unassign());
            }
        }
    }
}

impl PipelineContext {
    /// Without the stored offsets we cannot start a partition correctly, so wait for
    /// PostgreSQL (with backoff) rather than guess.
    fn load_offsets_patiently(&self, partitions: &[i32]) -> std::collections::HashMap<i32, i64> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.store.load_offsets(partitions) {
                Ok(offsets) => return offsets,
                Err(e) if !self.stopping.load(Ordering::SeqCst) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot load offsets");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, "stopping: assigning from the beginning; rows are idempotent");
                    return Default::default();
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
