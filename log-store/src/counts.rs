//! Events per minute, level, source and partition (`log_counts_minute`): added to in
//! the batch transaction, from the rows the insert reports as new, so the counts move
//! exactly when the rows do. A replay inserts nothing and adds nothing; a batch that
//! rolls back takes its counts with it.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use diesel::prelude::*;
use std::collections::BTreeMap;

/// What the minute counts need of a row the insert stored.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = crate::schema::log_events)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Counted {
    pub timestamp: DateTime<Utc>,
    pub level: String,
    pub source: String,
    pub kafka_partition: i32,
}

type Key<'a> = (DateTime<Utc>, &'a str, &'a str, i32);

/// The rows grouped by their minute, level, source and partition.
pub fn per_minute(rows: &[Counted]) -> BTreeMap<Key<'_>, i64> {
    let mut counts = BTreeMap::new();
    for row in rows {
        // Truncating to whole minutes cannot fail for a timestamp PostgreSQL stored.
        let minute = row
            .timestamp
            .duration_trunc(TimeDelta::minutes(1))
            .unwrap_or(row.timestamp);
        let key = (
            minute,
            row.level.as_str(),
            row.source.as_str(),
            row.kafka_partition,
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Adds `rows` to the minute counts: one statement, whatever the batch.
pub fn add(conn: &mut PgConnection, rows: &[Counted]) -> QueryResult<()> {
    use diesel::sql_types::{Array, Int4, Int8, Text, Timestamptz};
    if rows.is_empty() {
        return Ok(());
    }
    let counts = per_minute(rows);
    diesel::sql_query(
        "INSERT INTO log_counts_minute (minute, level, source, kafka_partition, events) \
         SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::int4[], $5::int8[]) \
         ON CONFLICT (minute, level, source, kafka_partition) \
         DO UPDATE SET events = log_counts_minute.events + EXCLUDED.events",
    )
    .bind::<Array<Timestamptz>, _>(counts.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(counts.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(counts.keys().map(|k| k.2).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(counts.keys().map(|k| k.3).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(counts.values().copied().collect::<Vec<_>>())
    .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: &str, level: &str, source: &str, partition: i32) -> Counted {
        Counted {
            timestamp: at.parse().expect("timestamp"),
            level: level.into(),
            source: source.into(),
            kafka_partition: partition,
        }
    }

    #[test]
    fn rows_are_counted_by_their_minute_level_source_and_partition() {
        let rows = [
            row("2026-11-29T10:00:00Z", "INFO", "a", 0),
            row("2026-11-29T10:00:59.999Z", "INFO", "a", 0),
            row("2026-11-29T10:01:00Z", "INFO", "a", 0),
            row("2026-11-29T10:00:30Z", "ERROR", "a", 0),
            row("2026-11-29T10:00:30Z", "INFO", "b", 0),
            row("2026-11-29T10:00:30Z", "INFO", "a", 1),
        ];
        let counts = per_minute(&rows);
        let ten: DateTime<Utc> = "2026-11-29T10:00:00Z".parse().expect("minute");
        let ten_one: DateTime<Utc> = "2026-11-29T10:01:00Z".parse().expect("minute");
        assert_eq!(counts[&(ten, "INFO", "a", 0)], 2);
        assert_eq!(counts[&(ten_one, "INFO", "a", 0)], 1);
        assert_eq!(counts[&(ten, "ERROR", "a", 0)], 1);
        assert_eq!(counts[&(ten, "INFO", "b", 0)], 1);
        assert_eq!(counts[&(ten, "INFO", "a", 1)], 1);
        assert_eq!(counts.values().sum::<i64>(), rows.len() as i64);
    }
}
