//! Day partitions (UTC) of `log_events` and its rollups, and the generations
//! of `log_event_ids`: created ahead of need and on demand, dropped whole for retention.
//! The SQL functions doing the DDL are in the `partition_by_day` migration.
//!
//! Why our own task and not pg_partman: the whole job is "create a few days ahead, drop
//! the days past retention, move the id generation at midnight". The last one has to
//! happen under the same lock the batch transactions take, which pg_partman cannot
//! know about; and the consumer must create a partition on demand anyway, for an event
//! a day or weeks old. With the consumer doing both, there is no extension to install
//! and no background worker to configure.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Date, Text};

/// The tables partitioned by the day of their time column, dropped by retention.
pub const DAY_PARTITIONED: [&str; 4] = [
    "log_events",
    "log_blocks",
    "log_rollup_minute",
    "log_rollup_hour",
];

/// Advisory lock key ("logids"): every batch transaction holds it shared from reading
/// the id generation to its commit; what must not interleave with a batch holds it
/// exclusive, for an instant:
/// - moving the id generation, so no two transactions in flight write the same id
///   into two different generations;
/// - folding the rollups, which deletes and rewrites rows a batch of late events may
///   be adding to; in two orders of locking rows that would deadlock.
pub const BATCH_LOCK: i64 = 0x6c6f_6769_6473;

/// How far ahead of today partitions exist before anything needs them.
pub const DAYS_AHEAD: i64 = 2;

/// The UTC day a timestamp's partition covers.
pub fn day_of(timestamp: DateTime<Utc>) -> NaiveDate {
    timestamp.date_naive()
}

/// Creates `day`'s partition of every day-partitioned table where missing; true if
/// any was created. Safe to race: the loser finds the partition there.
pub fn create_day(conn: &mut PgConnection, day: NaiveDate) -> QueryResult<bool> {
    let mut created = false;
    for table in DAY_PARTITIONED {
        created |= create(conn, table, day)?;
    }
    Ok(created)
}

fn create(conn: &mut PgConnection, table: &str, day: NaiveDate) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Created {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        created: bool,
    }
    let row: Created = diesel::sql_query("SELECT log_create_day_partition($1, $2) AS created")
        .bind::<Text, _>(table)
        .bind::<Date, _>(day)
        .get_result(conn)?;
    if row.created {
        tracing::info!(table, %day, "partition created");
    }
    Ok(row.created)
}

/// Drops `table`'s day partitions for days before `keep_from`; returns their names.
fn drop_before(
    conn: &mut PgConnection,
    table: &str,
    keep_from: NaiveDate,
) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Dropped {
        #[diesel(sql_type = Text)]
        name: String,
    }
    let dropped: Vec<Dropped> = diesel::sql_query("SELECT log_drop_day_partitions($1, $2) AS name")
        .bind::<Text, _>(table)
        .bind::<Date, _>(keep_from)
        .load(conn)?;
    Ok(dropped.into_iter().map(|d| d.name).collect())
}

/// What the periodic maintenance keeps true.
#[derive(Debug, Clone, Copy)]
pub struct Upkeep {
    /// Days of events (and their rollups) kept before today; 0 keeps all.
    pub retention_days: u32,
    /// Generations of ids kept, today's included (at least 1).
    pub id_memory_days: u32,
    /// Days the dead-letter index keeps an entry (and its replay audit); 0 keeps all.
    pub dead_letter_retention_days: u32,
}

/// What one round of maintenance did.
#[derive(Debug, Default)]
pub struct UpkeepReport {
    pub created: usize,
    pub dropped: Vec<String>,
    /// Per-partition rollup rows folded into one a key.
    pub folded: usize,
    /// Dead-letter index entries past `DEAD_LETTER_RETENTION_DAYS`, deleted.
    pub dead_letters_purged: usize,
}

impl Upkeep {
    /// The oldest day whose events are stored on `today`; older ones are refused.
    pub fn oldest_kept_day(&self, today: NaiveDate) -> Option<NaiveDate> {
        (self.retention_days > 0).then(|| today - TimeDelta::days(i64::from(self.retention_days)))
    }

    /// One round: partitions from yesterday to [`DAYS_AHEAD`], the id generation
    /// moved to today, what retention and the id memory no longer keep dropped, and
    /// the rollups of settled hours folded.
    /// Locks wait at most `lock_timeout` (a DROP needs the parent table to itself for
    /// an instant; it must not queue queries behind it for long): what could not be
    /// done now is done next round.
    pub fn run(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<UpkeepReport> {
        let today = day_of(now);
        let mut report = UpkeepReport::default();
        diesel::sql_query("SET lock_timeout = '5s'").execute(conn)?;
        let result = (|| {
            for offset in -1..=DAYS_AHEAD {
                report.created += usize::from(create_day(conn, today + TimeDelta::days(offset))?);
            }
            report.created += usize::from(create(conn, "log_event_ids", today)?);
            let generation = move_id_generation(conn, today)?;
            if let Some(oldest) = self.oldest_kept_day(today) {
                for table in DAY_PARTITIONED {
                    report.dropped.extend(drop_before(conn, table, oldest)?);
                }
                // The day rollups are a few thousand rows a day, not partitioned.
                diesel::sql_query(
                    "DELETE FROM log_rollup_day WHERE bucket < ($1::date)::timestamp AT TIME ZONE 'UTC'",
                )
                .bind::<Date, _>(oldest)
                .execute(conn)?;
            }
            let memory = i64::from(self.id_memory_days.max(1)) - 1;
            report.dropped.extend(drop_before(
                conn,
                "log_event_ids",
                generation - TimeDelta::days(memory),
            )?);
            report.folded = crate::rollups::fold(conn, now)?;
            if let Some(before) =
                crate::dead_letters::purge_before(self.dead_letter_retention_days, now)
            {
                report.dead_letters_purged = crate::dead_letters::purge(conn, before)?;
            }
            Ok(())
        })();
        diesel::sql_query("RESET lock_timeout").execute(conn)?;
        result.map(|()| report)
    }
}

/// Moves the id generation forward to `today` (never back) and returns the current one.
fn move_id_generation(conn: &mut PgConnection, today: NaiveDate) -> QueryResult<NaiveDate> {
    #[derive(QueryableByName)]
    struct Generation {
        #[diesel(sql_type = Date)]
        day: NaiveDate,
    }
    conn.transaction(|conn| {
        hold_batches_off(conn)?;
        let generation: Generation = diesel::sql_query(
            "UPDATE log_event_id_generation \
             SET stored_on = greatest(stored_on, ($1::date)::timestamp AT TIME ZONE 'UTC') \
             RETURNING (stored_on AT TIME ZONE 'UTC')::date AS day",
        )
        .bind::<Date, _>(today)
        .get_result(conn)?;
        Ok(generation.day)
    })
}

/// Waits for the batch transactions in flight to end and holds new ones off until the
/// current transaction ends ([`BATCH_LOCK`], exclusive).
pub fn hold_batches_off(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(BATCH_LOCK)
        .execute(conn)
        .map(|_| ())
}

/// Inside a batch transaction, before its ids are written: waits out a generation
/// move or a fold in progress and holds both off until commit.
pub fn hold_id_generation(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind::<diesel::sql_types::BigInt, _>(BATCH_LOCK)
        .execute(conn)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_belongs_to_its_utc_day() {
        let late: DateTime<Utc> = "2026-11-29T23:59:59.999Z".parse().expect("ts");
        let midnight: DateTime<Utc> = "2026-11-30T00:00:00Z".parse().expect("ts");
        assert_eq!(
            day_of(late),
            NaiveDate::from_ymd_opt(2026, 11, 29).expect("day")
        );
        assert_eq!(
            day_of(midnight),
            NaiveDate::from_ymd_opt(2026, 11, 30).expect("day")
        );
    }

    #[test]
    fn retention_keeps_today_and_the_days_before_it() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 29).expect("day");
        let upkeep = |retention_days| Upkeep {
            retention_days,
            id_memory_days: 2,
            dead_letter_retention_days: 30,
        };
        assert_eq!(
            upkeep(30).oldest_kept_day(today),
            NaiveDate::from_ymd_opt(2026, 10, 30)
        );
        assert_eq!(upkeep(0).oldest_kept_day(today), None);
    }
}
