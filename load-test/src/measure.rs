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
        self.record_latency(what, latency);
        if let Ok(mut map) = self.by_status.lock() {
            *map.entry(status.to_owned()).or_default() += 1;
        }
    }

    /// Adds `latency` to the histogram named `what`, and to nothing else (a second
    /// view of a request already recorded).
    pub fn record_latency(&self, what: &str, latency: Duration) {
        if let Ok(mut map) = self.latency_us.lock() {
            let h = map.entry(what.to_owned()).or_insert_with(|| {
                Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds")
            });
            let _ = h.record(latency.as_micros().clamp(1, MAX_LATENCY_US as u128) as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn the_load_window_ends_with_the_load_not_after_the_drain() {
        let started = Instant::now();
        let load = async {
            tokio::time::sleep(ms(50)).await;
            Ok(())
        };
        let drain = || async {
            tokio::time::sleep(ms(600)).await;
            "drained"
        };
        let (window, drained) = load_window(started, load, drain).await.expect("loaded");
        assert_eq!(drained, "drained");
        assert!(
            started.elapsed() >= ms(650),
            "the drain ran, after the load"
        );
        assert!(window >= ms(50), "the load counts: {window:?}");
        assert!(window < ms(600), "the drain does not: {window:?}");
    }

    #[tokio::test]
    async fn a_failed_load_skips_the_drain() {
        let drained = AtomicBool::new(false);
        let load = async { Err(anyhow::anyhow!("worker failed")) };
        let drain = || async { drained.store(true, Ordering::SeqCst) };
        let result = load_window(Instant::now(), load, drain).await;
        assert!(result.is_err());
        assert!(!drained.load(Ordering::SeqCst));
    }

    /// A `/proc/<pid>/stat` line whose command name holds ") " and spaces, with
    /// utime 250 and stime 50 ticks.
    const STAT: &str = "4242 (tokio) runtime w) S 1 4242 4242 0 -1 4194560 9000 0 3 0 \
                        250 50 7 9 20 0 12 0 1000 123456789 4000 18446744073709551615";

    #[test]
    fn cpu_seconds_are_user_plus_system_ticks_over_the_clock_tick() {
        assert_eq!(cpu_seconds_in(STAT, 100), 3.0);
        // The same ticks at 250 a second are fewer seconds: the tick is not assumed.
        assert_eq!(cpu_seconds_in(STAT, 250), 1.2);
    }

    #[test]
    fn an_unreadable_stat_counts_no_cpu() {
        assert_eq!(cpu_seconds_in("", 100), 0.0);
        assert_eq!(cpu_seconds_in("4242 (cut short", 100), 0.0);
    }

    #[test]
    fn the_clock_tick_is_the_systems() {
        let getconf = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf (libc-bin) runs");
        let system: u64 = String::from_utf8_lossy(&getconf.stdout)
            .trim()
            .parse()
            .expect("a number of ticks");
        assert_eq!(clock_ticks_per_second(), system);
    }

    #[test]
    fn this_process_cpu_time_grows_while_it_computes() {
        // Reads the real /proc: a slip to another field reads a figure that does not
        // move (or an absurd one).
        let tick = clock_ticks_per_second();
        let before = cpu_seconds(std::process::id(), tick);
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut after = before;
        while after <= before && Instant::now() < give_up {
            let spin = Instant::now() + ms(20);
            while Instant::now() < spin {
                std::hint::spin_loop();
            }
            after = cpu_seconds(std::process::id(), tick);
        }
        assert!(after > before && after < 3600.0, "{before} then {after}");
    }

    #[test]
    fn rss_is_read_from_vm_rss_in_mib() {
        let status = "Name:\tconsumer\nVmPeak:\t 999999 kB\nVmRSS:\t  204800 kB\nThreads:\t9\n";
        assert_eq!(rss_mib_in(status), Some(200.0));
        assert_eq!(rss_mib_in("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn record_counts_requests_by_kind_and_status() {
        let stats = Stats::new().expect("stats");
        stats.record("ingest", ms(20), "200");
        stats.record("ingest", ms(40), "503");
        stats.record("search", ms(7), "200");
        assert_eq!(stats.requests.load(Ordering::Relaxed), 3);
        let by_status = stats.by_status.lock().expect("lock").clone();
        assert_eq!(
            by_status,
            BTreeMap::from([("200".into(), 2), ("503".into(), 1)])
        );
        let latency = stats.latency_us.lock().expect("lock");
        assert_eq!(latency["ingest"].len(), 2);
        assert_eq!(
            latency["ingest"].max(),
            latency["ingest"].highest_equivalent(40_000)
        );
        assert_eq!(latency["search"].len(), 1);
    }

    #[test]
    fn latencies_beyond_the_histogram_are_clamped_not_lost() {
        let stats = Stats::new().expect("stats");
        stats.record("ingest", Duration::ZERO, "200");
        stats.record("ingest", Duration::from_secs(500), "timeout");
        let latency = stats.latency_us.lock().expect("lock");
        assert_eq!(latency["ingest"].len(), 2);
        assert_eq!(latency["ingest"].min(), 1);
        assert!(latency["ingest"].max() >= MAX_LATENCY_US);
    }

    #[test]
    fn percentiles_are_reported_in_ms() {
        let mut h = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).expect("bounds");
        for ms in 1..=1000 {
            h.record(ms * 1000).expect("in bounds");
        }
        let l = Latency::from_us(&h);
        assert_eq!(l.count, 1000);
        for (actual, expected) in [(l.p50_ms, 500.0), (l.p99_ms, 990.0), (l.max_ms, 1000.0)] {
            assert!(
                (actual - expected).abs() <= expected / 1000.0,
                "{actual} vs {expected}"
            );
        }
    }

    #[test]
    fn visibility_lags_recorded_in_ms_are_reported_in_ms() {
        let stats = Stats::new().expect("stats");
        stats.add_visibility(crate::visibility::Outcome {
            visible_after_ms: vec![10, 20, 30, 1500],
            never_visible: 2,
        });
        assert_eq!(stats.invisible.load(Ordering::Relaxed), 2);
        let l = Latency::from_ms(&stats.visibility_ms.lock().expect("lock"));
        assert_eq!(l.count, 4);
        assert!((l.p50_ms - 20.0).abs() < 0.1, "p50 {}", l.p50_ms);
        assert!((l.max_ms - 1500.0).abs() < 2.0, "max {}", l.max_ms);
    }
}
