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
    /// Set when the report is built, at the end of the run; the JSON key stays for the
    /// reports already written.
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> Args {
        let line = std::iter::once("load-test").chain(flags.iter().copied());
        Args::try_parse_from(line).expect("valid flags")
    }

    fn stats(accepted_events: u64, answered_queries: u64) -> Stats {
        let stats = Stats::new().expect("stats");
        stats.ok_units.store(accepted_events, Ordering::Relaxed);
        stats.ok_queries.store(answered_queries, Ordering::Relaxed);
        stats
    }

    fn report(flags: &[&str], stats: &Stats, load_window: Duration) -> Report {
        Report::build(
            &args(flags),
            "abcd1234",
            stats,
            load_window,
            BTreeMap::new(),
        )
    }

    #[test]
    fn the_headline_is_accepted_events_per_second_of_the_load_window() {
        let r = report(
            &["--mode", "ingest"],
            &stats(200_000, 0),
            Duration::from_secs(10),
        );
        assert_eq!(r.throughput_per_second, 20_000.0);
        assert_eq!(r.ok, 200_000);
        // persistence.sh takes the last word of the first line.
        assert_eq!(r.headline(), "accepted events/s: 20000\n");
    }

    #[test]
    fn in_query_mode_the_headline_is_answered_queries_per_second() {
        let r = report(&["--mode", "query"], &stats(0, 480), Duration::from_secs(8));
        assert_eq!(r.throughput_per_second, 60.0);
        assert_eq!(r.headline(), "queries/s: 60\n");
    }

    #[test]
    fn in_mixed_mode_events_and_queries_have_a_line_each() {
        let r = report(
            &["--mode", "mixed"],
            &stats(200_000, 2_000),
            Duration::from_secs(10),
        );
        assert_eq!(r.headline(), "accepted events/s: 20000\nqueries/s: 200\n");
        assert_eq!(r.ok, 200_000);
    }

    #[tokio::test]
    async fn the_headline_rate_leaves_out_the_wait_for_samples() {
        let stats = stats(0, 0);
        let started = Instant::now();
        let load = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stats.ok_units.store(1_000, Ordering::Relaxed);
            Ok(())
        };
        // Stands for the e2e wait for the last samples: nothing is sent during it.
        let drain = || tokio::time::sleep(Duration::from_millis(500));
        let (window, ()) = crate::measure::load_window(started, load, drain)
            .await
            .expect("loaded");
        let r = report(&["--mode", "e2e"], &stats, window);
        assert!(r.elapsed_seconds < 0.5, "window {}", r.elapsed_seconds);
        // Over the 0.6 s with the drain it would be at most 1,667/s.
        assert!(
            r.throughput_per_second > 2_000.0,
            "{}",
            r.throughput_per_second
        );
        assert_eq!(r.throughput_per_second, 1_000.0 / r.elapsed_seconds);
    }

    fn fixed_report() -> Report {
        let ms = |p50_ms, max_ms, count| Latency {
            count,
            p50_ms,
            p90_ms: p50_ms * 1.5,
            p99_ms: p50_ms * 2.0,
            p999_ms: p50_ms * 3.0,
            max_ms,
        };
        let producer = ServiceUsage {
            pid: 77,
            peak_rss_mib: 123.44,
            cpu_seconds: 5.5,
            cpu_cores: 0.55,
        };
        Report {
            run_id: "abcd1234".into(),
            started_at: "2026-11-29T13:00:00+00:00".into(),
            args: args(&["--mode", "e2e", "--batch-size", "100"]),
            elapsed_seconds: 10.04,
            throughput_per_second: 20_000.4,
            queries_per_second: 0.0,
            ok: 200_000,
            failed: 12,
            requests: 401,
            by_status: BTreeMap::from([("200".into(), 400), ("503".into(), 1)]),
            latency: BTreeMap::from([("ingest".into(), ms(1.5, 5.0, 401))]),
            visibility_lag_ms: Some(ms(120.0, 500.0, 50)),
            samples_never_visible: 0,
            services: BTreeMap::from([("producer".into(), producer)]),
        }
    }

    #[test]
    fn the_markdown_summary_keeps_its_format() {
        let expected = "\
## load-test abcd1234 (E2e, Batch)

accepted events/s: **20000** (200000 ok, 12 failed, 401 requests in 10.0 s)

| request | count | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |
|---|---|---|---|---|---|---|
| ingest | 401 | 1.50 | 2.25 | 3.00 | 4.50 | 5.00 |
| visibility lag | 50 | 120 | 180 | 240 | 360 | 500 |

statuses: {\"200\": 400, \"503\": 1}

| service | peak RSS MiB | CPU s | cores |
|---|---|---|---|
| producer | 123.4 | 5.5 | 0.55 |
";
        assert_eq!(fixed_report().markdown(), expected);
    }

    #[test]
    fn the_json_report_keeps_its_fields() {
        let json = serde_json::to_value(fixed_report()).expect("serializes");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().expect("object").keys().cloned().collect()
        };
        let mut top = keys(&json);
        top.sort();
        assert_eq!(
            top,
            [
                "args",
                "by_status",
                "elapsed_seconds",
                "failed",
                "latency",
                "ok",
                "queries_per_second",
                "requests",
                "run_id",
                "samples_never_visible",
                "services",
                "started_at",
                "throughput_per_second",
                "visibility_lag_ms",
            ]
        );
        assert_eq!(json["args"]["mode"], "e2e");
        assert_eq!(json["args"]["batch_size"], 100);
        assert_eq!(json["latency"]["ingest"]["p999_ms"], 4.5);
        assert_eq!(json["services"]["producer"]["cpu_cores"], 0.55);
    }
}
