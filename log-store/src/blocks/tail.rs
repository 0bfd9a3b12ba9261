//! The live tail's read of blocks: one partition's events by Kafka offset. The poll
//! ([`crate::queries::tail::poll`]) is the same over rows and blocks, with the same
//! cursor (per partition, the next offset not yet delivered) and so the same promise:
//! no gap, no duplicate, whatever the events' timestamps or the order writers commit
//! in. A block keeps each event's Kafka offset, and its offset range is indexed, so a
//! poll reads only the blocks holding the new offsets.

use super::query::log_event;
use super::read::{offset_range, ScanFilter};
use crate::error::QueryError;
use crate::queries::filter::Conditions;
use crate::queries::tail::{AtOffset, TopicPartition};
use diesel::PgConnection;

/// The scan's form of the tail's filters.
pub(crate) fn scan_filter(conditions: &Conditions) -> ScanFilter {
    ScanFilter {
        levels: conditions
            .levels
            .iter()
            .filter_map(|l| ::log_blocks::level_code(l.as_str()))
            .collect(),
        source: conditions.source.clone(),
        correlation_id: conditions.correlation_id.clone(),
        trace_id: conditions.trace_id.clone(),
        search: conditions.text.as_deref().map(::log_blocks::Query::parse),
        ..ScanFilter::default()
    }
}

/// The events of `partition` in blocks with offsets in `range` matching `filter`, the
/// first `limit` in offset order.
pub(crate) fn in_range(
    conn: &mut PgConnection,
    partition: TopicPartition,
    range: (i64, i64),
    filter: &ScanFilter,
    limit: i64,
) -> Result<Vec<AtOffset>, QueryError> {
    let (mut found, _) = offset_range(
        conn,
        partition.lane.code(),
        partition.partition,
        range,
        filter,
    )?;
    found.truncate(usize::try_from(limit.max(0)).unwrap_or(usize::MAX));
    found
        .into_iter()
        .map(|scanned| {
            let offset = scanned.event.kafka_offset;
            match log_event(scanned) {
                Ok(event) => Ok((offset, Ok(event))),
                Err(QueryError::InvalidRow(bad)) => Ok((offset, Err(bad))),
                Err(e) => Err(e),
            }
        })
        .collect()
}
