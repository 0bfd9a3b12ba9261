//! The live tail over blocks: the same poll as [`crate::queries::tail::poll`] over
//! rows, with the same cursor (per partition, the next offset not yet delivered) and so
//! the same promise: no gap, no duplicate, whatever the events' timestamps or the order
//! writers commit in. A block keeps each event's Kafka offset, and its offset range is
//! indexed, so a poll reads only the blocks holding the new offsets.

use super::query::log_event;
use super::read::{offset_range, ScanFilter};
use crate::error::QueryError;
use crate::queries::filter::Conditions;
use crate::queries::tail::{
    merge_by_time, stored_offsets, TailCursor, TailEvent, TailPoll, TailTopics, SCAN_PER_LIMIT,
};
use diesel::PgConnection;

/// The scan's form of the tail's filters.
fn scan_filter(conditions: &Conditions) -> ScanFilter {
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

/// The events matching `conditions` stored after `from`, at most `limit` per
/// partition. Call it in a `REPEATABLE READ` transaction: the stored offsets and the
/// blocks must come from one snapshot.
pub fn poll(
    conn: &mut PgConnection,
    group: &str,
    topics: &TailTopics,
    from: &TailCursor,
    conditions: &Conditions,
    limit: i64,
) -> Result<TailPoll, QueryError> {
    let stored = stored_offsets(conn, group, topics)?;
    let filter = scan_filter(conditions);
    let mut cursor = from.clone();
    let mut per_partition = Vec::new();
    let mut invalid = Vec::new();
    let mut more = false;
    for (partition, stored_next) in stored.partitions() {
        let start = from.next_offset(partition);
        if start >= stored_next {
            continue;
        }
        // As over rows: a window of offsets at a time, so a resume from far back
        // moves on every poll.
        let window_end =
            stored_next.min(start.saturating_add(limit.saturating_mul(SCAN_PER_LIMIT)));
        let (mut found, _) = offset_range(
            conn,
            partition.lane.code(),
            partition.partition,
            (start, window_end),
            &filter,
        )?;
        let full = found.len() as i64 >= limit;
        found.truncate(usize::try_from(limit.max(0)).unwrap_or(usize::MAX));
        match found.last() {
            Some(last) if full => cursor.advance(partition, last.event.kafka_offset + 1),
            _ => cursor.advance(partition, window_end),
        }
        more |= cursor.next_offset(partition) < stored_next;
        let mut events = Vec::with_capacity(found.len());
        for scanned in found {
            let offset = scanned.event.kafka_offset;
            match log_event(scanned) {
                Ok(event) => events.push(TailEvent {
                    partition,
                    offset,
                    event,
                }),
                Err(QueryError::InvalidRow(bad)) => invalid.push(bad),
                Err(e) => return Err(e),
            }
        }
        per_partition.push(events);
    }
    Ok(TailPoll {
        events: merge_by_time(per_partition),
        cursor,
        more,
        invalid,
    })
}
