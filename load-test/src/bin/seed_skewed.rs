//! Loads a data set shaped like real logs into PostgreSQL through the consumer's own
//! write path (`log_store::Store::write_batch`: day partitions, the id memory and the
//! rollups all kept exact), for the query benchmarks:
//!
//! - levels skewed: INFO ~45%, DEBUG ~25%, WARN ~14%, ERROR ~8%, TRACE ~7%, FATAL ~1%;
//!   in incident hours (two a day) ERROR rises to 40%;
//! - sources Zipf-distributed (s = 1.1) over 200 services;
//! - about 60% of events share a correlation id with 1–7 neighbours;
//! - messages from a vocabulary of common words and rare ones (`rare-*`, each in about
//!   one event in 200,000);
//! - timestamps spread over the last `--days` days, written oldest first, as ingest does;
//! - `metadata.duration` log-normal (median ~40 ms), on 90% of events.
//!
//! Deterministic for a given `--seed`. Progress every 500,000 rows.
//!   cargo run --release -p load-test --bin seed-skewed -- --rows 20000000

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use log_common::settings::PostgresSettings;
use log_store::error::StoreError;
use log_store::{JsonText, NewLogEvent, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

#[path = "../corpus.rs"]
mod corpus;

/// What the messages, sources and levels look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lines {
    /// 200 Zipf-skewed sources, levels with incident hours, messages of common words
    /// (the query benchmarks' shape).
    Words,
    /// Sixteen real systems' line formats (`load-test/src/corpus.rs`): what the
    /// storage benchmarks use.
    Realistic,
}

#[derive(Parser, Debug)]
#[command(name = "seed-skewed")]
struct Args {
    /// Events to load.
    #[arg(long, default_value_t = 20_000_000)]
    rows: u64,
    /// Days back from now the timestamps cover.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Minutes back from now instead of days: the span a burst of live ingest has
    /// (its timestamps are receive times), which decides how many rollup rows a batch
    /// touches.
    #[arg(long)]
    span_minutes: Option<i64>,
    /// Parallel writers (each a connection and a batch transaction at a time).
    #[arg(long, default_value_t = 2)]
    writers: u64,
    /// Rows a batch transaction.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// How the events are stored: one row each, or event blocks.
    #[arg(long, value_enum, default_value_t = log_store::Layout::Rows)]
    storage_layout: log_store::Layout,
    #[arg(long, value_enum, default_value_t = Lines::Words)]
    lines: Lines,
    /// With blocks: after the load, compact until no stream has small blocks left, and
    /// report the time it took apart from the load's.
    #[arg(long)]
    compact: bool,
    #[command(flatten)]
    postgres: PostgresSettings,
}

const SOURCES: usize = 200;
const COMMON: [&str; 24] = [
    "request",
    "handled",
    "user",
    "database",
    "query",
    "cache",
    "miss",
    "hit",
    "timeout",
    "connection",
    "retry",
    "payment",
    "order",
    "session",
    "token",
    "latency",
    "upstream",
    "response",
    "failed",
    "completed",
    "queue",
    "worker",
    "scheduled",
    "refused",
];

/// The shape of the data, shared by the writers.
struct Shape {
    /// Cumulative Zipf weights of the sources.
    source_cdf: Vec<f64>,
    start: DateTime<Utc>,
    span_ms: i64,
    total: u64,
    realistic: Option<corpus::Corpus>,
}

impl Shape {
    fn new(args: &Args, now: DateTime<Utc>) -> Shape {
        let weights: Vec<f64> = (1..=SOURCES).map(|k| 1.0 / (k as f64).powf(1.1)).collect();
        let sum: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let source_cdf = weights
            .iter()
            .map(|w| {
                acc += w / sum;
                acc
            })
            .collect();
        let span = args
            .span_minutes
            .map_or(TimeDelta::days(args.days), TimeDelta::minutes);
        Shape {
            source_cdf,
            start: now - span,
            span_ms: span.num_milliseconds(),
            total: args.rows,
            realistic: (args.lines == Lines::Realistic).then(corpus::Corpus::default),
        }
    }

    fn source(&self, rng: &mut SmallRng) -> String {
        let u: f64 = rng.random();
        let k = self.source_cdf.partition_point(|c| *c < u).min(SOURCES - 1);
        format!("service-{k:03}")
    }

    /// Two incident hours a day, at hours that move from day to day.
    fn incident(at: DateTime<Utc>) -> bool {
        let hours = at.timestamp() / 3600;
        let day = hours / 24;
        let hour = hours % 24;
        hour == (day * 7 + 3) % 24 || hour == (day * 11 + 15) % 24
    }

    fn level(at: DateTime<Utc>, rng: &mut SmallRng) -> &'static str {
        let u: f64 = rng.random();
        let table: &[(f64, &str)] = if Shape::incident(at) {
            &[
                (0.40, "ERROR"),
                (0.70, "INFO"),
                (0.85, "WARN"),
                (0.95, "DEBUG"),
                (0.98, "TRACE"),
                (1.0, "FATAL"),
            ]
        } else {
            &[
                (0.45, "INFO"),
                (0.70, "DEBUG"),
                (0.84, "WARN"),
                (0.92, "ERROR"),
                (0.99, "TRACE"),
                (1.0, "FATAL"),
            ]
        };
        table
            .iter()
            .find(|(p, _)| u < *p)
            .map_or("INFO", |(_, l)| l)
    }

    fn message(rng: &mut SmallRng, i: u64) -> String {
        let words: Vec<&str> = (0..rng.random_range(4..10))
            .map(|_| COMMON[rng.random_range(0..COMMON.len())])
            .collect();
        let mut message = format!("{} #{i}", words.join(" "));
        if rng.random_range(0..200_000) == 0 {
            message.push_str(&format!(" rare-{}", rng.random_range(0..50)));
        }
        message
    }

    fn row(
        &self,
        i: u64,
        partition: i32,
        rng: &mut SmallRng,
        correlation: &mut (u64, u32),
    ) -> NewLogEvent {
        let at = self.start
            + TimeDelta::milliseconds(
                (i as i128 * self.span_ms as i128 / self.total as i128) as i64,
            );
        let level = Shape::level(at, rng);
        // A group of 2..=8 neighbours shares an id; 40% of events have none.
        if correlation.1 == 0 {
            *correlation = (i, rng.random_range(2..=8));
        }
        correlation.1 -= 1;
        let correlation_id = (correlation.0 % 5 < 3).then(|| format!("corr-{}", correlation.0));
        let metadata = (rng.random_range(0..10) != 0).then(|| {
            // Log-normal: exp(N(ln 40, 1.2)), by Box-Muller.
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let duration = (40f64.ln() + 1.2 * normal).exp();
            let mut map = serde_json::Map::new();
            map.insert(
                "duration".into(),
                serde_json::json!((duration * 1000.0).round() / 1000.0),
            );
            JsonText::from_object(map)
        });
        // As the producer mints one (v7, `log_common::ids::mint_event_id`) at the
        // event's own time: 48 bits of milliseconds, 74 random.
        let minted = uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.timestamp() as u64,
            at.timestamp_subsec_nanos(),
        );
        let (level, message, source, trace_id) = match &self.realistic {
            Some(corpus) => {
                let line = corpus.line(rng, at);
                (
                    line.level,
                    line.message,
                    line.source.to_owned(),
                    line.trace_id,
                )
            }
            None => (level, Shape::message(rng, i), self.source(rng), None),
        };
        NewLogEvent {
            id: Uuid::new_v7(minted),
            level: level.to_owned(),
            message,
            source,
            timestamp: at,
            metadata,
            correlation_id,
            request_id: None,
            trace_id,
            lane: 0,
            kafka_partition: partition,
            kafka_offset: i as i64,
        }
    }
}

/// One batch, retried (as the consumer does) while the failure is transient: a
/// deadlock, a dropped connection.
fn write_with_retries(store: &Store, rows: &[NewLogEvent]) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match store.write_batch(rows, &BTreeMap::new()) {
            Ok(_) => return Ok(()),
            Err(StoreError::Transient(e)) if attempt < 5 => {
                attempt += 1;
                eprintln!("batch failed ({e}); retry {attempt} of 5");
                std::thread::sleep(std::time::Duration::from_millis(200 << attempt));
            }
            Err(e) => return Err(e).context("batch write"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // RUST_LOG=log_store=debug shows where each batch's time goes.
    log_common::telemetry::init("seed-skewed");
    let shape = Arc::new(Shape::new(&args, Utc::now()));
    let store =
        Store::new(&args.postgres, "seed-skewed", "seed-skewed")?.with_layout(args.storage_layout);
    store.run_migrations()?;
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    println!(
        "seeding {} rows over {} with {} writers (batches of {}, layout {:?})",
        args.rows,
        args.span_minutes
            .map_or(format!("{} days", args.days), |m| format!("{m} minutes")),
        args.writers,
        args.batch,
        args.storage_layout
    );
    // Writer w takes rows w, w + writers, …: all writers move through time together.
    let handles: Vec<_> = (0..args.writers)
        .map(|w| {
            let (shape, store, written) = (shape.clone(), store.clone(), written.clone());
            let (writers, batch, rows, seed) = (args.writers, args.batch, args.rows, args.seed);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut rng =
                    SmallRng::seed_from_u64(seed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut correlation = (0, 0);
                let mut rows_of_batch = Vec::with_capacity(batch);
                let mut i = w;
                while i < rows {
                    rows_of_batch.push(shape.row(i, w as i32, &mut rng, &mut correlation));
                    i += writers;
                    if rows_of_batch.len() == batch || i >= rows {
                        write_with_retries(&store, &rows_of_batch)?;
                        let before =
                            written.fetch_add(rows_of_batch.len() as u64, Ordering::Relaxed);
                        let after = before + rows_of_batch.len() as u64;
                        if after / 500_000 != before / 500_000 {
                            let secs = started.elapsed().as_secs_f64();
                            println!(
                                "seeded {after} / {rows} rows ({secs:.0} s, {:.0} rows/s)",
                                after as f64 / secs
                            );
                        }
                        rows_of_batch.clear();
                    }
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "done: {} rows in {secs:.0} s ({:.0} rows/s); ANALYZE next",
        written.load(Ordering::Relaxed),
        written.load(Ordering::Relaxed) as f64 / secs
    );
    if args.compact {
        compact_all(&store)?;
    }
    let mut conn = store.pool().get()?;
    diesel::RunQueryDsl::execute(diesel::sql_query("ANALYZE"), &mut conn)?;
    Ok(())
}

/// Compaction rounds until one finds nothing to merge, as the consumer's background
/// loop would run them over time.
fn compact_all(store: &Store) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut merged, mut written) = (0, 0);
    loop {
        let report = store
            .compact_once(std::time::Duration::ZERO)
            .context("compaction round")?;
        if report.merged == 0 {
            break;
        }
        merged += report.merged;
        written += report.written;
    }
    println!(
        "compacted: {merged} blocks into {written} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
