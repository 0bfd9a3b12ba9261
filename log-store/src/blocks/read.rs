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
use ::log_blocks::{key_hash, BlockEvent, Filter, KeyKind, OpenBlock, Query, TextFields};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ops::ControlFlow;

/// Block rows read (summaries and filters, not payloads) per statement: a page that
/// fills from the newest blocks reads no more than this of a long history.
const CANDIDATES_A_STATEMENT: i64 = 256;

/// The most payloads fetched in one statement (a full block is ~0.5 MiB).
const BLOCKS_A_FETCH: usize = 32;

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
        self.keeps_ordered(event.timestamp_micros, event.id, event.level)
            && self.keeps_text(&TextFields {
                source: &event.source,
                message: &event.message,
                correlation_id: event.correlation_id.as_deref(),
                trace_id: event.trace_id.as_deref(),
            })
    }

    /// The conditions on what an opened block holds inflated: time, cursor, level, id.
    fn keeps_ordered(&self, timestamp_micros: i64, id: u128, level: u8) -> bool {
        let time_ok = self.window.is_none_or(|(start, end)| {
            (super::micros(start)..super::micros(end)).contains(&timestamp_micros)
        });
        time_ok
            && self.after.is_none_or(|after| {
                Position {
                    timestamp_micros,
                    id,
                }
                .cmp(&after)
                .is_lt()
            })
            && (self.levels.is_empty() || self.levels.contains(&level))
            && self.id.is_none_or(|wanted| wanted.as_u128() == id)
    }

    /// Whether any condition needs an event's text (and so the block's text columns).
    fn asks_text(&self) -> bool {
        self.source.is_some()
            || self.correlation_id.is_some()
            || self.trace_id.is_some()
            || self.search.is_some()
    }

    fn keeps_text(&self, text: &TextFields<'_>) -> bool {
        self.source.as_deref().is_none_or(|s| s == text.source)
            && self
                .correlation_id
                .as_deref()
                .is_none_or(|c| text.correlation_id == Some(c))
            && self
                .trace_id
                .as_deref()
                .is_none_or(|t| text.trace_id == Some(t))
            && self.search.as_ref().is_none_or(|q| q.matches(text.message))
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

/// A block opened by the merge: the indexes of the events its ordered conditions keep,
/// newest first, and how far the merge has come through them.
struct Opened {
    lane: i16,
    kafka_partition: i32,
    block_id: i64,
    block: OpenBlock,
    order: Vec<u32>,
    next: usize,
}

/// The newest event still to hand over of one opened block (a max-heap of these gives
/// the newest of all first). Only each block's next kept event waits in the merge, as
/// an index: an event is made whole only when handed over.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Head {
    position: Position,
    slot: usize,
    index: u32,
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
/// block is opened (if its summary and filters allow a match) and joins.
fn scan_in_snapshot(
    conn: &mut PgConnection,
    filter: &ScanFilter,
    mut visit: impl FnMut(ScannedEvent) -> ControlFlow<()>,
) -> QueryResult<ScanReport> {
    let mut report = ScanReport::default();
    let mut heads: BinaryHeap<Head> = BinaryHeap::new();
    // Opened blocks by slot; `None` once a block is done (or found damaged).
    let mut opened: Vec<Option<Opened>> = Vec::new();
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
        let emit = match (heads.peek(), next_block_newest) {
            (None, None) => return Ok(report),
            (Some(_), None) => true,
            (Some(top), Some(newest)) => top.position.timestamp_micros > newest,
            (None, Some(_)) => false,
        };
        if emit {
            let Some(Head { slot, index, .. }) = heads.pop() else {
                return Ok(report);
            };
            let Some(block) = opened[slot].as_mut() else {
                continue;
            };
            match block.block.event(index as usize) {
                Ok(Some(event)) => {
                    let scanned = ScannedEvent {
                        lane: block.lane,
                        kafka_partition: block.kafka_partition,
                        event,
                    };
                    if visit(scanned).is_break() {
                        return Ok(report);
                    }
                    advance(filter, &mut opened, slot, &mut heads, &mut report);
                }
                Ok(None) => opened[slot] = None,
                Err(e) => {
                    passed_over(block.block_id, &e, &mut report);
                    opened[slot] = None;
                }
            }
            continue;
        }
        // Every block the merge is sure to open before it hands over its newest pending
        // event is fetched in one statement: those whose newest kept time is not older
        // than that event's (or, with none pending, than the next block's).
        let threshold = heads.peek().map_or_else(
            || queue.front().map(|c| newest_kept(filter, c.max_time)),
            |top| Some(top.position.timestamp_micros),
        );
        let mut batch = Vec::new();
        while batch.len() < BLOCKS_A_FETCH {
            let Some(front) = queue.front() else { break };
            if threshold.is_some_and(|t| newest_kept(filter, front.max_time) < t) {
                break;
            }
            let candidate = queue.pop_front().expect("a front");
            if filter.may_hold(
                &candidate.level_counts,
                &candidate.token_filter,
                &candidate.key_filter,
            ) {
                batch.push(candidate);
            }
        }
        if batch.is_empty() {
            continue;
        }
        let ids: Vec<i64> = batch.iter().map(|c| c.block_id).collect();
        let mut payloads: HashMap<i64, Vec<u8>> = log_blocks::table
            .filter(log_blocks::block_id.eq_any(&ids))
            .select((log_blocks::block_id, log_blocks::payload))
            .load::<(i64, Vec<u8>)>(conn)?
            .into_iter()
            .collect();
        for candidate in batch {
            let Some(payload) = payloads.remove(&candidate.block_id) else {
                continue;
            };
            report.opened += 1;
            match OpenBlock::open(payload) {
                Ok(block) => {
                    opened.push(Some(Opened {
                        lane: candidate.lane,
                        kafka_partition: candidate.kafka_partition,
                        block_id: candidate.block_id,
                        order: newest_first(filter, &block),
                        block,
                        next: 0,
                    }));
                    let slot = opened.len() - 1;
                    advance(filter, &mut opened, slot, &mut heads, &mut report);
                }
                Err(e) => passed_over(candidate.block_id, &e, &mut report),
            }
        }
    }
}

/// The indexes of a block's events that the ordered conditions keep, in the scan's
/// order (newest first, then id descending). A block is written oldest first, so the
/// common case is a reversal, not a sort.
fn newest_first(filter: &ScanFilter, block: &OpenBlock) -> Vec<u32> {
    let (times, ids, levels) = (block.times(), block.ids(), block.levels());
    let position = |i: u32| Position {
        timestamp_micros: times[i as usize],
        id: ids[i as usize],
    };
    let mut order: Vec<u32> = (0..block.len() as u32)
        .filter(|&i| filter.keeps_ordered(times[i as usize], ids[i as usize], levels[i as usize]))
        .collect();
    if order.windows(2).all(|w| position(w[0]) <= position(w[1])) {
        order.reverse();
    } else {
        order.sort_unstable_by_key(|&i| std::cmp::Reverse(position(i)));
    }
    order
}

/// Moves an opened block on to its next event that every condition keeps and puts it
/// in the merge, or lets the block go when none is left. A block whose text does not
/// decode is passed over from there: a text part is read before any of its events is
/// handed over, so what the block gave before came from parts read whole.
fn advance(
    filter: &ScanFilter,
    opened: &mut [Option<Opened>],
    slot: usize,
    heads: &mut BinaryHeap<Head>,
    report: &mut ScanReport,
) {
    let Some(block) = opened[slot].as_mut() else {
        return;
    };
    while let Some(&index) = block.order.get(block.next) {
        block.next += 1;
        if filter.asks_text() {
            match block.block.text_fields(index as usize) {
                Ok(Some(text)) if filter.keeps_text(&text) => {}
                Ok(_) => continue,
                Err(e) => {
                    passed_over(block.block_id, &e, report);
                    opened[slot] = None;
                    return;
                }
            }
        }
        let i = index as usize;
        heads.push(Head {
            position: Position {
                timestamp_micros: block.block.times()[i],
                id: block.block.ids()[i],
            },
            slot,
            index,
        });
        return;
    }
    opened[slot] = None;
}

fn passed_over(block_id: i64, error: &::log_blocks::FormatError, report: &mut ScanReport) {
    report.corrupt += 1;
    tracing::error!(block_id, error = %error, "a stored block does not decode; passed over");
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
            Err(e) => passed_over(candidate.block_id, &e, &mut report),
        }
    }
    found.sort_by_key(|e| e.event.kafka_offset);
    Ok((found, report))
}

/// The first bytes of a block a count of a window fetches: its header and its times
/// and levels, which come first and take ~1.2 bytes an event (zstd), so this bound
/// holds them with room to spare; at most 64 KiB. The payload is stored uncompressed
/// out of line (`STORAGE EXTERNAL`), so PostgreSQL reads only the TOAST chunks of
/// the prefix.
const PREFIX_SQL: &str = "substring(payload FROM 1 FOR least(65536, 256 + 4 * events))";

/// The times and levels of the blocks `block_ids`, each with the block's id: read from
/// a prefix of every payload in one statement, and whole for those whose prefix falls
/// short (a block written with ids first, or one that compressed badly).
fn times_and_levels(
    conn: &mut PgConnection,
    block_ids: &[i64],
) -> QueryResult<
    Vec<(
        i64,
        Result<::log_blocks::TimesAndLevels, ::log_blocks::FormatError>,
    )>,
> {
    use diesel::sql_types::Bytea;
    let prefixes: Vec<(i64, Vec<u8>)> = log_blocks::table
        .filter(log_blocks::block_id.eq_any(block_ids))
        .select((log_blocks::block_id, diesel::dsl::sql::<Bytea>(PREFIX_SQL)))
        .load(conn)?;
    let mut found = Vec::with_capacity(prefixes.len());
    let mut short = Vec::new();
    for (block_id, prefix) in prefixes {
        match ::log_blocks::times_and_levels_of_prefix(&prefix) {
            Ok(Some(read)) => found.push((block_id, Ok(read))),
            Ok(None) => short.push(block_id),
            Err(e) => found.push((block_id, Err(e))),
        }
    }
    if !short.is_empty() {
        let payloads: Vec<(i64, Vec<u8>)> = log_blocks::table
            .filter(log_blocks::block_id.eq_any(&short))
            .select((log_blocks::block_id, log_blocks::payload))
            .load(conn)?;
        found.extend(
            payloads
                .into_iter()
                .map(|(id, payload)| (id, ::log_blocks::decode_times_and_levels(&payload))),
        );
    }
    Ok(found)
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
    let mut cut = Vec::new();
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
        } else {
            cut.push(block_id);
        }
    }
    if cut.is_empty() {
        return Ok((count, report));
    }
    report.opened += cut.len();
    let (from, to) = (super::micros(start), super::micros(end));
    for (block_id, read) in times_and_levels(conn, &cut)? {
        match read {
            Ok((times, block_levels)) => {
                count += times
                    .iter()
                    .zip(&block_levels)
                    .filter(|(t, level)| (from..to).contains(*t) && wanted(**level))
                    .count() as i64;
            }
            Err(e) => passed_over(block_id, &e, &mut report),
        }
    }
    Ok((count, report))
}
