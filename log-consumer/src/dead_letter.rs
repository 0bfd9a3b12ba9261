//! The dead-letter topic: where messages go that can never be stored, so nothing is
//! dropped silently. A dead letter is the original record, unchanged (key, payload
//! bytes and headers, in order), plus `dlq-*` headers saying why (`dlq-error`, and
//! `dlq-reason-kind`: one of `empty`, `not_json`, `invalid_event`, `too_old`,
//! `rejected_by_database`) and where it came from.
//!
//! Once Kafka has it, the writer also indexes it in PostgreSQL ([`index_entry`]), so the
//! gateway's admin endpoints can list and replay it.

use crate::record::{Inbound, Poison};
use chrono::{DateTime, Utc};
use log_store::dead_letters::NewDeadLetter;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    source_topic: String,
}

impl DeadLetters {
    pub fn new(
        bootstrap_servers: &str,
        dlq_topic: &str,
        source_topic: &str,
    ) -> anyhow::Result<Self> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap_servers)
            .set("client.id", "log-consumer-dlq")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .set("message.max.bytes", "2097152")
            .create()
            .map_err(|e| anyhow::anyhow!("cannot create the dead-letter producer: {e}"))?;
        Ok(DeadLetters {
            producer,
            topic: dlq_topic.to_owned(),
            source_topic: source_topic.to_owned(),
        })
    }

    /// Sends one message and waits for Kafka's acknowledgement: its offset is only
    /// committed after this returns Ok, with the time it says the record failed.
    pub async fn send(&self, message: &Inbound, poison: &Poison) -> Result<DateTime<Utc>, String> {
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        let failed = Utc::now();
        let failed_at = failed.to_rfc3339();
        let reason = poison.reason.as_str();
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len() + 6);
        for (key, value) in &message.headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: value.as_deref(),
            });
        }
        let headers = headers
            .insert(Header {
                key: "dlq-error",
                value: Some(reason),
            })
            .insert(Header {
                key: "dlq-reason-kind",
                value: Some(poison.kind.as_str()),
            })
            .insert(Header {
                key: "dlq-original-topic",
                value: Some(self.source_topic.as_str()),
            })
            .insert(Header {
                key: "dlq-original-partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "dlq-original-offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "dlq-failed-at",
                value: Some(failed_at.as_str()),
            });
        let payload = message.payload.as_deref().unwrap_or_default();
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(payload)
            .headers(headers);
        if let Some(key) = message.key.as_deref() {
            record = record.key(key);
        }
        self.producer
            .send(record, Timeout::Never)
            .await
            .map(|_| failed)
            .map_err(|(e, _)| e.to_string())
    }
}

/// The index row of a dead letter of `topic`: its origin, reason and whole payload.
pub fn index_entry(
    topic: &str,
    message: &Inbound,
    poison: &Poison,
    failed_at: DateTime<Utc>,
) -> NewDeadLetter {
    NewDeadLetter {
        original_topic: topic.to_owned(),
        original_partition: message.partition,
        original_offset: message.offset,
        reason_kind: poison.kind.as_str().to_owned(),
        // PostgreSQL's text cannot hold NUL (a reason may quote the payload).
        reason: poison.reason.replace('\0', "\u{fffd}"),
        failed_at,
        kafka_key: message.key.clone(),
        payload: message.payload.clone().unwrap_or_default(),
    }
}
