//! The `log_events` row, as the consumer writes it and as the gateway reads it. Both
//! convert from and to the one `LogEvent`; the column list is `schema.rs`'s.

use crate::error::InvalidRow;
use crate::schema::log_events;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use log_common::domain::Lane;
use log_common::event::{Level, LogEvent, Message, Source};
use uuid::Uuid;

/// A row to insert: an event plus where in Kafka it came from.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = log_events)]
pub struct NewLogEvent {
    pub id: Uuid,
    pub level: String,
    pub message: String,
    pub source: String,
    pub timestamp: DateTime<Utc>,
    pub metadata: Option<JsonText>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// The topic it was read from, as [`Lane::code`]: offsets are per topic.
    pub lane: i16,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl NewLogEvent {
    pub fn from_event(
        event: LogEvent,
        lane: Lane,
        kafka_partition: i32,
        kafka_offset: i64,
    ) -> Self {
        NewLogEvent {
            id: event.id.into(),
            level: event.level.as_str().to_owned(),
            message: event.message.into_string(),
            source: event.source.into_string(),
            timestamp: event.timestamp,
            metadata: event.metadata.map(JsonText::from_object),
            correlation_id: event.correlation_id,
            request_id: event.request_id,
            trace_id: event.trace_id,
            lane: lane.code(),
            kafka_partition,
            kafka_offset,
        }
    }
}

/// A JSON object already serialised, bound as `jsonb` as it is. A batch holds this per
/// row instead of a `serde_json::Value`, whose map nodes cost ~460 bytes a row
/// (heaptrack of a drain): with thousands of rows in flight per writer that was a good
/// share of the consumer's memory.
#[derive(Debug, Clone, PartialEq, Eq, diesel::AsExpression)]
#[diesel(sql_type = diesel::sql_types::Jsonb)]
pub struct JsonText(String);

impl JsonText {
    pub fn from_object(object: serde_json::Map<String, serde_json::Value>) -> Self {
        // Display of a JSON value cannot fail.
        JsonText(serde_json::Value::Object(object).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A stored `jsonb` value's text (what PostgreSQL wrote is valid JSON).
    pub(crate) fn from_stored(text: String) -> Self {
        JsonText(text)
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::Jsonb, diesel::pg::Pg> for JsonText {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        use std::io::Write;
        // jsonb's binary input: a version byte (1), then the JSON text.
        out.write_all(&[1])?;
        out.write_all(self.0.as_bytes())?;
        Ok(diesel::serialize::IsNull::No)
    }
}

/// A row as the gateway reads it: the event's columns, nothing of Kafka's.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = log_events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    pub id: Uuid,
    pub level: String,
    pub message: String,
    pub source: String,
    pub timestamp: DateTime<Utc>,
    pub metadata: Option<serde_json::Value>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

impl TryFrom<EventRow> for LogEvent {
    type Error = InvalidRow;

    /// Through the same rules as an ingested event: a row that breaks them (a level
    /// outside the six, say, if the table's CHECK constraint were ever loosened) is an
    /// error, never a silent default.
    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        let invalid = |column: &'static str, reason: String| InvalidRow {
            id: Some(row.id),
            column,
            reason,
        };
        let level: Level = row
            .level
            .parse()
            .map_err(|e: log_common::event::UnknownLevel| invalid("level", e.to_string()))?;
        let message = Message::parse(row.message).map_err(|e| invalid("message", e))?;
        let source = Source::parse(row.source).map_err(|e| invalid("source", e))?;
        Ok(LogEvent {
            id: row.id.into(),
            level,
            message,
            source,
            timestamp: row.timestamp,
            metadata: match row.metadata {
                Some(serde_json::Value::Object(map)) => Some(map),
                _ => None,
            },
            correlation_id: row.correlation_id,
            request_id: row.request_id,
            trace_id: row.trace_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(level: &str) -> EventRow {
        EventRow {
            id: Uuid::now_v7(),
            level: level.to_owned(),
            message: "m".to_owned(),
            source: "s".to_owned(),
            timestamp: Utc::now(),
            metadata: Some(serde_json::json!({"k": 1})),
            correlation_id: Some("c".to_owned()),
            request_id: None,
            trace_id: None,
        }
    }

    #[test]
    fn a_row_reads_back_as_the_event_it_was_written_from() {
        let event = LogEvent::try_from(row("WARN")).expect("valid");
        assert_eq!(event.level, Level::Warn);
        assert_eq!(event.correlation_id.as_deref(), Some("c"));
        let written = NewLogEvent::from_event(event.clone(), Lane::Normal, 3, 7);
        assert_eq!(written.id, event.id.as_uuid());
        assert_eq!(written.level, "WARN");
        assert_eq!(
            written.metadata.as_ref().map(JsonText::as_str),
            Some("{\"k\":1}")
        );
        assert_eq!((written.kafka_partition, written.kafka_offset), (3, 7));
    }

    #[test]
    fn an_unknown_level_is_an_error_naming_the_row() {
        let bad = row("LOUD");
        let id = bad.id;
        let error = LogEvent::try_from(bad).expect_err("not a level");
        assert_eq!((error.id, error.column), (Some(id), "level"));
        assert!(error.reason.contains("LOUD"), "{error}");
    }
}
