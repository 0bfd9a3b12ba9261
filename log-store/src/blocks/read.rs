//! Reading blocks: the scan-and-filter step every query over blocks is built on. The
//! block rows are chosen by their summary columns in SQL (time, source, lane and
//! partition), their filters are asked in Rust, and only then is a payload fetched and
//! opened, newest block first; the caller stops the scan when it has what it needs.
//!
//! A block that does not decode is logged and counted ([`ScanReport::corrupt`]) and
//! passed over: one damaged row never fails a read or crashes a process.

use crate::schema::log_blocks;
use ::log_blocks::{key_hash, BlockEvent, Filter, KeyKind, Query};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use std::ops::ControlFlow;

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
}

impl ScanFilter {
    fn keeps(&self, event: &BlockEvent) -> bool {
        let time_ok = self.window.is_none_or(|(start, end)| {
            let t = event.timestamp_micros;
            t >= super::micros(start) && t < super::micros(end)
        });
        time_ok
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

#[derive(Queryable)]
struct Candidate {
    block_id: i64,
    lane: i16,
    kafka_partition: i32,
    level_counts: Vec<i32>,
    token_filter: Vec<u8>,
    key_filter: Vec<u8>,
}

/// Visits the events matching `filter`, block by block from the newest block (by its
/// latest event), each block's events newest first, until `visit` breaks.
///
/// One read-only `REPEATABLE READ` transaction: the block list and each payload come
/// from one snapshot, so a compaction committing meanwhile shows neither its new block
/// beside the old ones nor a gap where they were.
pub fn scan(
    conn: &mut PgConnection,
    filter: &ScanFilter,
    visit: impl FnMut(ScannedEvent) -> ControlFlow<()>,
) -> QueryResult<ScanReport> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(|conn| scan_in_snapshot(conn, filter, visit))
}

fn scan_in_snapshot(
    conn: &mut PgConnection,
    filter: &ScanFilter,
    mut visit: impl FnMut(ScannedEvent) -> ControlFlow<()>,
) -> QueryResult<ScanReport> {
    let mut query = log_blocks::table
        .select((
            log_blocks::block_id,
            log_blocks::lane,
            log_blocks::kafka_partition,
            log_blocks::level_counts,
            log_blocks::token_filter,
            log_blocks::key_filter,
        ))
        .order((log_blocks::max_time.desc(), log_blocks::block_id.desc()))
        .into_boxed();
    if let Some((start, end)) = filter.window {
        query = query
            .filter(log_blocks::max_time.ge(start))
            .filter(log_blocks::min_time.lt(end));
    }
    if let Some(source) = &filter.source {
        query = query.filter(log_blocks::source.eq(source.clone()));
    }
    let candidates: Vec<Candidate> = query.load(conn)?;
    let mut report = ScanReport {
        considered: candidates.len(),
        ..ScanReport::default()
    };
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
        let mut events = match ::log_blocks::decode(&payload) {
            Ok(events) => events,
            Err(e) => {
                report.corrupt += 1;
                tracing::error!(block_id = candidate.block_id, error = %e, "a stored block does not decode; passed over");
                continue;
            }
        };
        events.sort_by_key(|e| std::cmp::Reverse((e.timestamp_micros, e.id)));
        for event in events.into_iter().filter(|e| filter.keeps(e)) {
            let scanned = ScannedEvent {
                lane: candidate.lane,
                kafka_partition: candidate.kafka_partition,
                event,
            };
            if visit(scanned).is_break() {
                return Ok(report);
            }
        }
    }
    Ok(report)
}
