//! From a Kafka message to a row, or to the reason it can never be one.

use chrono::{DateTime, NaiveDate, Utc};
use log_common::domain::{derived_event_id, Lane};
use log_common::event::LogEvent;
use log_store::dead_letters::ReasonKind;
use log_store::{partitions, NewLogEvent, Upkeep};

/// The oldest day an event may carry to be stored: an older day's partition is gone
/// (or about to be), so such an event is dead-lettered with the reason, never stalled
/// on. (The far future is refused by the event's own validation, against its receive
/// time, at the producer.)
#[derive(Debug, Clone, Copy)]
pub struct AcceptedTimes {
    pub oldest_day: Option<NaiveDate>,
}

impl AcceptedTimes {
    pub fn now(upkeep: &Upkeep) -> Self {
        AcceptedTimes {
            oldest_day: upkeep.oldest_kept_day(partitions::day_of(Utc::now())),
        }
    }

    fn check(&self, timestamp: DateTime<Utc>) -> Result<(), Poison> {
        match self.oldest_day {
            Some(oldest) if partitions::day_of(timestamp) < oldest => Err(Poison::new(
                ReasonKind::TooOld,
                format!(
                    "timestamp {timestamp} is before {oldest}, the oldest day RETENTION_DAYS keeps"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Why a record can never be stored: its kind (what an operator filters the dead
/// letters on) and the details, made where the reason is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    pub kind: ReasonKind,
    pub reason: String,
}

impl Poison {
    pub fn new(kind: ReasonKind, reason: impl Into<String>) -> Self {
        Poison {
            kind,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Poison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

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

impl Inbound {
    /// Parses and validates with the producer's own rules; an error is the reason
    /// the message goes to the dead-letter topic.
    pub fn to_row(
        &self,
        topic: &str,
        lane: Lane,
        accepted: &AcceptedTimes,
    ) -> Result<NewLogEvent, Poison> {
        let payload = self
            .payload
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Poison::new(ReasonKind::Empty, "empty message"))?;
        let value: serde_json::Value = serde_json::from_slice(payload)
            .map_err(|e| Poison::new(ReasonKind::NotJson, format!("not JSON: {e}")))?;
        let received_at = self
            .timestamp_ms
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(Utc::now);
        // An event without an id gets one from its origin, so a replay of the same
        // message produces the same id and stays idempotent.
        let derived_id = |_| derived_event_id(topic, self.partition, self.offset);
        let event = LogEvent::from_json(value, derived_id, received_at).map_err(|errors| {
            let details: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            Poison::new(
                ReasonKind::InvalidEvent,
                format!("invalid event: {}", details.join("; ")),
            )
        })?;
        accepted.check(event.timestamp)?;
        Ok(NewLogEvent::from_event(
            event,
            lane,
            self.partition,
            self.offset,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn any_time() -> AcceptedTimes {
        AcceptedTimes { oldest_day: None }
    }

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
            .to_row("t", Lane::Normal, &any_time())
            .expect("valid");
        assert_eq!(row.level, "WARN");
        assert_eq!((row.kafka_partition, row.kafka_offset), (2, 41));
        assert_eq!(row.timestamp.timestamp_millis(), 1_700_000_000_000);
    }

    #[test]
    fn events_without_id_get_the_same_id_on_replay() {
        let msg = inbound(br#"{"level":"INFO","message":"m","source":"s"}"#);
        let first = msg
            .to_row("t", Lane::Normal, &any_time())
            .expect("valid")
            .id;
        assert_eq!(
            msg.to_row("t", Lane::Normal, &any_time())
                .expect("valid")
                .id,
            first
        );
        let mut other = msg.clone();
        other.offset += 1;
        assert_ne!(
            other
                .to_row("t", Lane::Normal, &any_time())
                .expect("valid")
                .id,
            first
        );
    }

    #[test]
    fn events_of_days_retention_no_longer_keeps_are_refused_with_the_reason() {
        let upkeep = Upkeep {
            retention_days: 30,
            id_memory_days: 2,
            dead_letter_retention_days: 30,
        };
        let accepted = AcceptedTimes::now(&upkeep);
        let at = |ts: DateTime<Utc>| {
            let payload = format!(
                r#"{{"level":"INFO","message":"m","source":"s","timestamp":"{}"}}"#,
                ts.to_rfc3339()
            );
            let mut record = inbound(payload.as_bytes());
            record.timestamp_ms = Some(Utc::now().timestamp_millis());
            record.to_row("t", Lane::Normal, &accepted)
        };
        let now = Utc::now();
        assert!(at(now - TimeDelta::days(29)).is_ok());
        let old = at(now - TimeDelta::days(31)).expect_err("past retention");
        assert!(old.reason.contains("RETENTION_DAYS"), "{old}");
        assert_eq!(old.kind, ReasonKind::TooOld);
    }

    #[test]
    fn poison_messages_say_why() {
        for (payload, kind, reason) in [
            (&b""[..], ReasonKind::Empty, "empty"),
            (&b"not json"[..], ReasonKind::NotJson, "not JSON"),
            (&b"[1]"[..], ReasonKind::InvalidEvent, "invalid event"),
            (
                &br#"{"level":"LOUD","message":"m","source":"s"}"#[..],
                ReasonKind::InvalidEvent,
                "unknown level",
            ),
            (&b"\xff\xfe"[..], ReasonKind::NotJson, "not JSON"),
        ] {
            let err = inbound(payload)
                .to_row("t", Lane::Normal, &any_time())
                .expect_err("poison");
            assert!(err.reason.contains(reason), "{err} should mention {reason}");
            assert_eq!(err.kind, kind, "{err}");
        }
    }
}
