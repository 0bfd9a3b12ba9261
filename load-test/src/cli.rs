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
    /// `/logs?source=service-000` (the busiest source of seed-skewed's data).
    Source,
    /// `/logs?source=service-199` (its rarest).
    #[value(name = "rare-source")]
    RareSource,
    /// `/logs?level=ERROR&source=service-000`.
    #[value(name = "level-source")]
    LevelSource,
    /// `/logs?correlationId=…`, an id found on the newest page before the load.
    Correlation,
    /// `/logs?cursor=…`: the page after the newest one, by keyset.
    Keyset,
    /// `/search?query=database query`.
    Search,
    /// `/search?query=rare-7` (about one event in 10 million).
    #[value(name = "search-rare")]
    SearchRare,
    /// `/search?query=database` (in about one event in five).
    #[value(name = "search-common")]
    SearchCommon,
    /// `/search?query=rare-7&level=ERROR,FATAL`.
    #[value(name = "search-rare-filtered")]
    SearchRareFiltered,
    /// `/search?query=database&level=ERROR&source=service-000`.
    #[value(name = "search-common-filtered")]
    SearchCommonFiltered,
    /// `/stats?hoursBack=24`.
    Stats,
    /// `/logs` page 5 of WARN and ERROR.
    Deep,
    /// `/stats?hoursBack=168`.
    #[value(name = "stats168")]
    Stats168,
    /// `/histogram` over the last 24 h, automatic buckets.
    Histogram,
    /// `/histogram?source=service-000&level=ERROR,FATAL`.
    #[value(name = "histogram-source")]
    HistogramSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Batch,
    Bulk,
    Ingest,
    /// OTLP/HTTP logs, protobuf (`/producer/v1/logs`), as OpenTelemetry exporters send.
    Otlp,
    /// The Elasticsearch bulk API (`/producer/es/_bulk`), NDJSON `create` pairs.
    #[value(name = "es-bulk")]
    #[serde(rename = "es-bulk")]
    EsBulk,
    /// Loki push, snappy protobuf (`/producer/loki/api/v1/push`), as Promtail sends.
    Loki,
}

impl Endpoint {
    /// The agent protocols, whose ids the producer derives from content: a load run
    /// cannot know an event's id in advance, so they serve ingest runs only.
    pub fn is_agent_protocol(self) -> bool {
        matches!(self, Endpoint::Otlp | Endpoint::EsBulk | Endpoint::Loki)
    }
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
            !self.endpoint.is_agent_protocol() || self.mode == Mode::Ingest,
            "--endpoint {:?} is for --mode ingest: its ids are derived by the producer",
            self.endpoint
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
            _ => self.batch_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        let words = std::iter::once("load-test").chain(line.split_whitespace());
        Args::try_parse_from(words).map_err(|e| e.to_string())
    }

    fn checked(line: &str) -> anyhow::Result<Args> {
        parse(line).map_err(anyhow::Error::msg)?.checked()
    }

    #[test]
    fn the_documented_command_lines_still_parse() {
        // From BENCHMARKS.md, run.sh and persistence.sh.
        for line in [
            "--mode ingest --endpoint batch --batch-size 500 --duration 20 --concurrency 8",
            "--mode ingest --endpoint bulk --batch-size 1000 --duration 15 --concurrency 8",
            "--mode ingest --endpoint otlp --batch-size 1000 --duration 15 --concurrency 8",
            "--mode ingest --endpoint es-bulk --batch-size 1000 --duration 15 --concurrency 8",
            "--mode ingest --endpoint loki --batch-size 1000 --duration 15 --concurrency 8",
            "--mode e2e --endpoint batch --batch-size 100 --rate 20000 --duration 60 \
             --concurrency 64 --sample-every 500",
            "--mode query --query-kind page --duration 8 --concurrency 2",
            "--mode query --query-kind filtered",
            "--mode query --query-kind search",
            "--mode query --query-kind deep",
            "--mode query --query-kind stats",
            "--mode query --query-kind mix",
            "--mode mixed --rate 20000 --query-rate 200 --duration 10 --concurrency 8",
            "--mode ingest --endpoint batch --batch-size 5000 --concurrency 256 --duration 20 \
             --prebuilt-bodies 64",
            "--mode ingest --endpoint ingest --gzip --producer-url http://127.0.0.1:8081 \
             --gateway-url http://localhost:8080 --run-dir .run --results-dir /tmp/r \
             --postgres-url postgres://loguser:logpass@127.0.0.1:5432/logprocessor",
        ] {
            checked(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn the_e2e_benchmark_line_sets_what_it_says() {
        let a = checked(
            "--mode e2e --endpoint bulk --batch-size 100 --rate 20000 --duration 60 \
             --concurrency 64 --sample-every 500",
        )
        .expect("valid");
        assert_eq!((a.mode, a.endpoint), (Mode::E2e, Endpoint::Bulk));
        assert_eq!((a.batch_size, a.rate, a.duration), (100, 20_000, 60));
        assert_eq!((a.concurrency, a.sample_every), (64, 500));
    }

    #[test]
    fn the_defaults_are_unchanged() {
        let a = checked("").expect("valid");
        assert_eq!(
            (a.mode, a.endpoint, a.query_kind),
            (Mode::Ingest, Endpoint::Batch, QueryKind::Mix)
        );
        assert_eq!((a.duration, a.rate, a.query_rate), (20, 0, 0));
        assert_eq!((a.concurrency, a.batch_size, a.sample_every), (8, 500, 100));
        assert_eq!((a.gzip, a.prebuilt_bodies), (false, 0));
        assert_eq!(a.producer_url, "http://127.0.0.1:8081");
        assert_eq!(a.gateway_url, "http://127.0.0.1:8080");
        assert_eq!(a.run_dir, PathBuf::from(".run"));
        assert_eq!(a.results_dir, PathBuf::from("load-test/results"));
    }

    #[test]
    fn unknown_flags_and_values_are_refused() {
        assert!(parse("--mode burst").is_err());
        assert!(parse("--endpoint stream").is_err());
        assert!(parse("--query-kind all").is_err());
        assert!(parse("--threads 4").is_err());
    }

    #[test]
    fn sizes_are_clamped() {
        let a = checked("--duration 0 --concurrency 0 --batch-size 0").expect("valid");
        assert_eq!((a.duration, a.concurrency, a.batch_size), (1, 1, 1));
        let a = checked("--duration 601 --concurrency 5000 --batch-size 20000").expect("valid");
        assert_eq!(
            (a.duration, a.concurrency, a.batch_size),
            (600, 2048, 10_000)
        );
    }

    #[test]
    fn load_is_only_aimed_at_this_machine() {
        assert!(checked("--producer-url http://10.0.0.7:8081").is_err());
        assert!(checked("--gateway-url https://gateway.example.com").is_err());
        assert!(checked("--postgres-url postgres://u:p@db.example.com/x").is_err());
        assert!(checked("--producer-url http://localhost:9000").is_ok());
        assert!(checked("--postgres-url postgres://u:p@localhost/x").is_ok());
    }

    #[test]
    fn prebuilt_bodies_are_only_for_ingest_mode() {
        for mode in ["e2e", "query", "mixed"] {
            let line = format!("--mode {mode} --prebuilt-bodies 4");
            assert!(checked(&line).is_err(), "{mode}");
        }
        assert!(checked("--mode ingest --prebuilt-bodies 4").is_ok());
    }

    #[test]
    fn single_event_requests_carry_one_event() {
        let events = |line| checked(line).expect("valid").events_per_request();
        assert_eq!(events("--endpoint ingest --batch-size 300"), 1);
        assert_eq!(events("--endpoint batch --batch-size 300"), 300);
        assert_eq!(events("--endpoint bulk --batch-size 300"), 300);
    }
}
