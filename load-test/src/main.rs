//! Load generator for the log pipeline, aimed only at 127.0.0.1, bounded in time.
//!
//! Modes:
//! - `ingest`: POST batches (`/batch`, JSON) or NDJSON (`/bulk`, optionally gzip) or
//!   single events (`/ingest`) to the producer; accepted events/s and latencies.
//! - `query`: GET pages, searches and stats from the gateway; queries/s and latencies
//!   per endpoint.
//! - `mixed`: half the workers ingest, half query, at the same time.
//! - `e2e`: ingest at a fixed rate and measure, for sampled events, the time from the
//!   request being due until the row is committed in PostgreSQL, where the gateway
//!   reads it (visibility lag; see `visibility`).
//!
//! With `--rate` the load is open-loop (requests are due on a fixed schedule and
//! latency counts from when a request was due, so a stalled server cannot hide its
//! queue); without it every worker sends as fast as answers come back.
//! While running, it prints one progress line a second; at the end, a summary whose
//! first lines give the throughput, plus JSON and Markdown reports in `--results-dir`.

mod visibility;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Ingest,
    Query,
    /// Half the workers ingest (at `--rate`), half query (at `--query-rate`).
    Mixed,
    E2e,
}

/// Which gateway query the query workers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum QueryKind {
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
enum Endpoint {
    Batch,
    Bulk,
    Ingest,
}

/// Load generator for the log pipeline (targets 127.0.0.1 only).
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "load-test")]
struct Args {
    #[arg(long, value_enum, default_value = "ingest")]
    mode: Mode,
    /// Ingest endpoint (ingest and e2e modes).
    #[arg(long, value_enum, default_value = "batch")]
    endpoint: Endpoint,
    /// Seconds of load (at most 600).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Target events/s (ingest, e2e, mixed) or queries/s (query); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Query and mixed modes: which query to send.
    #[arg(long, value_enum, default_value = "mix")]
    query_kind: QueryKind,
    /// Mixed mode: target queries/s of the query workers; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    query_rate: u64,
    /// Concurrent requests in flight (at most 2,048).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Events per request for batch and bulk.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Compress bulk bodies with gzip.
    #[arg(long)]
    gzip: bool,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    producer_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway_url: String,
    /// Where the pid files of ./setup.sh are (for peak RSS and CPU of each service).
    #[arg(long, default_value = ".run")]
    run_dir: PathBuf,
    #[arg(long, default_value = "load-test/results")]
    results_dir: PathBuf,
    /// e2e: one event in this many is followed until it is queryable.
    #[arg(long, default_value_t = 100)]
    sample_every: usize,
    /// e2e: where the samples are looked up (one query per 50 ms for all of them).
    #[arg(
        long,
        default_value = "postgres://loguser:logpass@127.0.0.1:5432/logprocessor"
    )]
    postgres_url: String,
    /// Ingest: make this many request bodies before starting and send them in turn
    /// (ids repeat; see `PrebuiltBodies`). 0 = a fresh body, with fresh ids, per request.
    #[arg(long, default_value_t = 0)]
    prebuilt_bodies: usize,
}

/// Everything measured, shared by the workers.
struct Stats {
    latency_us: Mutex<BTreeMap<String, Histogram<u64>>>,
    /// Accepted events (ingest) or answered queries (query).
    ok_units: AtomicU64,
    /// Answered queries (query and mixed modes).
    ok_queries: AtomicU64,
    requests: AtomicU64,
    failed_units: AtomicU64,
    by_status: Mutex<BTreeMap<String, u64>>,
    visibility_ms: Mutex<Histogram<u64>>,
    invisible: AtomicU64,
}

impl Stats {
    fn new() -> anyhow::Result<Self> {
        Ok(Stats {
            latency_us: Mutex::new(BTreeMap::new()),
            ok_units: AtomicU64::new(0),
            ok_queries: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failed_units: AtomicU64::new(0),
            by_status: Mutex::new(BTreeMap::new()),
            visibility_ms: Mutex::new(Histogram::new_with_bounds(1, 600_000, 3)?),
            invisible: AtomicU64::new(0),
        })
    }

    fn record(&self, what: &str, latency: Duration, status: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.latency_us.lock() {
            let h = map.entry(what.to_owned()).or_insert_with(|| {
                Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
            });
            let _ = h.record(latency.as_micros().clamp(1, 120_000_000) as u64);
        }
        if let Ok(mut map) = self.by_status.lock() {
            *map.entry(status.to_owned()).or_default() += 1;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.duration = args.duration.clamp(1, 600);
    args.concurrency = args.concurrency.clamp(1, 2048);
    args.batch_size = args.batch_size.clamp(1, 10_000);
    for url in [&args.producer_url, &args.gateway_url] {
        anyhow::ensure!(
            url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost"),
            "load is only ever aimed at this machine: {url}"
        );
    }
    anyhow::ensure!(
        args.postgres_url.contains("@127.0.0.1") || args.postgres_url.contains("@localhost"),
        "samples are only ever looked up on this machine"
    );
    anyhow::ensure!(
        args.prebuilt_bodies == 0 || args.mode == Mode::Ingest,
        "--prebuilt-bodies repeats ids, so it is only for --mode ingest"
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let stats = Arc::new(Stats::new()?);
    let stop = Arc::new(AtomicBool::new(false));
    let services = ServiceSampler::start(&args.run_dir, stop.clone());

    eprintln!(
        "load-test {run_id}: mode={:?} endpoint={:?} duration={}s rate={} concurrency={} batch={}",
        args.mode, args.endpoint, args.duration, args.rate, args.concurrency, args.batch_size
    );
    let prebuilt = Arc::new(PrebuiltBodies::build(&args, &run_id)?);
    let tracker = visibility::Tracker::new();
    let load_done = Arc::new(AtomicBool::new(false));
    let sampler = (args.mode == Mode::E2e)
        .then(|| tracker.spawn(args.postgres_url.clone(), load_done.clone()));
    let started = Instant::now();
    let progress = tokio::spawn(progress_line(stats.clone(), stop.clone(), started));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let (args, client, stats, run_id, prebuilt, tracker) = (
                args.clone(),
                client.clone(),
                stats.clone(),
                run_id.clone(),
                prebuilt.clone(),
                tracker.clone(),
            );
            tokio::spawn(async move {
                let prebuilt = prebuilt.as_ref().as_ref();
                let worker = Worker {
                    index: worker,
                    args: &args,
                    client: &client,
                    run_id: &run_id,
                    prebuilt,
                    tracker: &tracker,
                };
                worker.run(stats, started).await
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    // The rates count the load window only, not the wait for the last samples.
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = progress.await;
    if let Some(sampler) = sampler {
        eprintln!("load done; waiting for the outstanding samples to be stored");
        load_done.store(true, Ordering::SeqCst);
        let outcome = tokio::task::spawn_blocking(move || sampler.join())
            .await?
            .map_err(|_| anyhow::anyhow!("sampler thread panicked"))??;
        stats
            .invisible
            .store(outcome.never_visible, Ordering::Relaxed);
        if let Ok(mut h) = stats.visibility_ms.lock() {
            for ms in outcome.visible_after_ms {
                let _ = h.record(ms);
            }
        }
    }
    let services = services.finish().await;

    let report = Report::build(&args, &run_id, &stats, elapsed, services);
    report.print();
    report.write(&args.results_dir)?;
    Ok(())
}

/// One of the `--concurrency` workers and what it shares with the others.
struct Worker<'a> {
    index: usize,
    args: &'a Args,
    client: &'a reqwest::Client,
    run_id: &'a str,
    prebuilt: Option<&'a PrebuiltBodies>,
    tracker: &'a visibility::Tracker,
}

impl Worker<'_> {
    async fn run(&self, stats: Arc<Stats>, started: Instant) -> anyhow::Result<()> {
        let Worker {
            index: worker,
            args,
            client,
            run_id,
            prebuilt,
            tracker,
        } = *self;
        let deadline = started + Duration::from_secs(args.duration);
        // In mixed mode even workers ingest and odd ones query; the others do one thing.
        let (role, rate, workers_in_role) = match args.mode {
            Mode::Mixed if worker.is_multiple_of(2) => {
                (Mode::Ingest, args.rate, args.concurrency.div_ceil(2))
            }
            Mode::Mixed => (Mode::Query, args.query_rate, (args.concurrency / 2).max(1)),
            mode => (mode, args.rate, args.concurrency),
        };
        let units_per_request = match (role, args.endpoint) {
            (Mode::Query, _) | (_, Endpoint::Ingest) => 1,
            _ => args.batch_size,
        };
        // Open loop: request k of this worker is due at start + offset + k * period.
        let period = (rate > 0).then(|| {
            Duration::from_secs_f64(units_per_request as f64 * workers_in_role as f64 / rate as f64)
        });
        let mut sequence = 0u64;
        loop {
            let due = match period {
                Some(p) => {
                    started + p.mul_f64(sequence as f64 + worker as f64 / args.concurrency as f64)
                }
                None => Instant::now(),
            };
            if due >= deadline {
                break;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            sequence += 1;
            match role {
                Mode::Ingest | Mode::E2e | Mode::Mixed => {
                    let body = match prebuilt {
                        Some(bodies) => bodies.pick(worker, sequence),
                        None => ingest_body(
                            args,
                            &format!("load-{run_id}-{}", worker % 16),
                            units_per_request,
                        )?,
                    };
                    let sampled =
                        send_ingest(args, client, &stats, body, due, units_per_request).await;
                    let sample_now = (sequence as usize)
                        .is_multiple_of((args.sample_every / units_per_request).max(1));
                    if let (Mode::E2e, true, Some(id)) = (role, sample_now, sampled) {
                        // Looked up by the sampler thread, never by this worker: following
                        // a sample must not delay the ingest schedule.
                        if let Ok(id) = uuid::Uuid::parse_str(&id) {
                            tracker.track(id, due);
                        }
                    }
                }
                Mode::Query => send_query(args, client, &stats, sequence, due).await,
            }
        }
        Ok(())
    }
}

/// One generated event, serialized straight from borrowed parts: building a
/// `serde_json::Value` per event cost the generator more CPU than the producer spent
/// parsing, and on a shared 2-core machine a starved generator is slow to write its
/// requests (the server then rightly answers 408 or closes the connection).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadEvent<'a> {
    id: uuid::Uuid,
    level: &'static str,
    message: std::fmt::Arguments<'a>,
    source: &'a str,
    metadata: LoadMetadata,
    correlation_id: std::fmt::Arguments<'a>,
}

#[derive(Serialize)]
struct LoadMetadata {
    duration: usize,
    endpoint: &'static str,
}

/// Writes event `i` of a request as JSON; returns its id.
fn write_event(out: &mut Vec<u8>, source: &str, i: usize) -> serde_json::Result<uuid::Uuid> {
    const LEVELS: [&str; 5] = ["INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    let id = uuid::Uuid::now_v7();
    serde_json::to_writer(
        out,
        &LoadEvent {
            id,
            level: LEVELS[i % LEVELS.len()],
            message: format_args!("request {i} handled: database query took {} ms", i % 250),
            source,
            metadata: LoadMetadata {
                duration: i % 250,
                endpoint: "/api/orders",
            },
            correlation_id: format_args!("corr-{}", i % 1000),
        },
    )?;
    Ok(id)
}

/// The body of one ingest request, as sent (one JSON object for `/ingest`, which is
/// always one event, a JSON array or NDJSON lines, gzipped with `--gzip`), and the id of
/// its first event.
fn ingest_body(args: &Args, source: &str, events: usize) -> anyhow::Result<(bytes::Bytes, String)> {
    let endpoint = args.endpoint;
    let mut body = Vec::with_capacity(events * 200);
    let mut first_id = None;
    if endpoint == Endpoint::Batch {
        body.push(b'[');
    }
    for i in 0..events {
        if i > 0 {
            body.push(if endpoint == Endpoint::Bulk {
                b'\n'
            } else {
                b','
            });
        }
        let id = write_event(&mut body, source, i)?;
        first_id.get_or_insert(id);
    }
    match endpoint {
        Endpoint::Batch => body.push(b']'),
        Endpoint::Bulk => body.push(b'\n'),
        Endpoint::Ingest => {}
    }
    if endpoint == Endpoint::Bulk && args.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body)?;
        body = gz.finish()?;
    }
    let first_id = first_id.map(|id| id.to_string()).unwrap_or_default();
    Ok((body.into(), first_id))
}

/// With `--prebuilt-bodies N`: N request bodies made before the clock starts, sent in
/// turn. The generator then spends almost no CPU of its own, so an overload run
/// measures the server rather than a starved client. Their ids repeat from the
/// N+1st request on, so the pipeline stores each event once and counts the rest as
/// duplicates: use it for ingest capacity and overload, not for persistence figures.
struct PrebuiltBodies(Vec<(bytes::Bytes, String)>);

impl PrebuiltBodies {
    fn build(args: &Args, run_id: &str) -> anyhow::Result<Option<Self>> {
        let events = match args.endpoint {
            Endpoint::Ingest => 1,
            _ => args.batch_size,
        };
        (args.prebuilt_bodies > 0)
            .then(|| {
                (0..args.prebuilt_bodies)
                    .map(|k| ingest_body(args, &format!("load-{run_id}-{}", k % 16), events))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .map(PrebuiltBodies)
            })
            .transpose()
    }

    fn pick(&self, worker: usize, sequence: u64) -> (bytes::Bytes, String) {
        let (body, first_id) = &self.0[(worker + sequence as usize) % self.0.len()];
        (body.clone(), first_id.clone())
    }
}

/// Sends one request; returns the id of its first event if the request succeeded.
async fn send_ingest(
    args: &Args,
    client: &reqwest::Client,
    stats: &Stats,
    (body, first_id): (bytes::Bytes, String),
    due: Instant,
    events: usize,
) -> Option<String> {
    let base = format!("{}/producer/api/logs", args.producer_url);
    let (path, content_type) = match args.endpoint {
        Endpoint::Ingest => ("ingest", "application/json"),
        Endpoint::Batch => ("batch", "application/json"),
        Endpoint::Bulk => ("bulk", "application/x-ndjson"),
    };
    let mut request = client
        .post(format!("{base}/{path}"))
        .header("Content-Type", content_type);
    if args.gzip && args.endpoint == Endpoint::Bulk {
        request = request.header("Content-Encoding", "gzip");
    }
    let request = request.body(body);
    let result = request.send().await;
    let latency = due.elapsed();
    match result {
        Ok(response) => {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            stats.record("ingest", latency, status.as_str());
            let accepted = match args.endpoint {
                Endpoint::Ingest => u64::from(status.is_success()),
                _ => body["successCount"].as_u64().unwrap_or(0),
            };
            stats.ok_units.fetch_add(accepted, Ordering::Relaxed);
            stats
                .failed_units
                .fetch_add(events as u64 - accepted, Ordering::Relaxed);
            status.is_success().then_some(first_id)
        }
        Err(e) => {
            if std::env::var_os("LOAD_TEST_DEBUG").is_some() {
                eprintln!("ingest request failed: {e:?}");
            }
            stats.record(
                "ingest",
                latency,
                if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect-error"
                } else {
                    "transport-error"
                },
            );
            stats
                .failed_units
                .fetch_add(events as u64, Ordering::Relaxed);
            None
        }
    }
}

async fn send_query(
    args: &Args,
    client: &reqwest::Client,
    stats: &Stats,
    sequence: u64,
    due: Instant,
) {
    let base = format!("{}/gateway/api/query", args.gateway_url);
    let pick = match args.query_kind {
        QueryKind::Mix => sequence % 5,
        QueryKind::Page => 0,
        QueryKind::Filtered => 1,
        QueryKind::Search => 2,
        QueryKind::Stats => 3,
        QueryKind::Deep => 4,
    };
    let (what, url) = match pick {
        0 => ("logs_24h", format!("{base}/logs?size=50")),
        1 => ("logs_filtered", format!("{base}/logs?level=ERROR&size=50")),
        2 => (
            "search",
            format!("{base}/search?query=database%20query&size=50"),
        ),
        3 => ("stats", format!("{base}/stats?hoursBack=24")),
        _ => (
            "logs_page_5",
            format!("{base}/logs?size=50&page=5&level=WARN,ERROR"),
        ),
    };
    let result = client.get(url).send().await;
    let latency = due.elapsed();
    match result {
        Ok(response) => {
            let status = response.status();
            let _ = response.bytes().await;
            stats.record(what, latency, status.as_str());
            if status.is_success() {
                stats.ok_queries.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.failed_units.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(_) => {
            stats.record(what, latency, "error");
            stats.failed_units.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn progress_line(stats: Arc<Stats>, stop: Arc<AtomicBool>, started: Instant) {
    let (mut last_events, mut last_queries) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let events = stats.ok_units.load(Ordering::Relaxed);
        let queries = stats.ok_queries.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0}s] accepted events/s {:>8} | queries/s {:>6} | events {:>10} | failed {:>8} | requests {:>8}",
            started.elapsed().as_secs_f64(),
            events - last_events,
            queries - last_queries,
            events,
            stats.failed_units.load(Ordering::Relaxed),
            stats.requests.load(Ordering::Relaxed)
        );
        (last_events, last_queries) = (events, queries);
    }
}

/// Peak RSS and CPU time of the services setup.sh started, from /proc.
struct ServiceSampler {
    task: tokio::task::JoinHandle<BTreeMap<String, ServiceUsage>>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ServiceUsage {
    pid: u32,
    peak_rss_mib: f64,
    cpu_seconds: f64,
    /// CPU seconds per wall second over the run (1.0 = one core busy).
    cpu_cores: f64,
}

impl ServiceSampler {
    fn start(run_dir: &std::path::Path, stop: Arc<AtomicBool>) -> Self {
        let pids: Vec<(String, u32)> = ["producer", "consumer", "gateway", "kafka", "postgres"]
            .iter()
            .filter_map(|name| {
                let text = std::fs::read_to_string(run_dir.join(format!("{name}.pid"))).ok()?;
                Some((name.to_string(), text.trim().parse().ok()?))
            })
            .collect();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let cpu_start: BTreeMap<_, _> = pids
                .iter()
                .map(|(n, p)| (n.clone(), cpu_seconds(*p)))
                .collect();
            let mut usage: BTreeMap<String, ServiceUsage> = pids
                .iter()
                .map(|(n, p)| {
                    (
                        n.clone(),
                        ServiceUsage {
                            pid: *p,
                            ..Default::default()
                        },
                    )
                })
                .collect();
            loop {
                for (name, u) in usage.iter_mut() {
                    if let Some(rss) = rss_mib(u.pid) {
                        u.peak_rss_mib = u.peak_rss_mib.max(rss);
                    }
                    let _ = name;
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let wall = started.elapsed().as_secs_f64();
            for (name, u) in usage.iter_mut() {
                u.cpu_seconds =
                    (cpu_seconds(u.pid) - cpu_start.get(name).copied().unwrap_or(0.0)).max(0.0);
                u.cpu_cores = u.cpu_seconds / wall;
            }
            usage
        });
        ServiceSampler { task }
    }

    async fn finish(self) -> BTreeMap<String, ServiceUsage> {
        self.task.await.unwrap_or_default()
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}

#[derive(Debug, Serialize)]
struct Latency {
    count: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn from_us(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    run_id: String,
    started_at: String,
    args: Args,
    elapsed_seconds: f64,
    /// Accepted events/s (ingest, e2e, mixed) or answered queries/s (query).
    throughput_per_second: f64,
    /// Answered queries/s (query and mixed).
    queries_per_second: f64,
    ok: u64,
    failed: u64,
    requests: u64,
    by_status: BTreeMap<String, u64>,
    latency: BTreeMap<String, Latency>,
    visibility_lag_ms: Option<Latency>,
    samples_never_visible: u64,
    services: BTreeMap<String, ServiceUsage>,
}

impl Report {
    fn build(
        args: &Args,
        run_id: &str,
        stats: &Stats,
        elapsed: Duration,
        services: BTreeMap<String, ServiceUsage>,
    ) -> Self {
        let queries = stats.ok_queries.load(Ordering::Relaxed);
        let ok = if args.mode == Mode::Query {
            queries
        } else {
            stats.ok_units.load(Ordering::Relaxed)
        };
        let latency = stats
            .latency_us
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, h)| (k.clone(), Latency::from_us(h)))
                    .collect()
            })
            .unwrap_or_default();
        let visibility = stats
            .visibility_ms
            .lock()
            .ok()
            .filter(|h| !h.is_empty())
            .map(|h| {
                // Recorded in ms; reuse the µs formatter by scaling.
                let mut us = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
                for v in h.iter_recorded() {
                    let _ = us.record_n(v.value_iterated_to() * 1000, v.count_at_value());
                }
                Latency::from_us(&us)
            });
        Report {
            run_id: run_id.to_owned(),
            started_at: chrono::Utc::now().to_rfc3339(),
            args: args.clone(),
            elapsed_seconds: elapsed.as_secs_f64(),
            throughput_per_second: ok as f64 / elapsed.as_secs_f64(),
            queries_per_second: queries as f64 / elapsed.as_secs_f64(),
            ok,
            failed: stats.failed_units.load(Ordering::Relaxed),
            requests: stats.requests.load(Ordering::Relaxed),
            by_status: stats
                .by_status
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default(),
            latency,
            visibility_lag_ms: visibility,
            samples_never_visible: stats.invisible.load(Ordering::Relaxed),
            services,
        }
    }

    fn unit(&self) -> &'static str {
        if self.args.mode == Mode::Query {
            "queries"
        } else {
            "accepted events"
        }
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        out += &format!(
            "## load-test {} ({:?}, {:?})\n\n{}/s: **{:.0}** ({} ok, {} failed, {} requests in {:.1} s)\n\n",
            self.run_id, self.args.mode, self.args.endpoint, self.unit(), self.throughput_per_second, self.ok,
            self.failed, self.requests, self.elapsed_seconds
        );
        if self.args.mode == Mode::Mixed {
            out += &format!("queries/s: **{:.0}**\n\n", self.queries_per_second);
        }
        out += "| request | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|\n";
        for (name, l) in &self.latency {
            out += &format!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        if let Some(l) = &self.visibility_lag_ms {
            out += &format!(
                "| visibility lag | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
                l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        out += &format!(
            "\nstatuses: {:?}\n\n| service | peak RSS MiB | CPU s | cores |\n|---|---|---|---|\n",
            self.by_status
        );
        for (name, u) in &self.services {
            out += &format!(
                "| {name} | {:.1} | {:.1} | {:.2} |\n",
                u.peak_rss_mib, u.cpu_seconds, u.cpu_cores
            );
        }
        out
    }

    fn print(&self) {
        println!("{}/s: {:.0}", self.unit(), self.throughput_per_second);
        if self.args.mode == Mode::Mixed {
            println!("queries/s: {:.0}", self.queries_per_second);
        }
        println!("{}", self.markdown());
    }

    fn write(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stem = format!(
            "{}-{:?}-{:?}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            self.args.mode,
            self.args.endpoint,
            self.run_id
        )
        .to_lowercase();
        std::fs::write(
            dir.join(format!("{stem}.json")),
            serde_json::to_vec_pretty(self)?,
        )?;
        std::fs::write(dir.join(format!("{stem}.md")), self.markdown())?;
        eprintln!("reports: {}/{stem}.{{json,md}}", dir.display());
        Ok(())
    }
}
