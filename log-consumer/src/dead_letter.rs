//! The dead-letter topic: where messages go that can never be stored, so nothing is
//! dropped silently. A dead letter is the original record, unchanged (key, payload
//! bytes and headers, in order), plus `dlq-*` headers saying why and where it came from.

use crate::record::Inbound;
use chrono::Utc;
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
    /// committed after this returns Ok.
    pub async fn send(&self, message: &Inbound, reason: &str) -> Result<(), String> {
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        let failed_at = Utc::now().to_rfc3339();
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len() + 5);
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
            .map(|_| ())
            .map_err(|(e, _)| e.to_string())
    }
}
