//! What a run reports: a progress line a second while it runs, then a summary on
//! stdout (whose first line is the headline rate, read by `persistence.sh`) and the
//! same as JSON and Markdown files in `--results-dir`.

use crate::cli::{Args, Mode};
use crate::measure::{Latency, ServiceUsage, Stats};
use anyhow::Context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prints accepted events/s and queries/s each second until `stop` is set.
pub async fn progress_line(stats: Arc<Stats>, stop: Arc<AtomicBool>, started: Instant) {
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

#[derive(Debug, Serialize)]
pub struct Report {
    run_id: String,
    started_at: String,
    args: Args,
    /// The load window: from the start until the last worker is done (not the wait
    /// for e2e samples after it).
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
    pub fn build(
        args: &Args,
        run_id: &str,
        stats: &Stats,
        elapsed: Duration,
        services: BTreeMap<String, ServiceUsage>,
    ) -> Self {
        let queries = stats.ok_queries.load(Ordering::Relaxed);
        let ok = headline_count(args.mode, stats.ok_units.load(Ordering::Relaxed), queries);
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
            .map(|h| Latency::from_ms(&h));
        Report {
            run_id: run_id.to_owned(),
            started_at: chrono::Utc::now().to_rfc3339(),
            args: args.clone(),
            elapsed_seconds: elapsed.as_secs_f64(),
            throughput_per_second: per_second(ok, elapsed),
            queries_per_second: per_second(queries, elapsed),
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

    /// What the headline rate counts.
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

    /// The first lines of the summary: the rates, which scripts read.
    fn headline(&self) -> String {
        let mut out = format!("{}/s: {:.0}\n", self.unit(), self.throughput_per_second);
        if self.args.mode == Mode::Mixed {
            out += &format!("queries/s: {:.0}\n", self.queries_per_second);
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.headline());
        println!("{}", self.markdown());
    }

    pub fn write(&self, dir: &std::path::Path) -> anyhow::Result<()> {
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

/// What the headline counts: answered queries in query mode, accepted events in the
/// others (mixed mode gives its queries a line of their own).
fn headline_count(mode: Mode, accepted_events: u64, answered_queries: u64) -> u64 {
    if mode == Mode::Query {
        answered_queries
    } else {
        accepted_events
    }
}

/// `count` per second of the load window (see `measure::load_window`).
fn per_second(count: u64, load_window: Duration) -> f64 {
    count as f64 / load_window.as_secs_f64()
}
