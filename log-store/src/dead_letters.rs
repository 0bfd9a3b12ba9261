//! The dead-letter index (tables `dead_letters` and `dead_letter_replays`): written by
//! the consumer for every record it sent to the dead-letter topic, read and replayed
//! by the gateway's admin endpoints.
//!
//! The index keeps the whole original payload (records are bounded by Kafka's
//! `message.max.bytes`), so listing and replaying do not depend on the dead-letter
//! topic still holding the record: Kafka's retention may delete it, the index keeps it
//! for `DEAD_LETTER_RETENTION_DAYS` (purged by the consumer's upkeep, [`purge`]).

use crate::error::{QueryError, StoreError};
use crate::schema::{dead_letter_replays, dead_letters};
use crate::store::Store;
use chrono::{DateTime, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz};
use uuid::Uuid;

/// Why a record became a dead letter, as a small fixed set an operator can filter on
/// (the `reason` text says the details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKind {
    /// No payload at all.
    Empty,
    /// The payload is not JSON (or not UTF-8).
    NotJson,
    /// JSON, but not a valid event (a field missing or invalid).
    InvalidEvent,
    /// A valid event dated before the oldest day `RETENTION_DAYS` keeps.
    TooOld,
    /// PostgreSQL refused the row for good (a constraint).
    RejectedByDatabase,
}

impl ReasonKind {
    pub const ALL: [ReasonKind; 5] = [
        ReasonKind::Empty,
        ReasonKind::NotJson,
        ReasonKind::InvalidEvent,
        ReasonKind::TooOld,
        ReasonKind::RejectedByDatabase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Empty => "empty",
            ReasonKind::NotJson => "not_json",
            ReasonKind::InvalidEvent => "invalid_event",
            ReasonKind::TooOld => "too_old",
            ReasonKind::RejectedByDatabase => "rejected_by_database",
        }
    }

    pub fn parse(s: &str) -> Option<ReasonKind> {
        ReasonKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the consumer records of a dead letter once Kafka has it.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dead_letters)]
pub struct NewDeadLetter {
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub reason_kind: String,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
    pub kafka_key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Inserts the index row of a dead letter; 0 when its origin is already indexed (a
/// crash between the DLQ send and the offset commit sends it again).
pub fn insert(conn: &mut PgConnection, letter: &NewDeadLetter) -> QueryResult<usize> {
    diesel::insert_into(dead_letters::table)
        .values(letter)
        .on_conflict_do_nothing()
        .execute(conn)
}

/// Deletes the dead letters (and their replay audit) that failed before `before`.
pub fn purge(conn: &mut PgConnection, before: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(dead_letters::table.filter(dead_letters::failed_at.lt(before))).execute(conn)
}

/// The instant before which [`purge`] deletes, `retention_days` before `now`; `None`
/// when 0 (kept for ever).
pub fn purge_before(retention_days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (retention_days > 0).then(|| now - TimeDelta::days(i64::from(retention_days)))
}

impl Store {
    /// [`insert`] on a pooled connection: true if the row is new.
    pub fn index_dead_letter(&self, letter: &NewDeadLetter) -> Result<bool, StoreError> {
        let mut conn = self.pool().get()?;
        Ok(insert(&mut conn, letter)? > 0)
    }
}

/// Which dead letters a list or a bulk replay covers; every part optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterFilter {
    pub reason_kind: Option<ReasonKind>,
    /// `failed_at >= from`.
    pub from: Option<DateTime<Utc>>,
    /// `failed_at < to`.
    pub to: Option<DateTime<Utc>>,
}

/// Bytes of the payload a list entry carries.
pub const PREVIEW_BYTES: i32 = 512;

/// A list entry: everything but the payload, of which only the first
/// [`PREVIEW_BYTES`] are read.
#[derive(Debug, Clone, QueryableByName)]
pub struct DeadLetterSummary {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub original_topic: String,
    #[diesel(sql_type = Int4)]
    pub original_partition: i32,
    #[diesel(sql_type = BigInt)]
    pub original_offset: i64,
    #[diesel(sql_type = Text)]
    pub reason_kind: String,
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Timestamptz)]
    pub failed_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    pub preview: Vec<u8>,
    #[diesel(sql_type = Int4)]
    pub payload_bytes: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub replayed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Int4)]
    pub replay_count: i32,
}

/// One dead letter whole, payload included: what a replay sends.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dead_letters)]
pub struct DeadLetter {
    pub id: i64,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub reason_kind: String,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
    pub kafka_key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub replay_count: i32,
}

/// The filter as SQL, with its three values bound as `$1..$3` (a missing one is NULL
/// and drops out; the gateway's connections plan every statement for its values).
const FILTER_SQL: &str = "($1::text IS NULL OR reason_kind = $1) \
     AND ($2::timestamptz IS NULL OR failed_at >= $2) \
     AND ($3::timestamptz IS NULL OR failed_at < $3)";

/// A page of dead letters matching `filter`, newest first (id breaks ties), and the
/// total that match.
pub fn list(
    conn: &mut PgConnection,
    filter: &DeadLetterFilter,
    page: i64,
    size: i64,
) -> Result<(Vec<DeadLetterSummary>, i64), QueryError> {
    let kind = filter.reason_kind.map(ReasonKind::as_str);
    let rows = diesel::sql_query(format!(
        "SELECT id, original_topic, original_partition, original_offset, reason_kind, reason, \
                failed_at, substring(payload FROM 1 FOR {PREVIEW_BYTES}) AS preview, \
                octet_length(payload) AS payload_bytes, replayed_at, replay_count \
         FROM dead_letters WHERE {FILTER_SQL} \
         ORDER BY failed_at DESC, id DESC LIMIT $4 OFFSET $5"
    ))
    .bind::<Nullable<Text>, _>(kind)
    .bind::<Nullable<Timestamptz>, _>(filter.from)
    .bind::<Nullable<Timestamptz>, _>(filter.to)
    .bind::<BigInt, _>(size)
    .bind::<BigInt, _>(page.saturating_mul(size))
    .load::<DeadLetterSummary>(conn)?;
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let total = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM dead_letters WHERE {FILTER_SQL}"
    ))
    .bind::<Nullable<Text>, _>(kind)
    .bind::<Nullable<Timestamptz>, _>(filter.from)
    .bind::<Nullable<Timestamptz>, _>(filter.to)
    .get_result::<Total>(conn)?;
    Ok((rows, total.n))
}

/// The ids of up to `limit` dead letters matching `filter` never replayed with
/// success, oldest first (a bulk replay loads each one as it sends it).
pub fn unreplayed_ids(
    conn: &mut PgConnection,
    filter: &DeadLetterFilter,
    limit: i64,
) -> Result<Vec<i64>, QueryError> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let ids = diesel::sql_query(format!(
        "SELECT id FROM dead_letters WHERE replayed_at IS NULL AND {FILTER_SQL} \
         ORDER BY failed_at, id LIMIT $4"
    ))
    .bind::<Nullable<Text>, _>(filter.reason_kind.map(ReasonKind::as_str))
    .bind::<Nullable<Timestamptz>, _>(filter.from)
    .bind::<Nullable<Timestamptz>, _>(filter.to)
    .bind::<BigInt, _>(limit)
    .load::<Id>(conn)?;
    Ok(ids.into_iter().map(|i| i.id).collect())
}

/// One dead letter, payload included.
pub fn find(conn: &mut PgConnection, id: i64) -> Result<Option<DeadLetter>, QueryError> {
    Ok(dead_letters::table
        .find(id)
        .select(DeadLetter::as_select())
        .first(conn)
        .optional()?)
}

/// Per reason kind: every dead letter, and those never replayed with success.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct KindCount {
    #[diesel(sql_type = Text)]
    pub reason_kind: String,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    #[diesel(sql_type = BigInt)]
    pub unreplayed: i64,
}

pub fn counts(conn: &mut PgConnection) -> Result<Vec<KindCount>, QueryError> {
    Ok(diesel::sql_query(
        "SELECT reason_kind, count(*) AS total, \
                count(*) FILTER (WHERE replayed_at IS NULL) AS unreplayed \
         FROM dead_letters GROUP BY reason_kind ORDER BY reason_kind",
    )
    .load(conn)?)
}

/// What the gateway's gauges show: per kind, the dead letters never replayed with
/// success and the oldest of them. Reads only the partial index of those.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Unreplayed {
    #[diesel(sql_type = Text)]
    pub reason_kind: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    #[diesel(sql_type = Timestamptz)]
    pub oldest: DateTime<Utc>,
}

pub fn unreplayed(conn: &mut PgConnection) -> Result<Vec<Unreplayed>, QueryError> {
    Ok(diesel::sql_query(
        "SELECT reason_kind, count(*) AS count, min(failed_at) AS oldest \
         FROM dead_letters WHERE replayed_at IS NULL GROUP BY reason_kind",
    )
    .load(conn)?)
}

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The producer took the event (Kafka acknowledged it).
    Published,
    /// The producer refused the event (4xx): it is still invalid.
    Rejected,
    /// The producer could not be reached, or failed (5xx, 429, a refused key).
    Failed,
}

impl ReplayOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayOutcome::Published => "published",
            ReplayOutcome::Rejected => "rejected",
            ReplayOutcome::Failed => "failed",
        }
    }
}

/// One replay attempt, for the audit.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dead_letter_replays)]
pub struct NewReplay {
    pub dead_letter_id: i64,
    pub key_fingerprint: String,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub corrected: bool,
    pub event_id: Uuid,
    pub outcome: String,
    pub detail: String,
}

/// An audit row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dead_letter_replays)]
pub struct Replay {
    pub id: i64,
    pub dead_letter_id: i64,
    pub replayed_at: DateTime<Utc>,
    pub key_fingerprint: String,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub corrected: bool,
    pub event_id: Uuid,
    pub outcome: String,
    pub detail: String,
}

/// Writes the audit row of a replay and, when it was published, marks the dead letter
/// replayed (`replayed_at`, `replay_count + 1`), in one transaction.
pub fn record_replay(conn: &mut PgConnection, replay: &NewReplay) -> Result<Replay, QueryError> {
    Ok(conn.transaction(|conn| {
        let row = diesel::insert_into(dead_letter_replays::table)
            .values(replay)
            .returning(Replay::as_returning())
            .get_result(conn)?;
        if replay.outcome == ReplayOutcome::Published.as_str() {
            diesel::update(dead_letters::table.find(replay.dead_letter_id))
                .set((
                    dead_letters::replayed_at.eq(row.replayed_at),
                    dead_letters::replay_count.eq(dead_letters::replay_count + 1),
                ))
                .execute(conn)?;
        }
        Ok::<_, diesel::result::Error>(row)
    })?)
}

/// The audit of one dead letter's replays, oldest first.
pub fn replays(conn: &mut PgConnection, dead_letter_id: i64) -> Result<Vec<Replay>, QueryError> {
    Ok(dead_letter_replays::table
        .filter(dead_letter_replays::dead_letter_id.eq(dead_letter_id))
        .order(dead_letter_replays::id)
        .select(Replay::as_select())
        .load(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_kinds_read_back_from_their_names() {
        for kind in ReasonKind::ALL {
            assert_eq!(ReasonKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ReasonKind::parse("EMPTY"), None);
        assert_eq!(ReasonKind::parse(""), None);
    }

    #[test]
    fn retention_zero_keeps_everything() {
        let now: DateTime<Utc> = "2026-11-29T12:00:00Z".parse().expect("time");
        assert_eq!(purge_before(0, now), None);
        assert_eq!(
            purge_before(30, now),
            Some("2026-10-30T12:00:00Z".parse().expect("time"))
        );
    }
}
