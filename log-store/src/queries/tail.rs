//! The live tail: the events stored since a cursor, in the order the consumer
//! committed them, resumable with no gap and no duplicate.
//!
//! A cursor is, per Kafka partition, the next offset not yet delivered. The order of
//! commits is already on record: a partition is written by one writer at a time, in
//! offset order, and each batch's rows commit in one transaction with the
//! partition's next offset in `consumer_offsets`. So in any snapshot, the rows of
//! partition `p` below its stored next offset are all there and never change, and a
//! poll that reads, in one snapshot, each stored next offset and then the rows from the
//! cursor up to it, can never miss a row that commits later (it will have a higher
//! offset) nor see one twice (the cursor moves past it). Event timestamps play no part:
//! an event whose client set an old timestamp, or writers committing partitions out of
//! order, change nothing. (A "timestamp > last seen" cursor fails on both.)
//!
//! Two topics are stored (the normal one and the priority one, see [`Lane`]), each with
//! offsets of its own, so a position is a lane and a partition: a row's `lane` column
//! says which topic it was read from.

use crate::error::{InvalidRow, QueryError};
use crate::models::EventRow;
use crate::queries::filter::{Conditions, Predicate};
use crate::queries::layouts;
use crate::schema::{consumer_offsets, log_events};
use diesel::prelude::*;
use log_common::domain::Lane;
use log_common::event::LogEvent;
use std::collections::{BTreeMap, VecDeque};

/// The encoded cursor of a database with nothing stored yet.
const EMPTY: &str = "-";

/// A partition of one of the two topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub lane: Lane,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(lane: Lane, partition: i32) -> Self {
        TopicPartition { lane, partition }
    }

    /// `3` for partition 3 of the normal topic, `p3` of the priority topic.
    fn encode(self) -> String {
        match self.lane {
            Lane::Normal => self.partition.to_string(),
            Lane::Priority => format!("p{}", self.partition),
        }
    }

    fn decode(text: &str) -> Option<TopicPartition> {
        let (lane, number) = match text.strip_prefix('p') {
            Some(number) => (Lane::Priority, number),
            None => (Lane::Normal, text),
        };
        let partition: i32 = number.parse().ok()?;
        (partition >= 0 && !number.starts_with('+')).then_some(TopicPartition { lane, partition })
    }
}

/// The two topics the consumer stores, by the names its offsets are kept under.
#[derive(Debug, Clone)]
pub struct TailTopics {
    pub normal: String,
    pub priority: String,
}

impl TailTopics {
    fn lane_of(&self, topic: &str) -> Option<Lane> {
        if topic == self.normal {
            Some(Lane::Normal)
        } else if topic == self.priority {
            Some(Lane::Priority)
        } else {
            None
        }
    }
}

/// Per partition of each topic, the next offset a tail has not yet delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailCursor {
    next: BTreeMap<TopicPartition, i64>,
}

impl TailCursor {
    /// Where `partition` resumes; a partition the cursor has never seen starts at 0
    /// (it had stored nothing when the cursor was made).
    pub fn next_offset(&self, partition: TopicPartition) -> i64 {
        self.next.get(&partition).copied().unwrap_or(0)
    }

    /// Each partition the cursor holds, with its next offset.
    pub fn partitions(&self) -> impl Iterator<Item = (TopicPartition, i64)> + '_ {
        self.next.iter().map(|(&p, &n)| (p, n))
    }

    /// Moves `partition` to `next` (never backwards).
    pub fn advance(&mut self, partition: TopicPartition, next: i64) {
        let entry = self.next.entry(partition).or_insert(0);
        *entry = (*entry).max(next);
    }

    /// Moves every partition of `other` up to it (never backwards).
    pub fn advance_to(&mut self, other: &TailCursor) {
        for (&partition, &next) in &other.next {
            self.advance(partition, next);
        }
    }

    /// True when some partition is further on here than in `other`: reading on from
    /// here would skip what `other` has not seen yet.
    pub fn is_ahead_of(&self, other: &TailCursor) -> bool {
        self.next
            .iter()
            .any(|(&partition, &next)| next > other.next_offset(partition))
    }

    /// `0:120.1:98.p0:7`: partition and next offset pairs (`p`: of the priority
    /// topic), the SSE `id:` of an event; `-` before anything is stored (an
    /// `EventSource` does not send an empty id back).
    pub fn encode(&self) -> String {
        if self.next.is_empty() {
            return EMPTY.to_owned();
        }
        let pairs: Vec<String> = self
            .next
            .iter()
            .map(|(p, o)| format!("{}:{o}", p.encode()))
            .collect();
        pairs.join(".")
    }

    /// The inverse of [`TailCursor::encode`]; `None` for anything it did not make.
    pub fn decode(text: &str) -> Option<TailCursor> {
        let mut cursor = TailCursor::default();
        if text.trim() == EMPTY {
            return Some(cursor);
        }
        for pair in text.trim().split('.').filter(|p| !p.is_empty()) {
            let (partition, offset) = pair.split_once(':')?;
            let partition = TopicPartition::decode(partition)?;
            let offset: i64 = offset.parse().ok()?;
            if offset < 0 || cursor.next.insert(partition, offset).is_some() {
                return None;
            }
        }
        Some(cursor)
    }
}

/// One event of a poll, with where it was stored from.
#[derive(Debug, Clone)]
pub struct TailEvent {
    pub partition: TopicPartition,
    pub offset: i64,
    pub event: LogEvent,
}

/// What a poll found: the matching events (each partition's in offset order) and the
/// cursor past everything it read, matching or not.
#[derive(Debug)]
pub struct TailPoll {
    pub events: Vec<TailEvent>,
    pub cursor: TailCursor,
    /// True when a partition stopped short of its stored offset: poll again at once.
    pub more: bool,
    /// Rows read that are not valid events (passed over).
    pub invalid: Vec<InvalidRow>,
}

/// A poll examines at most `limit` × this many offsets of a partition, matching or not.
pub const SCAN_PER_LIMIT: i64 = 100;

/// The stored next offset of each partition of both topics under `group`: the cursor
/// of "from now on".
pub fn stored_offsets(
    conn: &mut PgConnection,
    group: &str,
    topics: &TailTopics,
) -> Result<TailCursor, QueryError> {
    use consumer_offsets::dsl as o;
    let rows: Vec<(String, i32, i64)> = o::consumer_offsets
        .filter(o::consumer_group.eq(group))
        .filter(o::topic.eq_any([&topics.normal, &topics.priority]))
        .filter(o::next_offset.is_not_null())
        .select((o::topic, o::partition, o::next_offset.assume_not_null()))
        .load(conn)?;
    let next = rows
        .into_iter()
        .filter_map(|(topic, partition, next)| {
            let lane = topics.lane_of(&topic)?;
            Some((TopicPartition::new(lane, partition), next))
        })
        .collect();
    Ok(TailCursor { next })
}

/// An event read for a poll at its offset, or why it is not a valid one.
pub(crate) type AtOffset = (i64, Result<LogEvent, InvalidRow>);

/// The events matching `conditions` stored after `from`, at most `limit` per
/// partition, from the rows, the blocks or both ([`layouts`]): a partition's offsets
/// are each stored once, in one of them. Call it in a `REPEATABLE READ` transaction:
/// the stored offsets and the events must come from one snapshot.
pub fn poll(
    conn: &mut PgConnection,
    group: &str,
    topics: &TailTopics,
    from: &TailCursor,
    conditions: &Conditions,
    limit: i64,
) -> Result<TailPoll, QueryError> {
    let layouts = layouts::stored(conn)?;
    let stored = stored_offsets(conn, group, topics)?;
    let in_blocks = layouts
        .blocks
        .then(|| crate::blocks::tail::scan_filter(conditions));
    let mut cursor = from.clone();
    let mut per_partition: Vec<Vec<TailEvent>> = Vec::new();
    let mut invalid = Vec::new();
    let mut more = false;
    for (&partition, &stored_next) in &stored.next {
        let start = from.next_offset(partition);
        if start >= stored_next {
            continue;
        }
        // A filter that matches little would otherwise read everything up to the
        // stored offset in one statement: a resume from far back could outlast the
        // statement's time limit on every retry and never move.
        let window_end =
            stored_next.min(start.saturating_add(limit.saturating_mul(SCAN_PER_LIMIT)));
        let range = (start, window_end);
        // Each table's first `limit` matches in the window: the window's first
        // `limit` are among them.
        let mut found: Vec<AtOffset> = Vec::new();
        if layouts.read_rows() {
            found.extend(rows_in_range(conn, partition, range, conditions, limit)?);
        }
        if let Some(filter) = &in_blocks {
            found.extend(crate::blocks::tail::in_range(
                conn, partition, range, filter, limit,
            )?);
        }
        found.sort_by_key(|(offset, _)| *offset);
        let full = found.len() as i64 >= limit;
        found.truncate(usize::try_from(limit.max(0)).unwrap_or(usize::MAX));
        match found.last() {
            Some((last, _)) if full => cursor.advance(partition, last + 1),
            _ => cursor.advance(partition, window_end),
        }
        more |= cursor.next_offset(partition) < stored_next;
        let mut events = Vec::with_capacity(found.len());
        for (offset, event) in found {
            // One bad event must not stop every tail at its offset: it is passed
            // over and reported (the gateway counts it, as for any query).
            match event {
                Ok(event) => events.push(TailEvent {
                    partition,
                    offset,
                    event,
                }),
                Err(bad) => invalid.push(bad),
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

/// The rows of `partition` with offsets in `[from, to)` matching `conditions`, the
/// first `limit` in offset order.
///
/// `(kafka_partition, kafka_offset)` is indexed, so this reads only the new rows,
/// whatever the retention. (The index does not hold the lane: the other topic's rows
/// in the same offset range are read and passed over. Priority traffic is small and
/// its offsets lag far behind the normal topic's, so the ranges rarely meet.)
fn rows_in_range(
    conn: &mut PgConnection,
    partition: TopicPartition,
    (from, to): (i64, i64),
    conditions: &Conditions,
    limit: i64,
) -> Result<Vec<AtOffset>, QueryError> {
    use log_events::dsl as e;
    let range: Predicate = Box::new(
        e::kafka_partition
            .eq(partition.partition)
            .and(e::lane.eq(partition.lane.code()))
            .and(e::kafka_offset.ge(from))
            .and(e::kafka_offset.lt(to)),
    );
    let rows: Vec<(i64, EventRow)> = log_events::table
        .filter(conditions.and_to(range))
        .order(e::kafka_offset)
        .limit(limit)
        .select((e::kafka_offset, EventRow::as_select()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(offset, row)| (offset, LogEvent::try_from(row)))
        .collect())
}

/// One list from each partition's, keeping each partition's order and otherwise
/// taking the earliest event first, so a viewer sees time run forward.
pub(crate) fn merge_by_time(lists: Vec<Vec<TailEvent>>) -> Vec<TailEvent> {
    let mut lists: Vec<VecDeque<TailEvent>> = lists.into_iter().map(VecDeque::from).collect();
    let mut merged = Vec::with_capacity(lists.iter().map(VecDeque::len).sum());
    while let Some(earliest) = lists
        .iter_mut()
        .filter(|list| !list.is_empty())
        .min_by_key(|list| list[0].event.timestamp)
    {
        merged.extend(earliest.pop_front());
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cursor_reads_back_what_it_wrote() {
        let mut cursor = TailCursor::default();
        let normal = |p| TopicPartition::new(Lane::Normal, p);
        cursor.advance(normal(3), 17);
        cursor.advance(normal(0), 5);
        cursor.advance(normal(0), 2);
        cursor.advance(TopicPartition::new(Lane::Priority, 0), 4);
        assert_eq!(cursor.encode(), "0:5.3:17.p0:4");
        assert_eq!(TailCursor::decode("0:5.3:17.p0:4"), Some(cursor));
        assert_eq!(TailCursor::default().encode(), "-");
        assert_eq!(TailCursor::decode("-"), Some(TailCursor::default()));
        assert_eq!(TailCursor::default().next_offset(normal(9)), 0);
    }

    #[test]
    fn ahead_means_further_on_in_some_partition() {
        let stream = TailCursor::decode("0:10.1:20").expect("cursor");
        let level = TailCursor::decode("0:10.1:20").expect("cursor");
        let behind = TailCursor::decode("0:5.1:20").expect("cursor");
        let ahead = TailCursor::decode("0:10.1:21").expect("cursor");
        let new_partition = TailCursor::decode("0:10.1:20.2:1").expect("cursor");
        assert!(!level.is_ahead_of(&stream));
        assert!(!behind.is_ahead_of(&stream));
        assert!(ahead.is_ahead_of(&stream));
        assert!(new_partition.is_ahead_of(&stream));
        let mut moved = behind.clone();
        moved.advance_to(&new_partition);
        assert_eq!(moved, new_partition);
    }

    #[test]
    fn anything_else_is_not_a_cursor() {
        for text in [
            "x",
            "0:",
            ":1",
            "0:1.0:2",
            "-1:0",
            "0:-4",
            "0:1,1:2",
            "0:1:2",
            "p:1",
            "p-1:0",
            "pp1:0",
            "q1:0",
            "p1:1.p1:2",
            "+1:0",
        ] {
            assert_eq!(TailCursor::decode(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn merging_keeps_every_event_and_each_partitions_order(
            times in proptest::collection::vec(proptest::collection::vec(0i64..50, 0..8), 0..4)
        ) {
            let lists: Vec<Vec<TailEvent>> = times
                .iter()
                .enumerate()
                .map(|(p, list)| {
                    list.iter()
                        .enumerate()
                        .map(|(o, &t)| {
                            let row = EventRow {
                                id: uuid::Uuid::now_v7(),
                                level: "INFO".to_owned(),
                                message: "m".to_owned(),
                                source: "s".to_owned(),
                                timestamp: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
                                    + chrono::Duration::seconds(t),
                                metadata: None,
                                correlation_id: None,
                                request_id: None,
                                trace_id: None,
                            };
                            let event = LogEvent::try_from(row).expect("a valid row");
                            let partition = TopicPartition::new(Lane::Normal, p as i32);
                            TailEvent { partition, offset: o as i64, event }
                        })
                        .collect()
                })
                .collect();
            let merged = merge_by_time(lists);
            prop_assert_eq!(merged.len(), times.iter().map(Vec::len).sum::<usize>());
            for (p, list) in times.iter().enumerate() {
                let offsets: Vec<i64> = merged
                    .iter()
                    .filter(|e| e.partition.partition == p as i32)
                    .map(|e| e.offset)
                    .collect();
                prop_assert_eq!(offsets, (0..list.len() as i64).collect::<Vec<_>>());
            }
        }
    }
}
