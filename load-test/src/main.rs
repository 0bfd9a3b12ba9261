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
//!
//! # Layout
//!
//! - `cli`: the command-line flags and the checks on them (local targets only).
//! - `scheduler`: each worker's role, its open-loop due times, and the worker loop.
//! - `workload`: what each mode sends: generated or prebuilt ingest bodies, queries,
//!   which requests e2e follows.
//! - `measure`: latency histograms and counters, the load window, and the peak RSS and
//!   CPU time of the services from `/proc`.
//! - `visibility`: e2e; looks the sampled events up in PostgreSQL until stored.
//! - `report`: the progress line, the summary on stdout and the JSON and Markdown files.
//!
//! `main` wires them: check the flags, start the workers, wait for them (the load
//! window), then for the e2e samples, then report.

mod cli;
mod measure;
mod report;
mod scheduler;
mod visibility;
mod workload;

use measure::{ServiceSampler, Stats};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = cli::Args::from_command_line()?;
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
    let prebuilt = Arc::new(workload::PrebuiltBodies::build(&args, &run_id)?);
    // Before the load window, so the look-up is not measured.
    let found = Arc::new(match args.mode {
        cli::Mode::Query | cli::Mode::Mixed => workload::Found::look_up(&args, &client).await?,
        _ => workload::Found::default(),
    });
    let tracker = visibility::Tracker::new();
    let load_done = Arc::new(AtomicBool::new(false));
    let sampler = (args.mode == cli::Mode::E2e)
        .then(|| tracker.spawn(args.postgres_url.clone(), load_done.clone()));
    let started = Instant::now();
    let progress = tokio::spawn(report::progress_line(stats.clone(), stop.clone(), started));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|index| {
            let (args, client, stats, run_id, prebuilt, tracker, found) = (
                args.clone(),
                client.clone(),
                stats.clone(),
                run_id.clone(),
                prebuilt.clone(),
                tracker.clone(),
                found.clone(),
            );
            tokio::spawn(async move {
                let worker = scheduler::Worker {
                    index,
                    args: &args,
                    client: &client,
                    run_id: &run_id,
                    prebuilt: prebuilt.as_ref().as_ref(),
                    tracker: &tracker,
                    found: &found,
                };
                worker.run(stats, started).await
            })
        })
        .collect();
    let load = async {
        for worker in workers {
            worker.await??;
        }
        Ok(())
    };
    let drain = || async {
        stop.store(true, Ordering::SeqCst);
        let _ = progress.await;
        if let Some(sampler) = sampler {
            eprintln!("load done; waiting for the outstanding samples to be stored");
            load_done.store(true, Ordering::SeqCst);
            let outcome = tokio::task::spawn_blocking(move || sampler.join())
                .await?
                .map_err(|_| anyhow::anyhow!("sampler thread panicked"))??;
            stats.add_visibility(outcome);
        }
        anyhow::Ok(())
    };
    let (elapsed, drained) = measure::load_window(started, load, drain).await?;
    drained?;
    let services = services.finish().await;

    let report = report::Report::build(&args, &run_id, &stats, elapsed, services);
    report.print();
    report.write(&args.results_dir)?;
    Ok(())
}
