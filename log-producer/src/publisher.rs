//! The Kafka side of the producer: an idempotent rdkafka producer behind a circuit
//! breaker. Every send is awaited until Kafka acknowledged it (acks=all) or the
//! bounded delivery timeout passed, so an HTTP 2xx always means "Kafka has it".

use crate::metrics::ProducerMetrics;
use crate::settings::{BreakerSettings, ProducerTuning};
use futures::future::join_all;
use log_common::breaker::{BreakerState, CircuitBreaker};
use log_common::domain::Lane;
use log_common::event::LogEvent;
use log_common::settings::KafkaSettings;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Header carrying the event id, so consumers and tools can dedupe without parsing.
pub const EVENT_ID_HEADER: &str = "event-id";

/// Why an event was not taken by Kafka.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The breaker is open: Kafka failed recently, so we do not even try.
    #[error("Kafka is unavailable (circuit breaker open)")]
    BreakerOpen,
    #[error("Kafka did not take the event: {0}")]
    Failed(String),
}

/// Watches librdkafka's view of the brokers, so an outage is known the moment the
/// connection is refused rather than after a delivery timeout per request.
pub struct KafkaLink {
    connected: Arc<AtomicBool>,
    breaker: CircuitBreaker,
    /// Woken when the last broker connection goes, so the queue is purged (see
    /// [`Publisher::purge_on_outage`]); librdkafka's callbacks must not do it themselves.
    outage: Arc<Notify>,
}

impl KafkaLink {
    /// Marks Kafka unreachable; opens the breaker on the transition only, so a long
    /// outage does not keep stretching the breaker's open period.
    fn lost(&self, reason: &str) {
        if self.connected.swap(false, Ordering::SeqCst) {
            tracing::warn!(reason, "no Kafka broker reachable: opening the breaker");
            self.breaker.trip();
            self.outage.notify_one();
        }
    }
}

impl ClientContext for KafkaLink {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.lost(reason);
        } else {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }

    /// Every second: is any broker connection up?
    fn stats(&self, statistics: Statistics) {
        if statistics.brokers.values().any(|b| b.state == "UP") {
            if !self.connected.swap(true, Ordering::SeqCst) {
                tracing::info!("a Kafka broker is reachable again");
            }
        } else {
            self.lost("no broker connection is up");
        }
    }
}

pub struct Publisher {
    producer: FutureProducer<KafkaLink>,
    connected: Arc<AtomicBool>,
    outage: Arc<Notify>,
    kafka: KafkaSettings,
    breaker: CircuitBreaker,
    metrics: ProducerMetrics,
}

impl Publisher {
    pub fn new(
        kafka: &KafkaSettings,
        tuning: &ProducerTuning,
        breaker: &BreakerSettings,
        metrics: ProducerMetrics,
    ) -> anyhow::Result<Self> {
        let breaker = CircuitBreaker::new(
            "kafka",
            breaker.failure_threshold,
            Duration::from_millis(breaker.open_ms),
            Duration::from_millis(breaker.max_open_ms),
            metrics.breaker_state.clone(),
        );
        // Assume connected until librdkafka says otherwise.
        let connected = Arc::new(AtomicBool::new(true));
        let outage = Arc::new(Notify::new());
        let link = KafkaLink {
            connected: connected.clone(),
            breaker: breaker.clone(),
            outage: outage.clone(),
        };
        let producer: FutureProducer<KafkaLink> = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap_servers)
            .set("client.id", "log-producer")
            // Durability first: every in-sync replica has the event before we say 2xx,
            // and idempotence means librdkafka's own retries cannot duplicate it.
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", &tuning.compression)
            .set("linger.ms", tuning.linger_ms.to_string())
            .set("batch.size", "1000000")
            .set("message.timeout.ms", tuning.delivery_timeout_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                tuning.queue_max_messages.to_string(),
            )
            .set("message.max.bytes", "2097152")
            .set("statistics.interval.ms", "1000")
            .create_with_context(link)
            .map_err(|e| anyhow::anyhow!("cannot create the Kafka producer: {e}"))?;
        Ok(Publisher {
            producer,
            connected,
            outage,
            kafka: kafka.clone(),
            breaker,
            metrics,
        })
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// [`CircuitBreaker::state_now`]: an open period that has passed is half-open.
    pub fn breaker_state_now(&self) -> BreakerState {
        self.breaker.state_now()
    }

    /// What `Retry-After` says while the breaker is open.
    pub fn retry_after_secs(&self) -> u64 {
        self.breaker.retry_after_secs()
    }

    /// Is a broker connection up, as librdkafka last reported?
    pub fn kafka_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Asks the breaker for permission; an open breaker, or no broker connection at
    /// all, answers at once.
    pub fn check_available(&self) -> Result<(), PublishError> {
        if self.kafka_connected() && self.breaker.permits() {
            Ok(())
        } else {
            Err(PublishError::BreakerOpen)
        }
    }

    /// Publishes one event and waits for Kafka's acknowledgement.
    pub async fn publish(&self, event: &LogEvent) -> Result<(), PublishError> {
        let delivery = self.enqueue(event)?;
        self.settle(event, delivery).await
    }

    /// Publishes many events concurrently: all are queued first (librdkafka batches
    /// them per partition), then every acknowledgement is awaited.
    pub async fn publish_all(&self, events: &[LogEvent]) -> Vec<Result<(), PublishError>> {
        let queued: Vec<_> = events.iter().map(|e| self.enqueue(e)).collect();
        join_all(events.iter().zip(queued).map(|(event, queued)| async move {
            match queued {
                Ok(delivery) => self.settle(event, delivery).await,
                Err(e) => Err(e),
            }
        }))
        .await
    }

    /// Queues one event without waiting for Kafka (the `/ingest/async` path). The
    /// acknowledgement is still awaited in the background for metrics and the breaker.
    pub fn publish_in_background(self: &Arc<Self>, event: LogEvent) -> Result<(), PublishError> {
        let delivery = self.enqueue(&event)?;
        let publisher = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = publisher.settle(&event, delivery).await {
                tracing::warn!(event_id = %event.id, error = %e, "async event was not delivered");
            }
        });
        Ok(())
    }

    fn enqueue(&self, event: &LogEvent) -> Result<DeliveryFuture, PublishError> {
        let payload = serde_json::to_vec(event).map_err(|e| PublishError::Failed(e.to_string()))?;
        let id = event.id.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: EVENT_ID_HEADER,
            value: Some(id.as_str()),
        });
        // Keyed by the id, so every copy of an event (a client's or an agent's retry)
        // lands on one partition, whose one writer stores it once: event blocks check
        // a copy against what is stored, with no index entry per id to lock on. The id
        // spreads skewed sources evenly over the partitions, so the writers stay
        // balanced (a source key piled a few busy sources onto a few partitions).
        //
        // FATAL and ERROR go to the priority topic, which the consumer reads ahead of
        // the normal topic's backlog.
        let topic = self.kafka.topic_of(Lane::of(event.level));
        let key = event.id.as_uuid().into_bytes();
        let record = FutureRecord::to(topic)
            .key(&key[..])
            .payload(&payload)
            .headers(headers);
        self.producer.send_result(record).map_err(|(e, _record)| {
            self.record_failure();
            PublishError::Failed(format!("could not queue: {e}"))
        })
    }

    async fn settle(&self, event: &LogEvent, delivery: DeliveryFuture) -> Result<(), PublishError> {
        match delivery.await {
            Ok(Ok(_)) => {
                self.breaker.record_success();
                self.metrics
                    .kafka_sent
                    .with_label_values(&["success"])
                    .inc();
                self.metrics
                    .ingested
                    .with_label_values(&[event.level.as_str()])
                    .inc();
                Ok(())
            }
            Ok(Err((e, _message))) => {
                self.record_failure();
                Err(PublishError::Failed(e.to_string()))
            }
            Err(_canceled) => {
                self.record_failure();
                Err(PublishError::Failed(
                    "the producer shut down before delivery".to_owned(),
                ))
            }
        }
    }

    fn record_failure(&self) {
        self.breaker.record_failure();
        self.metrics
            .kafka_sent
            .with_label_values(&["failure"])
            .inc();
    }

    /// Can we reach a broker and see both topics? Used by the readiness check: the
    /// number of partitions of the normal topic.
    pub async fn check_kafka(self: &Arc<Self>) -> Result<usize, String> {
        let publisher = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut partitions = 0;
            for lane in [Lane::Priority, Lane::Normal] {
                let name = publisher.kafka.topic_of(lane);
                let metadata = publisher
                    .producer
                    .client()
                    .fetch_metadata(Some(name), Duration::from_secs(2))
                    .map_err(|e| e.to_string())?;
                let topic = metadata
                    .topics()
                    .first()
                    .ok_or("topic missing from metadata")?;
                if topic.error().is_some() || topic.partitions().is_empty() {
                    return Err(format!("topic '{name}' is not available"));
                }
                partitions = topic.partitions().len();
            }
            Ok(partitions)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Runs for the publisher's life: whenever the last broker connection goes, fails
    /// every event still waiting in librdkafka's queue at once. Without this, requests
    /// already waiting when Kafka went away would hang for the whole delivery timeout
    /// before their 503; with it they get the 503 as soon as the outage is known, like
    /// the requests that arrive after it. No 2xx is lost: a purged event was never
    /// acknowledged, and a client retrying it with the same id cannot duplicate it.
    pub fn purge_on_outage(self: &Arc<Self>) {
        let publisher: Weak<Self> = Arc::downgrade(self);
        let outage = self.outage.clone();
        tokio::spawn(async move {
            loop {
                outage.notified().await;
                let Some(publisher) = publisher.upgrade() else {
                    return;
                };
                let waiting = publisher.producer.in_flight_count();
                // purge() takes librdkafka's locks; keep it off the async workers.
                let purged = tokio::task::spawn_blocking(move || {
                    publisher
                        .producer
                        .purge(PurgeConfig::default().queue().inflight());
                })
                .await;
                match purged {
                    Ok(()) => tracing::warn!(
                        waiting,
                        "Kafka unreachable: failed the events waiting for it"
                    ),
                    Err(e) => tracing::error!(error = %e, "purging the Kafka queue failed"),
                }
            }
        });
    }

    /// Waits until every queued event was delivered or timed out (graceful shutdown).
    pub fn flush(&self, timeout: Duration) {
        match self.producer.flush(timeout) {
            Ok(()) => tracing::info!("Kafka producer queue flushed"),
            Err(e) => {
                tracing::error!(error = %e, in_flight = self.producer.in_flight_count(), "flush incomplete")
            }
        }
    }
}
