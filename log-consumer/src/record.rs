//! From a Kafka message to a row, or to the reason it can never be one.

use chrono::{DateTime, Utc};
use log_common::event::LogEvent;
use log_store::NewLogEvent;
use uuid::Uuid;

/// A message copied out of the consumer, so it outlives the poll that returned it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// Kafka's timestamp in ms; stands in for an event that carries none.
    pub timestamp_ms: Option<i64>,
    /// The record's headers, in order, so a dead letter carries them unchanged.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Namespace of the ids given to events that arrive without one (written to the topic
/// by something other than our producer): derived from topic/partition/offset, so a
/// replay of the same message produces the same id and stays idempotent.
const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_6770_6970_656c_696e_6500_0000_0001);

impl Inbound {
    /// Parses and validates with the producer's own rules; an error is the reason
    /// the message goes to the dead-letter topic.
    pub fn to_row(&self, topic: &str) -> Result<NewLogEvent, String> {
        let payload = self
            .payload
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or("empty message")?;
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
        let received_at = self
            .timestamp_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        let derived_id = || {
            Uuid::new_v5(
                &DERIVED_ID_NAMESPACE,
                format!("{topic}/{}/{}", self.partition, self.offset).as_bytes(),
            )
        };
        let event = LogEvent::from_json(value, derived_id, received_at).map_err(|errors| {
            let details: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            format!("invalid event: {}", details.join("; "))
        })?;
        Ok(NewLogEvent::from_event(event, self.partition, self.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(payload: &[u8]) -> Inbound {
        Inbound {
            partition: 2,
            offset: 41,
            key: None,
            payload: Some(payload.to_vec()),
            timestamp_ms: Some(1_700_000_000_000),
            headers: Vec::new(),
        }
    }

    #[test]
    fn valid_event_becomes_a_row_with_its_origin() {
        let row = inbound(br#"{"id":"0193a4f2-7c1e-7d3a-9a51-3f2b8f1c0a11","level":"warn","message":"m","source":"s"}"#)
            .to_row("t")
            .expect("valid");
        assert_eq!(row.level, "WARN");
        assert_eq!((row.kafka_partition, row.kafka_offset), (2, 41));
        assert_eq!(row.timestamp.timestamp_millis(), 1_700_000_000_000);
    }

    #[test]
    fn events_without_id_get_the_same_id_on_replay() {
        let msg = inbound(br#"{"level":"INFO","message":"m","source":"s"}"#);
        let first = msg.to_row("t").expect("valid").id;
        assert_eq!(msg.to_row("t").expect("valid").id, first);
        let mut other = msg.clone();
        other.offset += 1;
        assert_ne!(other.to_row("t").expect("valid").id, first);
    }

    #[test]
    fn poison_messages_say_why() {
        for (payload, reason) in [
            (&b""[..], "empty"),
            (&b"not json"[..], "not JSON"),
            (&b"[1]"[..], "invalid event"),
            (
                &br#"{"level":"LOUD","message":"m","source":"s"}"#[..],
                "unknown level",
            ),
            (&b"\xff\xfe"[..], "not JSON"),
        ] {
            let err = inbound(payload).to_row("t").expect_err("poison");
            assert!(err.contains(reason), "{err} should mention {reason}");
        }
    }
}
