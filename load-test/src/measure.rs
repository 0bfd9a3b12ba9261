//! What a run measures: request latencies and outcomes (shared by the workers), the
//! load window the rates divide by, and the peak RSS and CPU time of each service.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Slowest request latency recorded, in µs: the client's 30 s timeout, with room to spare.
const MAX_LATENCY_US: u64 = 120_000_000;
/// Longest visibility lag recorded, in ms.
const MAX_VISIBILITY_MS: u64 = 600_000;

/// Everything measured, shared by the workers.
pub struct Stats {
    pub latency_us: Mutex<BTreeMap<String, Histogram<u64>>>,
    /// Accepted events (ingest) or answered queries (query).
    pub ok_units: AtomicU64,
    /// Answered queries (query and mixed modes).
    pub ok_queries: AtomicU64,
    pub requests: AtomicU64,
    pub failed_units: AtomicU64,
    pub by_status: Mutex<BTreeMap<String, u64>>,
    pub visibility_ms: Mutex<Histogram<u64>>,
    pub invisible: AtomicU64,
}

impl Stats {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Stats {
            latency_us: Mutex::new(BTreeMap::new()),
            ok_units: AtomicU64::new(0),
            ok_queries: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failed_units: AtomicU64::new(0),
            by_status: Mutex::new(BTreeMap::new()),
            visibility_ms: Mutex::new(Histogram::new_with_bounds(1, MAX_VISIBILITY_MS, 3)?),
            invisible: AtomicU64::new(0),
        })
    }

    /// Counts one request of kind `what` that ended with `status`, `latency` after it was due.
    pub fn record(&self, what: &str, latency: Duration, status: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.latency_us.lock() {
            let h = map.entry(what.to_owned()).or_insert_with(|| {
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds")
            });
            let _ = h.record(latency.as_micros().clamp(1, MAX_LATENCY_US as u128) as u64);
        }
        if let Ok(mut map) = self.by_status.lock() {
            *map.entry(status.to_owned()).or_default() += 1;
        }
    }

    /// Adds what the e2e sampler found once the load is over.
    pub fn add_visibility(&self, outcome: crate::visibility::Outcome) {
        self.invisible
            .store(outcome.never_visible, Ordering::Relaxed);
        if let Ok(mut h) = self.visibility_ms.lock() {
            for ms in outcome.visible_after_ms {
                let _ = h.record(ms);
            }
        }
    }
}

/// Awaits `load`, takes the time since `started`, then awaits `drain`; returns that
/// time (the load window) and what `drain` returned. The rates divide by the load
/// window alone: the drain (in e2e the wait, up to `visibility::GIVE_UP_AFTER`, for
/// the last samples to be stored) sends nothing, and counting it would understate the
/// rate the stack sustained. A failed load skips the drain.
pub async fn load_window<D: Future>(
    started: Instant,
    load: impl Future<Output = anyhow::Result<()>>,
    drain: impl FnOnce() -> D,
) -> anyhow::Result<(Duration, D::Output)> {
    load.await?;
    let window = started.elapsed();
    Ok((window, drain().await))
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_us(h: &Histogram<u64>) -> Self {
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

    /// From a histogram recorded in ms (the visibility lag), by way of `from_us`.
    pub fn from_ms(h: &Histogram<u64>) -> Self {
        let mut us = Histogram::<u64>::new_with_bounds(1, MAX_VISIBILITY_MS * 1000, 3)
            .expect("valid bounds");
        for v in h.iter_recorded() {
            let _ = us.record_n(v.value_iterated_to() * 1000, v.count_at_value());
        }
        Latency::from_us(&us)
    }
}

/// Peak RSS and CPU time of the services setup.sh started, from /proc.
pub struct ServiceSampler {
    task: tokio::task::JoinHandle<BTreeMap<String, ServiceUsage>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceUsage {
    pub pid: u32,
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
    /// CPU seconds per wall second over the run (1.0 = one core busy).
    pub cpu_cores: f64,
}

impl ServiceSampler {
    /// Samples the services whose pid files are in `run_dir` until `stop` is set.
    pub fn start(run_dir: &Path, stop: Arc<AtomicBool>) -> Self {
        let pids: Vec<(String, u32)> = ["producer", "consumer", "gateway", "kafka", "postgres"]
            .iter()
            .filter_map(|name| {
                let text = std::fs::read_to_string(run_dir.join(format!("{name}.pid"))).ok()?;
                Some((name.to_string(), text.trim().parse().ok()?))
            })
            .collect();
        let ticks_per_second = clock_ticks_per_second();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let cpu_start: BTreeMap<_, _> = pids
                .iter()
                .map(|(n, p)| (n.clone(), cpu_seconds(*p, ticks_per_second)))
                .collect();
            let mut usage: BTreeMap<String, ServiceUsage> = pids
                .iter()
                .map(|(n, p)| {
                    let usage = ServiceUsage {
                        pid: *p,
                        ..Default::default()
                    };
                    (n.clone(), usage)
                })
                .collect();
            // RSS is sampled because only its peak matters; CPU time is a counter, so
            // its difference between start and end suffices.
            loop {
                for u in usage.values_mut() {
                    if let Some(rss) = rss_mib(u.pid) {
                        u.peak_rss_mib = u.peak_rss_mib.max(rss);
                    }
                }
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let wall = started.elapsed().as_secs_f64();
            for (name, u) in usage.iter_mut() {
                let at_start = cpu_start.get(name).copied().unwrap_or(0.0);
                u.cpu_seconds = (cpu_seconds(u.pid, ticks_per_second) - at_start).max(0.0);
                u.cpu_cores = u.cpu_seconds / wall;
            }
            usage
        });
        ServiceSampler { task }
    }

    pub async fn finish(self) -> BTreeMap<String, ServiceUsage> {
        self.task.await.unwrap_or_default()
    }
}

/// The unit of the CPU times in `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`). It is 100
/// on most Linux builds but not on all, and a wrong guess scales every CPU figure.
/// rustix reads it safely; `libc::sysconf` would need `unsafe`, which the workspace
/// forbids.
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    rss_mib_in(&status)
}

/// VmRSS of a `/proc/<pid>/status` text, in MiB.
fn rss_mib_in(status: &str) -> Option<f64> {
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// User plus system CPU seconds of `pid` so far; 0 if it is gone.
fn cpu_seconds(pid: u32, ticks_per_second: u64) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| cpu_seconds_in(&stat, ticks_per_second))
        .unwrap_or(0.0)
}

/// User plus system CPU seconds of a `/proc/<pid>/stat` text (fields 14 and 15, in
/// clock ticks); 0 if it cannot be read.
fn cpu_seconds_in(stat: &str, ticks_per_second: u64) -> f64 {
    // Fields after the command name (which may hold spaces) start after ") ".
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Counted from the state field, the third of the line: utime is the 14th.
    (field(11) + field(12)) / ticks_per_second as f64
}
