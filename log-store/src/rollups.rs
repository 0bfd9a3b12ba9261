//! Rollups (`log_rollup_minute`, `log_rollup_hour`, `log_rollup_day`): events per bucket by level and
//! source, and a sketch of `metadata.duration`, added to in the batch transaction
//! from the rows the insert reports as new. So the rollups move exactly when the rows
//! do: a replay inserts nothing and adds nothing; a batch that rolls back takes its
//! additions with it. The `rollups` migration explains the key.

use crate::sketch::DurationSketch;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// What the rollups need of a row the insert stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct Counted {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub timestamp: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub level: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub source: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub kafka_partition: i32,
    /// `metadata.duration` when it is a number.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    pub duration: Option<f64>,
}

/// Stands for "every source" (a real source is never empty) and, in the level
/// column, "every level": the row that carries the bucket's total and its sketch.
pub const ALL: &str = "";

/// The rollup tables, finest first, with their bucket width.
pub const GRAINS: [(&str, TimeDelta); 3] = [
    ("log_rollup_minute", TimeDelta::minutes(1)),
    ("log_rollup_hour", TimeDelta::hours(1)),
    ("log_rollup_day", TimeDelta::days(1)),
];

/// One rollup row's key: bucket, level, source, partition (the table's key leads with
/// the level; see the `rollup_read_paths` migration).
pub type Key<'a> = (DateTime<Utc>, &'a str, &'a str, i32);

#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub events: i64,
    /// Only on the (every level, every source) row.
    pub durations: Option<DurationSketch>,
}

/// The rows' additions to the rollup of bucket width `width`: per level and source,
/// per level (source [`ALL`]), per source (level [`ALL`]), and the total with the
/// duration sketch (both [`ALL`]).
pub fn tally(rows: &[Counted], width: TimeDelta) -> BTreeMap<Key<'_>, Tally> {
    Minutes::of(rows).tally(width)
}

/// A batch's rows counted once, by minute, level, source and partition, with a
/// duration sketch per minute and partition: every grain's tally is summed from these
/// few hundred entries instead of from the rows again (counting each row into twelve
/// ordered keys was a tenth of the consumer's CPU).
struct Minutes<'a> {
    events: HashMap<Key<'a>, i64>,
    durations: HashMap<(DateTime<Utc>, i32), DurationSketch>,
}

impl<'a> Minutes<'a> {
    fn of(rows: &'a [Counted]) -> Minutes<'a> {
        let mut events: HashMap<Key<'a>, i64> = HashMap::new();
        let mut durations: HashMap<(DateTime<Utc>, i32), DurationSketch> = HashMap::new();
        for row in rows {
            // Truncating cannot fail for a timestamp PostgreSQL stored.
            let minute = row
                .timestamp
                .duration_trunc(TimeDelta::minutes(1))
                .unwrap_or(row.timestamp);
            let partition = row.kafka_partition;
            *events
                .entry((minute, &row.level, &row.source, partition))
                .or_default() += 1;
            let sketch = durations.entry((minute, partition)).or_default();
            if let Some(duration) = row.duration {
                sketch.add(duration);
            }
        }
        Minutes { events, durations }
    }

    /// The additions at bucket width `width` (a whole number of minutes that divides
    /// the day, as every grain's is), in key order.
    fn tally(&self, width: TimeDelta) -> BTreeMap<Key<'a>, Tally> {
        let bucket_of = |minute: DateTime<Utc>| minute.duration_trunc(width).unwrap_or(minute);
        let mut tallies: BTreeMap<Key<'a>, Tally> = BTreeMap::new();
        for (&(minute, level, source, partition), &events) in &self.events {
            let bucket = bucket_of(minute);
            for key in [
                (bucket, level, source, partition),
                (bucket, level, ALL, partition),
                (bucket, ALL, source, partition),
                (bucket, ALL, ALL, partition),
            ] {
                tallies.entry(key).or_default().events += events;
            }
        }
        for (&(minute, partition), sketch) in &self.durations {
            tallies
                .entry((bucket_of(minute), ALL, ALL, partition))
                .or_default()
                .durations
                .get_or_insert_with(DurationSketch::default)
                .merge(sketch);
        }
        tallies
    }
}

/// Adds `rows` to every rollup: one statement a table, whatever the batch. Keys go
/// in sorted order, so two transactions touching the same rows lock them in the same
/// order and cannot deadlock.
pub fn add(conn: &mut PgConnection, rows: &[Counted]) -> QueryResult<()> {
    use diesel::sql_types::{Array, Int4, Int8, Nullable, Text, Timestamptz};
    if rows.is_empty() {
        return Ok(());
    }
    let minutes = Minutes::of(rows);
    for (table, width) in GRAINS {
        let tallies = minutes.tally(width);
        diesel::sql_query(format!(
            "INSERT INTO {table} AS r (bucket, level, source, kafka_partition, events, sketch) \
             SELECT b, l, s, p, e, k::int8[] \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::int4[], $5::int8[], $6::text[]) \
                  AS t(b, l, s, p, e, k) \
             ON CONFLICT (bucket, level, source, kafka_partition) DO UPDATE \
             SET events = r.events + EXCLUDED.events, \
                 sketch = log_sketch_add(r.sketch, EXCLUDED.sketch)"
        ))
        .bind::<Array<Timestamptz>, _>(tallies.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(tallies.keys().map(|k| k.1).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(tallies.keys().map(|k| k.2).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(tallies.keys().map(|k| k.3).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(tallies.values().map(|t| t.events).collect::<Vec<_>>())
        // As array literals: unnest would flatten an array of arrays. A batch has a
        // handful of sketches, so the text costs nothing.
        .bind::<Array<Nullable<Text>>, _>(
            tallies
                .values()
                .map(|t| t.durations.as_ref().map(sketch_literal))
                .collect::<Vec<_>>(),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// `{k,n,k,n,…}`: a sketch as an `int8[]` literal.
fn sketch_literal(sketch: &DurationSketch) -> String {
    let pairs: Vec<String> = sketch.to_pairs().iter().map(i64::to_string).collect();
    format!("{{{}}}", pairs.join(","))
}

/// Per-partition rollup rows moved by one fold transaction, at most.
const FOLD_CHUNK_ROWS: i64 = 10_000;

/// Folds the per-partition rows of settled buckets into one row a key (partition
/// -1), so a long window reads one row per key instead of one per partition: minutes
/// ten minutes old, hours and days that ended an hour ago. The sums move, never
/// change. Late events for a folded bucket add new per-partition rows, folded the
/// next time.
///
/// Each transaction holds the batches off while it runs (they would lock the same
/// rows in another order: a deadlock under a backfill), so each moves at most
/// [`FOLD_CHUNK_ROWS`] rows and the batches run between them: after a backfill of
/// days, one transaction for all of it held the writers for seconds.
pub fn fold(conn: &mut PgConnection, now: DateTime<Utc>) -> QueryResult<usize> {
    let floor = |width: TimeDelta| now.duration_trunc(width).unwrap_or(now);
    let settled = [
        (
            "log_rollup_minute",
            floor(TimeDelta::minutes(1)) - TimeDelta::minutes(10),
        ),
        (
            "log_rollup_hour",
            floor(TimeDelta::hours(1)) - TimeDelta::hours(1),
        ),
        (
            "log_rollup_day",
            (now - TimeDelta::hours(1))
                .duration_trunc(TimeDelta::days(1))
                .unwrap_or(now),
        ),
    ];
    let mut folded = 0;
    for (table, before) in settled {
        loop {
            let (found, written) = conn.transaction(|conn| fold_chunk(conn, table, before))?;
            folded += written;
            if found == 0 {
                break;
            }
        }
    }
    Ok(folded)
}

#[derive(QueryableByName)]
struct RollupKey {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    bucket: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    level: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    source: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    kafka_partition: i32,
}

/// One transaction of [`fold`]: up to [`FOLD_CHUNK_ROWS`] per-partition rows of
/// `table` before `before` moved into their keys' folded rows. Returns the rows found
/// (0: nothing left) and the folded rows written. The rows are found before the
/// batches are held off (on a large table finding them takes a scan); the delete
/// then takes them as they are by then.
fn fold_chunk(
    conn: &mut PgConnection,
    table: &str,
    before: DateTime<Utc>,
) -> QueryResult<(usize, usize)> {
    use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz};
    let keys: Vec<RollupKey> = diesel::sql_query(format!(
        "SELECT bucket, level, source, kafka_partition FROM {table} \
         WHERE kafka_partition >= 0 AND bucket < $1 LIMIT $2"
    ))
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(FOLD_CHUNK_ROWS)
    .load(conn)?;
    if keys.is_empty() {
        return Ok((0, 0));
    }
    crate::partitions::hold_batches_off(conn)?;
    let written = diesel::sql_query(format!(
        "WITH moved AS ( \
             DELETE FROM {table} WHERE (bucket, level, source, kafka_partition) IN ( \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::int4[]) \
             ) RETURNING * \
         ) \
         INSERT INTO {table} AS r (bucket, level, source, kafka_partition, events, sketch) \
         SELECT bucket, level, source, -1, sum(events), log_sketch_sum(sketch) \
         FROM moved GROUP BY bucket, level, source ORDER BY bucket, level, source \
         ON CONFLICT (bucket, level, source, kafka_partition) DO UPDATE \
         SET events = r.events + EXCLUDED.events, \
             sketch = log_sketch_add(r.sketch, EXCLUDED.sketch)"
    ))
    .bind::<Array<Timestamptz>, _>(keys.iter().map(|k| k.bucket).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.level.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.source.as_str()).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(keys.iter().map(|k| k.kafka_partition).collect::<Vec<_>>())
    .execute(conn)?;
    Ok((keys.len(), written))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: &str, level: &str, source: &str, partition: i32, duration: Option<f64>) -> Counted {
        Counted {
            timestamp: at.parse().expect("timestamp"),
            level: level.into(),
            source: source.into(),
            kafka_partition: partition,
            duration,
        }
    }

    #[test]
    fn rows_are_tallied_by_bucket_level_source_and_partition_with_totals() {
        let rows = [
            row("2026-11-29T10:00:00Z", "INFO", "a", 0, Some(5.0)),
            row("2026-11-29T10:00:59.999Z", "INFO", "a", 0, None),
            row("2026-11-29T10:01:00Z", "INFO", "a", 0, Some(7.0)),
            row("2026-11-29T10:00:30Z", "ERROR", "a", 0, None),
            row("2026-11-29T10:00:30Z", "INFO", "b", 0, None),
            row("2026-11-29T10:00:30Z", "INFO", "a", 1, None),
        ];
        let minutes = tally(&rows, TimeDelta::minutes(1));
        let ten: DateTime<Utc> = "2026-11-29T10:00:00Z".parse().expect("minute");
        let ten_one: DateTime<Utc> = "2026-11-29T10:01:00Z".parse().expect("minute");
        let events = |key: Key<'_>| minutes[&key].events;
        assert_eq!(events((ten, "INFO", "a", 0)), 2);
        assert_eq!(events((ten_one, "INFO", "a", 0)), 1);
        assert_eq!(events((ten, "ERROR", "a", 0)), 1);
        assert_eq!(events((ten, "INFO", "b", 0)), 1);
        assert_eq!(events((ten, "INFO", "a", 1)), 1);
        assert_eq!(events((ten, "INFO", ALL, 0)), 3);
        assert_eq!(events((ten, ALL, "a", 0)), 3, "a's INFO and ERROR");
        assert_eq!(events((ten, ALL, ALL, 0)), 4);
        let sketch = |key: Key<'_>| minutes[&key].durations.as_ref().map(|s| s.count());
        assert_eq!(
            sketch((ten, ALL, ALL, 0)),
            Some(1),
            "one duration among four"
        );
        assert_eq!(
            sketch((ten, "INFO", "a", 0)),
            None,
            "sketches only on totals"
        );
        let per_source: i64 = minutes
            .iter()
            .filter(|(k, _)| k.1 != ALL && k.2 != ALL)
            .map(|(_, t)| t.events)
            .sum();
        assert_eq!(per_source, rows.len() as i64);

        let hours = tally(&rows, TimeDelta::hours(1));
        assert_eq!(hours[&(ten, ALL, ALL, 0)].events, 5);
        assert_eq!(
            hours[&(ten, ALL, ALL, 0)]
                .durations
                .as_ref()
                .map(|s| s.count()),
            Some(2)
        );
    }
}
