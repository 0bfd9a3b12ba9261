//! Prints real-shaped log lines (`load-test/src/corpus.rs`) as NDJSON, one event a
//! line, in the contract's shape: what `side-by-side.sh` sends to both systems.
//!
//!   corpus-lines --lines 1000000 --seed 42 > corpus.ndjson

use chrono::{TimeDelta, Utc};
use clap::Parser;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::io::{BufWriter, Write};

#[path = "../corpus.rs"]
mod corpus;

#[derive(Parser, Debug)]
#[command(name = "corpus-lines")]
struct Args {
    /// Lines to print.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The timestamps run up to now over this many seconds.
    #[arg(long, default_value_t = 60)]
    span_seconds: i64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let corpus = corpus::Corpus::default();
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let start = Utc::now() - TimeDelta::seconds(args.span_seconds);
    let step_micros = args.span_seconds * 1_000_000 / args.lines.max(1) as i64;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for i in 0..args.lines {
        let at = start + TimeDelta::microseconds(step_micros * i as i64);
        let line = corpus.line(&mut rng, at);
        let mut event = serde_json::json!({
            "level": line.level,
            "message": line.message,
            "source": line.source,
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        });
        if let Some(trace) = line.trace_id {
            event["traceId"] = trace.into();
        }
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}
