//! The consumer context and the claimer: on assignment, each partition is claimed in
//! PostgreSQL and started at the offset stored there (not Kafka's committed offset);
//! [`Assignment`] tracks what we own.
//!
//! The rebalance callback runs on the task that polls Kafka, so it must not wait for
//! PostgreSQL. It only records what was assigned; the [`Claimer`] task claims the
//! partitions (retrying while the database is away) and then calls `assign` with the
//! stored offsets. Until that call librdkafka fetches nothing for the group, keeps
//! heartbeating, and holds back any further rebalance.

use crate::metrics::ConsumerMetrics;
use crate::pipeline::{LaneTopic, LogConsumer};
use crate::retry::Retry;
use log_store::{PartitionClaim, Store};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// What this instance owns right now, and which of its writers handles each partition.
/// `generation` moves on every rebalance, so the pipeline can tell records received
/// under an older assignment and drop them early; the epoch of each partition's claim
/// is what the batch transaction is fenced on (see [`Store::claim_partitions`]).
pub struct Assignment {
    writers: usize,
    state: Mutex<State>,
    generation: AtomicU64,
    /// Woken when partitions are assigned and wait for their claim.
    claim_needed: Notify,
}

#[derive(Default)]
struct State {
    owned: Arc<Owned>,
    /// Partitions Kafka assigned that are not claimed (nor fetched) yet.
    pending: Option<PendingClaim>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingClaim {
    /// The generation the assignment had when these partitions came: a claim that
    /// finishes after a newer rebalance is not applied.
    pub generation: u64,
    pub partitions: Vec<i32>,
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
            state: Mutex::default(),
            generation: AtomicU64::new(0),
            claim_needed: Notify::new(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-written (every
        // update is one assignment), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current assignment, as one consistent snapshot.
    pub fn current(&self) -> Arc<Owned> {
        self.state().owned.clone()
    }

    pub fn partitions(&self) -> BTreeSet<i32> {
        self.current().partitions.keys().copied().collect()
    }

    /// Partitions assigned by Kafka and still waiting for their claim, if any.
    pub fn pending(&self) -> Option<PendingClaim> {
        self.state().pending.clone()
    }

    /// Kafka assigned `partitions`: nothing is owned until they are claimed.
    fn await_claim(&self, partitions: Vec<i32>) {
        let mut state = self.state();
        let generation = self.set_owned(&mut state, &BTreeMap::new());
        state.pending = Some(PendingClaim {
            generation,
            partitions,
        });
        drop(state);
        self.claim_needed.notify_one();
    }

    /// Everything was revoked (or lost): nothing owned, nothing to claim.
    fn clear(&self) {
        let mut state = self.state();
        self.set_owned(&mut state, &BTreeMap::new());
        state.pending = None;
    }

    /// Applies a finished claim, unless a rebalance came since it started; `start`
    /// (the `assign` call) runs under the lock, so a rebalance callback cannot come
    /// between the check and the assignment taking effect. True if applied.
    fn complete_claim(
        &self,
        claim: &PendingClaim,
        claims: &BTreeMap<i32, PartitionClaim>,
        start: impl FnOnce(),
    ) -> bool {
        let mut state = self.state();
        if state.pending.as_ref() != Some(claim) {
            return false;
        }
        start();
        self.set_owned(&mut state, claims);
        state.pending = None;
        true
    }

    /// Replaces the assignment and returns its new generation. Partitions are dealt to
    /// the writers round-robin in partition order, so each writer owns a disjoint set
    /// (and one writer gets all of a partition's records: per-partition order holds).
    fn set_owned(&self, state: &mut State, claims: &BTreeMap<i32, PartitionClaim>) -> u64 {
        let generation = state.owned.generation + 1;
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
        state.owned = Arc::new(Owned {
            generation,
            partitions,
        });
        self.generation.store(generation, Ordering::SeqCst);
        generation
    }
}

pub struct PipelineContext {
    pub assignment: Arc<Assignment>,
    pub metrics: ConsumerMetrics,
    pub topic: LaneTopic,
}

impl ClientContext for PipelineContext {
    /// librdkafka's statistics (every few seconds): per-partition lag for Prometheus.
    fn stats(&self, statistics: Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic.name) {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.metrics
                        .lag
                        .with_label_values(&[&self.topic.name, &partition.to_string()])
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
                    .elements_for_topic(&self.topic.name)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                tracing::info!(
                    topic = %self.topic.name,
                    ?partitions,
                    "partitions assigned; claiming them in PostgreSQL before fetching"
                );
                // No `assign` here: the claimer makes that call once it has the
                // stored offsets.
                self.assignment.await_claim(partitions);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(
                    topic = %self.topic.name,
                    ?partitions,
                    "partitions revoked; uncommitted work on them is abandoned"
                );
                self.assignment.clear();
                self.metrics
                    .assigned
                    .with_label_values(&[&self.topic.name])
                    .set(0);
                for partition in partitions {
                    let _ = self
                        .metrics
                        .lag
                        .remove_label_values(&[&self.topic.name, &partition.to_string()]);
                }
                log_failure("unassign", consumer.unassign());
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                self.assignment.clear();
                log_failure("unassign", consumer.unassign());
            }
        }
    }
}

/// Claims assigned partitions in PostgreSQL and starts them at their stored offsets.
pub struct Claimer {
    pub consumer: Arc<LogConsumer>,
    pub store: Store,
    pub assignment: Arc<Assignment>,
    pub metrics: ConsumerMetrics,
    pub topic: LaneTopic,
}

impl Claimer {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = self.assignment.claim_needed.notified() => {}
            }
            if let Some(claim) = self.assignment.pending() {
                self.claim(claim, &mut shutdown).await;
            }
        }
        // librdkafka cannot leave the group while it waits for our answer to an
        // assignment: answer with nothing, this instance writes nothing more.
        if self.assignment.pending().is_some() {
            self.assignment.clear();
            log_failure("unassign", self.consumer.unassign());
        }
    }

    /// Without the stored offsets (and the claim) we cannot start a partition
    /// correctly, so wait for PostgreSQL rather than guess. Gives up when stopping,
    /// or when a newer rebalance made this claim moot.
    async fn claim(&self, claim: PendingClaim, shutdown: &mut watch::Receiver<bool>) {
        let mut retry = Retry::new(Duration::from_millis(200), Duration::from_secs(5));
        let claims = loop {
            let store = self.store.clone();
            let partitions = claim.partitions.clone();
            let claimed = tokio::task::spawn_blocking(move || store.claim_partitions(&partitions))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match claimed {
                Ok(claims) => break claims,
                Err(e) => {
                    tracing::warn!(error = %e, partitions = ?claim.partitions, "cannot claim partitions; retrying");
                    if !retry.wait(shutdown).await
                        || self.assignment.pending() != Some(claim.clone())
                    {
                        return;
                    }
                }
            }
        };
        let start = || {
            let mut tpl = TopicPartitionList::new();
            for (&partition, stored) in &claims {
                let offset = stored.next_offset.map_or(Offset::Beginning, Offset::Offset);
                if let Err(e) = tpl.add_partition_offset(&self.topic.name, partition, offset) {
                    tracing::error!(partition, error = %e, "cannot set start offset");
                }
            }
            log_failure("assign", self.consumer.assign(&tpl));
            // librdkafka keeps a partition's pause across revoke and assign. The
            // dispatcher pauses its partitions while a writer is behind, and a revoke
            // in that wait leaves it nothing to resume (it resumes the assignment it
            // has then, which is empty), so a partition assigned again would stay
            // paused for good. An assigned partition starts fetching.
            log_failure("resume", self.consumer.resume(&tpl));
        };
        if self.assignment.complete_claim(&claim, &claims, start) {
            self.metrics
                .assigned
                .with_label_values(&[&self.topic.name])
                .set(claims.len() as i64);
            tracing::info!(
                topic = %self.topic.name,
                ?claims,
                "partitions claimed; fetching from the offsets stored in PostgreSQL"
            );
        } else {
            tracing::info!(partitions = ?claim.partitions, "claim overtaken by a newer rebalance; not applied");
        }
    }
}

fn log_failure(what: &str, result: KafkaResult<()>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "{what} failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(partitions: &[i32]) -> BTreeMap<i32, PartitionClaim> {
        partitions
            .iter()
            .map(|&p| {
                let claim = PartitionClaim {
                    epoch: 7,
                    next_offset: Some(100),
                };
                (p, claim)
            })
            .collect()
    }

    #[test]
    fn assigned_partitions_are_owned_only_once_claimed() {
        let assignment = Assignment::new(2);
        assignment.await_claim(vec![0, 1, 2]);
        let pending = assignment.pending().expect("claim pending");
        assert!(
            assignment.partitions().is_empty(),
            "nothing owned before the claim"
        );
        let mut started = false;
        assert!(assignment.complete_claim(&pending, &claims(&[0, 1, 2]), || started = true));
        assert!(started, "the assign call was made");
        assert_eq!(assignment.partitions(), BTreeSet::from([0, 1, 2]));
        let owned = assignment.current();
        let writers: Vec<usize> = owned.partitions.values().map(|p| p.writer).collect();
        assert_eq!(writers, [0, 1, 0], "dealt round-robin");
        assert_eq!(assignment.pending(), None);
    }

    #[test]
    fn a_claim_overtaken_by_a_revoke_is_not_applied() {
        let assignment = Assignment::new(1);
        assignment.await_claim(vec![0, 1]);
        let pending = assignment.pending().expect("claim pending");
        assignment.clear();
        let mut started = false;
        assert!(!assignment.complete_claim(&pending, &claims(&[0, 1]), || started = true));
        assert!(!started, "no assign call for a moot claim");
        assert!(assignment.partitions().is_empty());
    }

    #[test]
    fn a_claim_overtaken_by_a_newer_assignment_is_not_applied() {
        let assignment = Assignment::new(1);
        assignment.await_claim(vec![0, 1]);
        let old = assignment.pending().expect("claim pending");
        assignment.await_claim(vec![1]);
        assert!(!assignment.complete_claim(&old, &claims(&[0, 1]), || {}));
        let new = assignment.pending().expect("claim pending");
        assert!(new.generation > old.generation);
        assert!(assignment.complete_claim(&new, &claims(&[1]), || {}));
        assert_eq!(assignment.partitions(), BTreeSet::from([1]));
    }
}
