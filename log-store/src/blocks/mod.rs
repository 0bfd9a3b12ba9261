//! Events stored as blocks (`log_blocks`, the format of the `log-blocks` crate): the
//! consumer's write path ([`write`]), the background merge of small blocks
//! ([`compact`]), the scan every read is built on ([`read`]) and the gateway's page
//! over it ([`query`]).
//!
//! A block holds one stream's events: one lane, one Kafka partition, one source, one
//! UTC day. So a source filter, a day's retention and the live tail's per-partition
//! cursor each select whole blocks.

pub mod compact;
pub mod copies;
pub mod migrate;
pub mod query;
pub mod read;
pub mod tail;
pub mod write;

use chrono::{DateTime, Utc};

/// Microseconds since the epoch, as PostgreSQL keeps a `timestamptz`.
pub(crate) fn micros(timestamp: DateTime<Utc>) -> i64 {
    timestamp.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
}
