//! The command line: what to run, how hard, for how long and against what.
//!
//! The flags are the interface of `run.sh`, `persistence.sh`, the README and
//! BENCHMARKS.md; renaming one breaks those silently, so the tests below parse the
//! command lines they use.

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Ingest,
    Query,
    /// Half the workers ingest (at `--rate`), half query (at `--query-rate`).
    Mixed,
    E2e,
}

/// Which gateway query the query workers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryKind {
    /// All of the below in turn.
    Mix,
    /// `/logs` over the last 24 h.
    Page,
    /// `/logs?level=ERROR`.
    Filtered,
    /// `/search?query=database query`.
    Search,
    /// `/stats?hoursBack=24`.
    Stats,
    /// `/logs` page 5 of WARN and ERROR.
    Deep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Batch,
    Bulk,
    Ingest,
}

/// Load generator for the log pipeline (targets 127.0.0.1 only).
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "load-test")]
pub struct Args {
    #[arg(long, value_enum, default_value = "ingest")]
    pub mode: Mode,
    /// Ingest endpoint (ingest and e2e modes).
    #[arg(long, value_enum, default_value = "batch")]
    pub endpoint: Endpoint,
    /// Seconds of load (at most 600).
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Target events/s (ingest, e2e, mixed) or queries/s (query); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Query and mixed modes: which query to send.
    #[arg(long, value_enum, default_value = "mix")]
    pub query_kind: QueryKind,
    /// Mixed mode: target queries/s of the query workers; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub query_rate: u64,
    /// Concurrent requests in flight (at most 2,048).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Events per request for batch and bulk.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Compress bulk bodies with gzip.
    #[arg(long)]
    pub gzip: bool,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub producer_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway_url: String,
    /// Where the pid files of ./setup.sh are (for peak RSS and CPU of each service).
    #[arg(long, default_value = ".run")]
    pub run_dir: PathBuf,
    #[arg(long, default_value = "load-test/results")]
    pub results_dir: PathBuf,
    /// e2e: one event in this many is followed until it is queryable.
    #[arg(long, default_value_t = 100)]
    pub sample_every: usize,
    /// e2e: where the samples are looked up (one query per 50 ms for all of them).
    #[arg(
        long,
        default_value = "postgres://loguser:logpass@127.0.0.1:5432/logprocessor"
    )]
    pub postgres_url: String,
    /// Ingest: make this many request bodies before starting and send them in turn
    /// (ids repeat; see `PrebuiltBodies`). 0 = a fresh body, with fresh ids, per request.
    #[arg(long, default_value_t = 0)]
    pub prebuilt_bodies: usize,
}

impl Args {
    /// Parses the command line and applies `checked`.
    pub fn from_command_line() -> anyhow::Result<Self> {
        Args::parse().checked()
    }

    /// Clamps the sizes to what one machine can sensibly generate and refuses any target
    /// off this machine: the tool must never load someone else's server.
    pub fn checked(mut self) -> anyhow::Result<Self> {
        self.duration = self.duration.clamp(1, 600);
        self.concurrency = self.concurrency.clamp(1, 2048);
        self.batch_size = self.batch_size.clamp(1, 10_000);
        for url in [&self.producer_url, &self.gateway_url] {
            anyhow::ensure!(
                url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost"),
                "load is only ever aimed at this machine: {url}"
            );
        }
        anyhow::ensure!(
            self.postgres_url.contains("@127.0.0.1") || self.postgres_url.contains("@localhost"),
            "samples are only ever looked up on this machine"
        );
        anyhow::ensure!(
            self.prebuilt_bodies == 0 || self.mode == Mode::Ingest,
            "--prebuilt-bodies repeats ids, so it is only for --mode ingest"
        );
        Ok(self)
    }

    /// Events in one ingest request: `/ingest` takes exactly one.
    pub fn events_per_request(&self) -> usize {
        match self.endpoint {
            Endpoint::Ingest => 1,
            Endpoint::Batch | Endpoint::Bulk => self.batch_size,
        }
    }
}
