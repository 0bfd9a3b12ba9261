//! The event's fields as types that can only hold valid values.
//!
//! Each newtype has a private field and one way in, its `parse`, which applies the
//! contract's rule and returns the text a user reads when it fails. Serde goes
//! through the same `parse` (`#[serde(try_from)]`), so no path, not even a JSON
//! round trip through Kafka or Redis, builds an invalid value.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest accepted `message`, in bytes of UTF-8.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Longest accepted `source`, in characters.
pub const MAX_SOURCE_CHARS: usize = 100;

/// PostgreSQL's text and jsonb cannot hold U+0000, so such an event could never be stored.
pub const NUL_MESSAGE: &str = "must not contain NUL (\\u0000) characters";

/// Severity, normalised from the many spellings clients use.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "UPPERCASE", try_from = "String")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }
}

/// The two Kafka topics events travel on. FATAL and ERROR take the priority lane, so
/// the events an on-call person needs first are never queued behind a backlog of the
/// rest; the consumer reads each lane with its own consumer and writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Normal,
    Priority,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Normal, Lane::Priority];

    pub fn of(level: Level) -> Lane {
        match level {
            Level::Error | Level::Fatal => Lane::Priority,
            _ => Lane::Normal,
        }
    }

    /// The value of the `lane` column.
    pub fn code(self) -> i16 {
        match self {
            Lane::Normal => 0,
            Lane::Priority => 1,
        }
    }

    pub fn from_code(code: i16) -> Option<Lane> {
        Lane::ALL.into_iter().find(|lane| lane.code() == code)
    }

    /// For logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Normal => "normal",
            Lane::Priority => "priority",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`Level::from_str`]; its text is what users read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level '{0}': expected one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    /// Case-insensitive; accepts the aliases the contract lists. Anything else is an
    /// error rather than a guess, so a typo never files an ERROR under INFO.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(Level::Trace),
            "debug" => Ok(Level::Debug),
            "info" => Ok(Level::Info),
            "warn" | "warning" => Ok(Level::Warn),
            "error" | "err" => Ok(Level::Error),
            "fatal" | "critical" | "crash" | "panic" => Ok(Level::Fatal),
            _ => Err(UnknownLevel(s.to_owned())),
        }
    }
}

impl TryFrom<String> for Level {
    type Error = UnknownLevel;

    fn try_from(s: String) -> Result<Self, UnknownLevel> {
        s.parse()
    }
}

/// Namespace of the ids derived from a Kafka record's origin: the consumer gives one
/// to an event that arrives without an id (written to the topic by something other than
/// our producer), and the gateway to a replayed dead letter whose payload has no valid
/// id of its own. Derived from topic/partition/offset, so reading or replaying the same
/// record again gives the same id and the pipeline stores it once.
pub const DERIVED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_6770_6970_656c_696e_6500_0000_0001);

/// The id [`DERIVED_ID_NAMESPACE`] gives the record at `topic`/`partition`/`offset`.
pub fn derived_event_id(topic: &str, partition: i32, offset: i64) -> Uuid {
    Uuid::new_v5(
        &DERIVED_ID_NAMESPACE,
        format!("{topic}/{partition}/{offset}").as_bytes(),
    )
}

/// The event id: a UUID (the producer assigns a time-ordered v7 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    pub fn parse(s: &str) -> Result<Self, String> {
        Uuid::parse_str(s)
            .map(EventId)
            .map_err(|_| "must be a UUID".to_owned())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for EventId {
    fn from(id: Uuid) -> Self {
        EventId(id)
    }
}

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl PartialEq<Uuid> for EventId {
    fn eq(&self, other: &Uuid) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Shared by the text newtypes: the checks every required string gets.
fn required_text(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be blank".to_owned())
    } else if s.contains('\0') {
        Err(NUL_MESSAGE.to_owned())
    } else {
        Ok(())
    }
}

macro_rules! text_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::parse(s)
            }
        }

        // By reference: serde's `into` would clone the string on every serialisation.
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// Where the event came from: not blank, no NUL, trimmed, at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Source(String);

impl Source {
    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        required_text(&s)?;
        let s = s.trim();
        let chars = s.chars().count();
        if chars > MAX_SOURCE_CHARS {
            return Err(format!(
                "must be at most {MAX_SOURCE_CHARS} characters, got {chars}"
            ));
        }
        Ok(Source(s.to_owned()))
    }
}

text_newtype!(Source);

/// What happened: not blank, no NUL, at most 32 KiB of UTF-8. Kept as sent (not trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Message(String);

impl Message {
    pub fn parse(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        required_text(&s)?;
        if s.len() > MAX_MESSAGE_BYTES {
            return Err(format!(
                "must be at most {MAX_MESSAGE_BYTES} bytes, got {}",
                s.len()
            ));
        }
        Ok(Message(s))
    }
}

text_newtype!(Message);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_aliases_normalise() {
        for (input, expected) in [
            ("info", Level::Info),
            ("WARNING", Level::Warn),
            ("Err", Level::Error),
            ("critical", Level::Fatal),
            ("crash", Level::Fatal),
            ("panic", Level::Fatal),
            (" trace ", Level::Trace),
        ] {
            assert_eq!(input.parse::<Level>(), Ok(expected), "{input}");
        }
        assert!("verbose".parse::<Level>().is_err());
        assert!("".parse::<Level>().is_err());
    }

    #[test]
    fn serde_goes_through_parse() {
        assert_eq!(
            serde_json::from_str::<Level>("\"warning\"").expect("alias"),
            Level::Warn
        );
        assert_eq!(
            serde_json::to_string(&Level::Warn).expect("ser"),
            "\"WARN\""
        );
        assert!(serde_json::from_str::<Level>("\"LOUD\"").is_err());
        assert!(serde_json::from_str::<Source>("\"  \"").is_err());
        assert!(serde_json::from_str::<Message>("\"a\\u0000b\"").is_err());
        assert!(serde_json::from_str::<EventId>("\"nope\"").is_err());
        let long = format!("\"{}\"", "s".repeat(MAX_SOURCE_CHARS + 1));
        assert!(serde_json::from_str::<Source>(&long).is_err());
    }

    #[test]
    fn source_is_trimmed_and_bounded_in_characters() {
        assert_eq!(Source::parse(" svc ").expect("valid"), "svc");
        let wide = "é".repeat(MAX_SOURCE_CHARS);
        assert!(Source::parse(wide).is_ok(), "characters, not bytes");
        assert_eq!(
            Source::parse("s".repeat(MAX_SOURCE_CHARS + 1)).expect_err("long"),
            format!("must be at most {MAX_SOURCE_CHARS} characters, got 101")
        );
    }

    #[test]
    fn message_is_kept_as_sent_and_bounded_in_bytes() {
        assert_eq!(Message::parse(" m ").expect("valid"), " m ");
        assert!(Message::parse("a".repeat(MAX_MESSAGE_BYTES)).is_ok());
        assert!(Message::parse("a".repeat(MAX_MESSAGE_BYTES + 1)).is_err());
        assert_eq!(
            Message::parse("  ").expect_err("blank"),
            "must not be blank"
        );
    }
}
