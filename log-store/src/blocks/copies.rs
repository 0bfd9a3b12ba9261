//! Which of a batch's events are stored already: the id promise over blocks, with no
//! index entry per event.
//!
//! Two copies of an event have the same id and the same source: they are the same
//! record sent again (a client's or an agent's retry, a re-read file, a replayed dead
//! letter). So a copy is in a block of its source whose time range holds the copy's
//! timestamp, if it has the same timestamp, or the id's own millisecond, if its id
//! names one (the ids the pipeline mints and derives: [`log_common::ids`]). One
//! statement reads the id filters of those blocks; a "maybe" opens the block, whose ids
//! say it exactly. A filter's false positive costs a block opened, never an event.
//!
//! An id that does not name its event's time (a client's own UUID, a shipper's line
//! id, a record timed on receipt) may come again with another time: that id alone goes
//! into the id memory (`log_event_ids`, kept `ID_MEMORY_DAYS`) as before.
//!
//! Every copy of an id goes to one Kafka partition (the producer keys by the id), and
//! one writer at a time writes a partition, so two copies are never checked in two
//! transactions at once.

use crate::models::NewLogEvent;
use crate::schema::log_blocks;
use ::log_blocks::{key_hash, Filter, KeyKind, OpenBlock};
use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Text, Timestamptz};
use log_common::ids::{id_names_its_time, id_time_millis};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Times of one source closer than this are asked as one window: a batch's events
/// cluster in time, and one window is one index range in the statement.
const WINDOW_GAP_MICROS: i64 = 60_000_000;

/// How often the check starts again when a block it chose was replaced by compaction
/// between its two statements (each a snapshot of its own) before it gives up and the
/// batch is retried.
const ATTEMPTS: usize = 4;

/// The rows (indexes into `rows`) among `candidates` that are stored already, by the
/// id memory or in a block. Ids that do not name their time are added to the id
/// memory on the way.
pub fn stored_already(
    conn: &mut PgConnection,
    rows: &[NewLogEvent],
    candidates: &[usize],
) -> QueryResult<HashSet<usize>> {
    let remembered: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| !id_names_its_time(rows[i].id, rows[i].timestamp))
        .collect();
    let remembered_ids: Vec<Uuid> = remembered.iter().map(|&i| rows[i].id).collect();
    let new: HashSet<Uuid> = remember_new_ids(conn, &remembered_ids)?
        .into_iter()
        .collect();
    let mut stored: HashSet<usize> = remembered
        .into_iter()
        .filter(|&i| !new.contains(&rows[i].id))
        .collect();
    let unsettled: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|i| !stored.contains(i))
        .collect();
    stored.extend(in_blocks(conn, rows, &unsettled)?);
    Ok(stored)
}

/// Adds `ids` to the id memory (`log_event_ids`) and returns the ones that were not
/// in it.
fn remember_new_ids(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct NewId {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<NewId> = diesel::sql_query(
        "INSERT INTO log_event_ids (id, stored_on) \
         SELECT b.id, (SELECT stored_on FROM log_event_id_generation) \
         FROM unnest($1::uuid[]) AS b(id) \
         WHERE NOT EXISTS (SELECT 1 FROM log_event_ids seen WHERE seen.id = b.id) \
         ON CONFLICT DO NOTHING \
         RETURNING id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Where a copy of one row would be: its source, and the time spans (microseconds,
/// inclusive) a block holding it must overlap.
struct Probe<'a> {
    row: usize,
    source: &'a str,
    spans: Vec<(i64, i64)>,
    hash: u64,
}

impl<'a> Probe<'a> {
    fn of(row: usize, event: &'a NewLogEvent) -> Probe<'a> {
        let at = super::micros(event.timestamp);
        let mut spans = vec![(at, at)];
        if let Some(millis) = id_time_millis(event.id) {
            let from = millis.saturating_mul(1_000);
            if !(from..from + 1_000).contains(&at) {
                spans.push((from, from + 999));
            }
        }
        Probe {
            row,
            source: &event.source,
            spans,
            hash: key_hash(KeyKind::Id, &event.id.as_u128().to_be_bytes()),
        }
    }
}

/// The time windows to ask per source: the probes' spans, merged where they lie
/// closer than [`WINDOW_GAP_MICROS`].
fn windows<'a>(probes: &[Probe<'a>]) -> Vec<(&'a str, i64, i64)> {
    let mut by_source: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for probe in probes {
        by_source
            .entry(probe.source)
            .or_default()
            .extend(probe.spans.iter().copied());
    }
    let mut windows = Vec::new();
    for (source, mut spans) in by_source {
        spans.sort_unstable();
        let mut current = spans[0];
        for (from, to) in spans.into_iter().skip(1) {
            if from <= current.1.saturating_add(WINDOW_GAP_MICROS) {
                current.1 = current.1.max(to);
            } else {
                windows.push((source, current.0, current.1));
                current = (from, to);
            }
        }
        windows.push((source, current.0, current.1));
    }
    windows
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    block_id: i64,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Timestamptz)]
    min_time: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    max_time: DateTime<Utc>,
    #[diesel(sql_type = Bytea)]
    key_filter: Vec<u8>,
}

/// The rows among `probed` a block of their source holds already.
fn in_blocks(
    conn: &mut PgConnection,
    rows: &[NewLogEvent],
    probed: &[usize],
) -> QueryResult<HashSet<usize>> {
    if probed.is_empty() {
        return Ok(HashSet::new());
    }
    let probes: Vec<Probe<'_>> = probed.iter().map(|&i| Probe::of(i, &rows[i])).collect();
    let windows = windows(&probes);
    for _ in 0..ATTEMPTS {
        let candidates = candidates(conn, &windows)?;
        let maybe = maybe_holding(&probes, &candidates);
        if maybe.is_empty() {
            return Ok(HashSet::new());
        }
        let block_ids: Vec<i64> = maybe.keys().copied().collect();
        let payloads: Vec<(i64, Vec<u8>)> = log_blocks::table
            .filter(log_blocks::block_id.eq_any(&block_ids))
            .select((log_blocks::block_id, log_blocks::payload))
            .load(conn)?;
        if payloads.len() < block_ids.len() {
            // Compaction replaced a block since the first statement: ask again.
            continue;
        }
        let mut stored = HashSet::new();
        for (block_id, payload) in payloads {
            let block = match OpenBlock::open(payload) {
                Ok(block) => block,
                Err(e) => {
                    // Its events cannot be read back, so storing them again loses
                    // nothing.
                    tracing::error!(block_id, error = %e, "a stored block does not open; its events are not counted as stored");
                    continue;
                }
            };
            let ids: HashSet<u128> = block.ids().iter().copied().collect();
            stored.extend(
                maybe[&block_id]
                    .iter()
                    .copied()
                    .filter(|&i| ids.contains(&rows[i].id.as_u128())),
            );
        }
        return Ok(stored);
    }
    Err(diesel::result::Error::RollbackTransaction)
}

/// The blocks of each window's source whose time range overlaps it, with their id
/// filters. A block lies within one UTC day, so its end is less than a day after its
/// start: that bounds each window's index range.
fn candidates(
    conn: &mut PgConnection,
    windows: &[(&str, i64, i64)],
) -> QueryResult<Vec<Candidate>> {
    let time = |micros: i64| super::from_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC);
    let sources: Vec<&str> = windows.iter().map(|w| w.0).collect();
    let froms: Vec<DateTime<Utc>> = windows.iter().map(|w| time(w.1)).collect();
    let tos: Vec<DateTime<Utc>> = windows.iter().map(|w| time(w.2)).collect();
    let earliest = froms.iter().min().copied().unwrap_or_default() - TimeDelta::days(1);
    let latest = tos.iter().max().copied().unwrap_or_default();
    let mut found: Vec<Candidate> = diesel::sql_query(
        "SELECT b.block_id, b.source, b.min_time, b.max_time, b.key_filter \
         FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS w(source, from_time, to_time) \
         JOIN log_blocks b ON b.source = w.source \
          AND b.max_time >= w.from_time AND b.max_time < w.to_time + interval '1 day' \
          AND b.min_time <= w.to_time \
         WHERE b.min_time >= $4 AND b.min_time <= $5",
    )
    .bind::<Array<Text>, _>(&sources)
    .bind::<Array<Timestamptz>, _>(&froms)
    .bind::<Array<Timestamptz>, _>(&tos)
    .bind::<Timestamptz, _>(earliest)
    .bind::<Timestamptz, _>(latest)
    .load(conn)?;
    found.sort_unstable_by_key(|c| c.block_id);
    found.dedup_by_key(|c| c.block_id);
    Ok(found)
}

/// For each block that may hold one of the probes' ids, the rows it may hold.
fn maybe_holding(probes: &[Probe<'_>], candidates: &[Candidate]) -> HashMap<i64, Vec<usize>> {
    struct Readable {
        block_id: i64,
        min: i64,
        max: i64,
        // `None`: the filter does not read, so only the block can say.
        filter: Option<Filter>,
    }
    let mut by_source: HashMap<&str, Vec<Readable>> = HashMap::new();
    for candidate in candidates {
        by_source
            .entry(candidate.source.as_str())
            .or_default()
            .push(Readable {
                block_id: candidate.block_id,
                min: super::micros(candidate.min_time),
                max: super::micros(candidate.max_time),
                filter: Filter::from_bytes(&candidate.key_filter).ok(),
            });
    }
    let mut maybe: HashMap<i64, Vec<usize>> = HashMap::new();
    for probe in probes {
        let Some(blocks) = by_source.get(probe.source) else {
            continue;
        };
        for block in blocks {
            let overlaps = probe
                .spans
                .iter()
                .any(|&(from, to)| block.min <= to && from <= block.max);
            let may_hold = block
                .filter
                .as_ref()
                .is_none_or(|f| f.may_contain(probe.hash));
            if overlaps && may_hold {
                maybe.entry(block.block_id).or_default().push(probe.row);
            }
        }
    }
    maybe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(source: &'static str, spans: Vec<(i64, i64)>) -> Probe<'static> {
        Probe {
            row: 0,
            source,
            spans,
            hash: 0,
        }
    }

    #[test]
    fn close_times_of_a_source_are_one_window_and_far_ones_two() {
        let minute = WINDOW_GAP_MICROS;
        let probes = vec![
            probe("api", vec![(10, 10)]),
            probe("api", vec![(20, 20), (minute / 2, minute / 2 + 999)]),
            probe("api", vec![(5 * minute, 5 * minute)]),
            probe("db", vec![(20, 20)]),
        ];
        assert_eq!(
            windows(&probes),
            vec![
                ("api", 10, minute / 2 + 999),
                ("api", 5 * minute, 5 * minute),
                ("db", 20, 20),
            ]
        );
    }

    #[test]
    fn an_id_naming_another_time_is_looked_for_at_both() {
        let at = chrono::DateTime::from_timestamp_millis(1_765_000_000_000).expect("time");
        let minted_earlier = log_common::ids::mint_event_id(at - TimeDelta::seconds(5));
        let event = NewLogEvent {
            id: minted_earlier,
            level: "INFO".into(),
            message: "m".into(),
            source: "api".into(),
            timestamp: at,
            metadata: None,
            correlation_id: None,
            request_id: None,
            trace_id: None,
            lane: 0,
            kafka_partition: 0,
            kafka_offset: 0,
        };
        let micros = super::super::micros(at);
        assert_eq!(
            Probe::of(0, &event).spans,
            vec![
                (micros, micros),
                (micros - 5_000_000, micros - 5_000_000 + 999)
            ]
        );
        let own = NewLogEvent {
            id: log_common::ids::mint_event_id(at),
            ..event
        };
        assert_eq!(Probe::of(0, &own).spans, vec![(micros, micros)]);
    }
}
