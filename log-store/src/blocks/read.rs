//! Reading blocks: the scan-and-filter step every query over blocks is built on. The
//! block rows are chosen by their summary columns in SQL (time, source), their filters
//! are asked in Rust, and only then is a payload fetched and opened. Events come out in
//! the order pages use, newest first with the id as tie-break, merged across blocks
//! whose times overlap (every source has its own blocks); the caller stops the scan
//! when it has what it needs, and a block is opened only once no event still to come
//! can be newer than what it may hold.
//!
//! A block that does not decode is logged and counted ([`ScanReport::corrupt`]) and
//! passed over: one damaged row never fails a read or crashes a process.

use crate::schema::log_blocks;
use ::log_blocks::{key_hash, BlockEvent, Filter, KeyKind, Query};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::ControlFlow;

/// Block rows read (summaries and filters, not payloads) per statement: a page that
/// fills from the newest blocks reads no more than this of a long history.
const CANDIDATES_A_STATEMENT: i64 = 256;

/// A place in the scan's order, newest first: time descending, then id descending
/// (the order of pages and of their keyset cursors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub timestamp_micros: i64,
    pub id: u128,
}

impl Position {
    pub fn of(event: &BlockEvent) -> Position {
        Position {
            timestamp_micros: event.timestamp_micros,
            id: event.id,
        }
    }
}

/// Which events a scan visits; every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct ScanFilter {
    /// `[start, end)`.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Level codes (log-blocks' order); empty for all.
    pub levels: Vec<u8>,
    pub source: Option<String>,
    pub id: Option<uuid::Uuid>,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    pub search: Option<Query>,
    /// Only events after this place in the scan's order (strictly older, or as old
    /// with a smaller id): a keyset cursor.
    pub after: Option<Position>,
}

impl ScanFilter {
    fn keeps(&self, event: &BlockEvent) -> bool {
        let time_ok = self.window.is_none_or(|(start, end)| {
            let t = event.timestamp_micros;
            t >= super::micros(start) && t < super::micros(end)
        });
        time_ok
            && self.after.is_none_or(|after| Position::of(event) < after)
            && (self.levels.is_empty() || self.levels.contains(&event.level))
            && self.source.as_ref().is_none_or(|s| *s == event.source)
            && self.id.is_none_or(|id| id.as_u128() == event.id)
            && self
                .correlation_id
                .as_ref()
                .is_none_or(|c| event.correlation_id.as_ref() == Some(c))
            && self
                .trace_id
                .as_ref()
                .is_none_or(|t| event.trace_id.as_ref() == Some(t))
            && self
                .search
                .as_ref()
                .is_none_or(|q| q.matches(&event.message))
    }

    /// Whether a block with these filters and level counts can hold a visited event.
    fn may_hold(&self, level_counts: &[i32], token_filter: &[u8], key_filter: &[u8]) -> bool {
        let levels_ok = self.levels.is_empty()
            || self
                .levels
                .iter()
                .any(|&l| level_counts.get(usize::from(l)).is_some_and(|&n| n > 0));
        if !levels_ok {
            return false;
        }
        let keys: Vec<u64> = [
            self.id
                .map(|id| key_hash(KeyKind::Id, &id.as_u128().to_be_bytes())),
            self.correlation_id
                .as_ref()
                .map(|c| key_hash(KeyKind::CorrelationId, c.as_bytes())),
            self.trace_id
                .as_ref()
                .map(|t| key_hash(KeyKind::TraceId, t.as_bytes())),
        ]
        .into_iter()
        .flatten()
        .collect();
        // A filter that does not read is no reason to skip: the payload decides.
        if !keys.is_empty() {
            if let Ok(filter) = Filter::from_bytes(key_filter) {
                if !keys.iter().all(|k| filter.may_contain(*k)) {
                    return false;
                }
            }
        }
        if let Some(query) = &self.search {
            if let Ok(filter) = Filter::from_bytes(token_filter) {
                return query.may_match(|term| {
                    filter.may_contain(key_hash(KeyKind::Token, term.as_bytes()))
                });
            }
        }
        true
    }
}

/// What a scan did, for metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Block rows whose summary matched.
    pub considered: usize,
    /// Blocks whose payload was fetched and opened.
    pub opened: usize,
    /// Blocks that did not decode, passed over.
    pub corrupt: usize,
}

/// An event as a scan hands it over, with where its block came from.
#[derive(Debug, Clone)]
pub struct ScannedEvent {
    pub lane: i16,
    pub kafka_partition: i32,
    pub event: BlockEvent,
}

/// A block row as the scan first reads it: its summary and filters, not its payload.
#[derive(Queryable)]
struct Candidate {
    block_id: i64,
    lane: i16,
    kafka_partition: i32,
    max_time: DateTime<Utc>,
    level_counts: Vec<i32>,
    token_filter: Vec<u8>,
    key_filter: Vec<u8>,
}

/// An event waiting in the merge, ordered by its [`Position`] (a max-heap gives the
/// newest first).
struct Pending(ScannedEvent);

impl Pending {
    fn position(&self) -> Position {
        Position::of(&self.0.event)
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.position() == other.position()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.position().cmp(&other.position())
    }
}

/// Visits the events matching `filter` newest first (time, then id, descending) until
/// `visit` breaks or none is left.
///
/// The block list and each payload must come from one snapshot, so a compaction
/// committing meanwhile shows neither its new block beside the old ones nor a gap
/// where they were: inside a transaction, the caller's (the gateway's are
/// `REPEATABLE READ`); outside one, a read-only `REPEATABLE READ` transaction of its
/// own.
pub fn scan(
    conn: &mut PgConnection,
    filter: &ScanFilter,
    visit: impl FnMut(ScannedEvent) -> ControlFlow<()>,
) -> QueryResult<ScanReport> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let in_transaction = AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()?
        .is_some();
    if in_transaction {
        return scan_in_snapshot(conn, filter, visit);
    }
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(|conn| scan_in_snapshot(conn, filter, visit))
}

/// The merge: blocks come newest latest-event first; the newest pending event is
/// handed over once it is newer than anything the next block may hold, else that
/// block is opened (if its summary and filters allow a match) and its events join.
fn scan_in_snapshot(
    conn: &mut PgConnection,
    filter: &ScanFilter,
    mut visit: impl FnMut(ScannedEvent) -> ControlFlow<()>,
) -> QueryResult<ScanReport> {
    let mut report = ScanReport::default();
    let mut pending: BinaryHeap<Pending> = BinaryHeap::new();
    let mut queue: VecDeque<Candidate> = VecDeque::new();
    let mut last_read: Option<(DateTime<Utc>, i64)> = None;
    let mut exhausted = false;
    loop {
        if queue.is_empty() && !exhausted {
            let chunk = candidates(conn, filter, last_read)?;
            exhausted = (chunk.len() as i64) < CANDIDATES_A_STATEMENT;
            last_read = chunk.last().map(|c| (c.max_time, c.block_id));
            report.considered += chunk.len();
            queue.extend(chunk);
        }
        let next_block_newest = queue.front().map(|c| newest_kept(filter, c.max_time));
        let emit = match (pending.peek(), next_block_newest) {
            (None, None) => return Ok(report),
            (Some(_), None) => true,
            (Some(top), Some(newest)) => top.position().timestamp_micros > newest,
            (None, Some(_)) => false,
        };
        if emit {
            let Some(Pending(event)) = pending.pop() else {
                return Ok(report);
            };
            if visit(event).is_break() {
                return Ok(report);
            }
            continue;
        }
        let Some(candidate) = queue.pop_front() else {
            continue;
        };
        if !filter.may_hold(
            &candidate.level_counts,
            &candidate.token_filter,
            &candidate.key_filter,
        ) {
            continue;
        }
        let payload: Vec<u8> = log_blocks::table
            .filter(log_blocks::block_id.eq(candidate.block_id))
            .select(log_blocks::payload)
            .first(conn)?;
        report.opened += 1;
        match ::log_blocks::decode(&payload) {
            Ok(events) => {
                pending.extend(events.into_iter().filter(|e| filter.keeps(e)).map(|event| {
                    Pending(ScannedEvent {
                        lane: candidate.lane,
                        kafka_partition: candidate.kafka_partition,
                        event,
                    })
                }))
            }
            Err(e) => {
                report.corrupt += 1;
                tracing::error!(block_id = candidate.block_id, error = %e, "a stored block does not decode; passed over");
            }
        }
    }
}

/// The latest time an event of a block whose newest event is at `max_time` can have
/// and still be kept by `filter`: before the window's end and not after the cursor.
/// The merge waits for a block only while a pending event may be older than this, so
/// a window that ends before a block's newest event does not wait for that block.
fn newest_kept(filter: &ScanFilter, max_time: DateTime<Utc>) -> i64 {
    let mut newest = super::micros(max_time);
    if let Some((_, end)) = filter.window {
        newest = newest.min(super::micros(end) - 1);
    }
    if let Some(after) = filter.after {
        newest = newest.min(after.timestamp_micros);
    }
    newest
}

/// The next block rows in the scan's order (latest event descending, then block id),
/// after `last_read`, that the summary columns cannot rule out.
fn candidates(
    conn: &mut PgConnection,
    filter: &ScanFilter,
    last_read: Option<(DateTime<Utc>, i64)>,
) -> QueryResult<Vec<Candidate>> {
    let mut query = log_blocks::table
        .select((
            log_blocks::block_id,
            log_blocks::lane,
            log_blocks::kafka_partition,
            log_blocks::max_time,
            log_blocks::level_counts,
            log_blocks::token_filter,
            log_blocks::key_filter,
        ))
        .order((log_blocks::max_time.desc(), log_blocks::block_id.desc()))
        .limit(CANDIDATES_A_STATEMENT)
        .into_boxed();
    if let Some((max_time, block_id)) = last_read {
        query = query.filter(
            log_blocks::max_time.lt(max_time).or(log_blocks::max_time
                .eq(max_time)
                .and(log_blocks::block_id.lt(block_id))),
        );
    }
    if let Some((start, end)) = filter.window {
        query = query
            .filter(log_blocks::max_time.ge(start))
            .filter(log_blocks::min_time.lt(end));
    }
    if let Some(after) = filter
        .after
        .and_then(|a| super::from_micros(a.timestamp_micros))
    {
        // A block whose oldest event is newer than the cursor holds nothing after it.
        query = query.filter(log_blocks::min_time.le(after));
    }
    if let Some(source) = &filter.source {
        query = query.filter(log_blocks::source.eq(source.clone()));
    }
    query.load(conn)
}

/// A block row as the tail reads it: its offsets, summary and filters.
#[derive(Queryable)]
struct OffsetCandidate {
    block_id: i64,
    level_counts: Vec<i32>,
    token_filter: Vec<u8>,
    key_filter: Vec<u8>,
}

/// The events of one partition of one lane with Kafka offsets in `[from, to)` that
/// match `filter`, in offset order (the live tail's read). Blocks are chosen by their
/// offset range on the `(lane, kafka_partition, max_offset)` index, then by their
/// filters. Run it in the caller's `REPEATABLE READ` transaction, with the stored
/// offsets it reads up to.
pub fn offset_range(
    conn: &mut PgConnection,
    lane: i16,
    kafka_partition: i32,
    (from, to): (i64, i64),
    filter: &ScanFilter,
) -> QueryResult<(Vec<ScannedEvent>, ScanReport)> {
    let candidates: Vec<OffsetCandidate> = log_blocks::table
        .filter(log_blocks::lane.eq(lane))
        .filter(log_blocks::kafka_partition.eq(kafka_partition))
        .filter(log_blocks::max_offset.ge(from))
        .filter(log_blocks::min_offset.lt(to))
        .select((
            log_blocks::block_id,
            log_blocks::level_counts,
            log_blocks::token_filter,
            log_blocks::key_filter,
        ))
        .load(conn)?;
    let mut report = ScanReport {
        considered: candidates.len(),
        ..ScanReport::default()
    };
    let mut found = Vec::new();
    for candidate in candidates {
        if !filter.may_hold(
            &candidate.level_counts,
            &candidate.token_filter,
            &candidate.key_filter,
        ) {
            continue;
        }
        let payload: Vec<u8> = log_blocks::table
            .filter(log_blocks::block_id.eq(candidate.block_id))
            .select(log_blocks::payload)
            .first(conn)?;
        report.opened += 1;
        match ::log_blocks::decode(&payload) {
            Ok(events) => found.extend(
                events
                    .into_iter()
                    .filter(|e| (from..to).contains(&e.kafka_offset) && filter.keeps(e))
                    .map(|event| ScannedEvent {
                        lane,
                        kafka_partition,
                        event,
                    }),
            ),
            Err(e) => {
                report.corrupt += 1;
                tracing::error!(block_id = candidate.block_id, error = %e, "a stored block does not decode; passed over");
            }
        }
    }
    found.sort_by_key(|e| e.event.kafka_offset);
    Ok((found, report))
}

/// The first bytes of a block a count of a window fetches: a block's times and levels
/// come first and take ~1.2 bytes an event, so this holds them for a full block. The
/// payload is stored uncompressed out of line (`STORAGE EXTERNAL`), so PostgreSQL
/// reads only the TOAST chunks of the prefix.
const PREFIX_BYTES: i32 = 64 * 1024;

/// A block's times and levels: from a prefix of its payload, else (a block written
/// with ids first, or a larger one) from the whole of it.
fn times_and_levels(
    conn: &mut PgConnection,
    block_id: i64,
) -> QueryResult<Result<::log_blocks::TimesAndLevels, ::log_blocks::FormatError>> {
    let prefix: Vec<u8> = log_blocks::table
        .filter(log_blocks::block_id.eq(block_id))
        .select(diesel::dsl::sql::<diesel::sql_types::Bytea>(&format!(
            "substring(payload FROM 1 FOR {PREFIX_BYTES})"
        )))
        .first(conn)?;
    match ::log_blocks::times_and_levels_of_prefix(&prefix) {
        Ok(Some(found)) => return Ok(Ok(found)),
        Ok(None) => {}
        Err(e) => return Ok(Err(e)),
    }
    let payload: Vec<u8> = log_blocks::table
        .filter(log_blocks::block_id.eq(block_id))
        .select(log_blocks::payload)
        .first(conn)?;
    Ok(::log_blocks::decode_times_and_levels(&payload))
}

/// A block row as a count of a window reads it.
#[derive(Queryable)]
struct WindowCandidate {
    block_id: i64,
    min_time: DateTime<Utc>,
    max_time: DateTime<Utc>,
    level_counts: Vec<i32>,
}

/// The events in `[start, end)` of `levels` (codes; empty: every level) and `source`
/// (if any): the count a total's edge minute needs. A block wholly inside the window
/// is counted from its level counts, unopened; one it cuts is read for its times and
/// levels alone (`log_blocks::decode_times_and_levels`), never its messages. A block
/// that does not decode is passed over and counted in the report, as by [`scan`].
pub fn count_in_window(
    conn: &mut PgConnection,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    levels: &[u8],
    source: Option<&str>,
) -> QueryResult<(i64, ScanReport)> {
    let mut query = log_blocks::table
        .select((
            log_blocks::block_id,
            log_blocks::min_time,
            log_blocks::max_time,
            log_blocks::level_counts,
        ))
        .filter(log_blocks::max_time.ge(start))
        .filter(log_blocks::min_time.lt(end))
        .into_boxed();
    if let Some(source) = source {
        query = query.filter(log_blocks::source.eq(source.to_owned()));
    }
    let blocks: Vec<WindowCandidate> = query.load(conn)?;
    let wanted = |level: u8| levels.is_empty() || levels.contains(&level);
    let mut report = ScanReport {
        considered: blocks.len(),
        ..ScanReport::default()
    };
    let mut count = 0;
    for WindowCandidate {
        block_id,
        min_time,
        max_time,
        level_counts,
    } in blocks
    {
        let of_levels: i64 = (0u8..)
            .zip(&level_counts)
            .filter(|(level, _)| wanted(*level))
            .map(|(_, n)| i64::from(*n))
            .sum();
        if of_levels == 0 {
            continue;
        }
        if min_time >= start && max_time < end {
            count += of_levels;
            continue;
        }
        report.opened += 1;
        match times_and_levels(conn, block_id)? {
            Ok((times, block_levels)) => {
                let (from, to) = (super::micros(start), super::micros(end));
                count += times
                    .iter()
                    .zip(&block_levels)
                    .filter(|(t, level)| (from..to).contains(*t) && wanted(**level))
                    .count() as i64;
            }
            Err(e) => {
                report.corrupt += 1;
                tracing::error!(block_id, error = %e, "a stored block does not decode; passed over");
            }
        }
    }
    Ok((count, report))
}
