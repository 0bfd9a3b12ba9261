//! When each worker sends: the open-loop schedule and the worker loop that keeps it.
//!
//! With a rate, request `k` of worker `w` is due at `start + (k + w / concurrency) *
//! period`, fixed in advance. A worker behind schedule sends at once and does not
//! shift the requests after it, and latency counts from when a request was due, so a
//! stalled server cannot hide its queue by slowing the client down (coordinated
//! omission). Without a rate every worker sends as soon as its previous answer is in.

use crate::cli::{Args, Mode};
use crate::measure::Stats;
use crate::visibility;
use crate::workload::{self, PrebuiltBodies};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one worker sends and its share of the target rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// Ingest, E2e or Query: in mixed mode each worker takes one side.
    pub mode: Mode,
    /// Units/s (events or queries) of all the workers in this role together; 0 = as
    /// fast as possible.
    pub rate: u64,
    /// How many workers share `rate`.
    pub workers: usize,
    /// Events per ingest request, 1 per query.
    pub units_per_request: usize,
}

impl Role {
    pub fn of(args: &Args, worker: usize) -> Role {
        // In mixed mode even workers ingest and odd ones query; the others do one thing.
        let (mode, rate, workers) = match args.mode {
            Mode::Mixed if worker.is_multiple_of(2) => {
                (Mode::Ingest, args.rate, args.concurrency.div_ceil(2))
            }
            Mode::Mixed => (Mode::Query, args.query_rate, (args.concurrency / 2).max(1)),
            mode => (mode, args.rate, args.concurrency),
        };
        let units_per_request = match mode {
            Mode::Query => 1,
            _ => args.events_per_request(),
        };
        Role {
            mode,
            rate,
            workers,
            units_per_request,
        }
    }
}

/// The due times of one worker's requests.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    started: Instant,
    deadline: Instant,
    /// Time between two requests of this worker; `None` without a rate (closed loop).
    period: Option<Duration>,
    /// This worker's offset into the period, as a fraction of it: staggers the workers
    /// so that together they send evenly rather than in bursts of `--concurrency`.
    phase: f64,
}

impl Schedule {
    pub fn new(
        started: Instant,
        duration: Duration,
        role: &Role,
        worker: usize,
        concurrency: usize,
    ) -> Self {
        let period = (role.rate > 0).then(|| {
            Duration::from_secs_f64(
                role.units_per_request as f64 * role.workers as f64 / role.rate as f64,
            )
        });
        Schedule {
            started,
            deadline: started + duration,
            period,
            phase: worker as f64 / concurrency as f64,
        }
    }

    /// When request `sequence` (from 0) is due: on the fixed schedule, or `now` without
    /// a rate. `None` once that is at or past the end of the run. A late worker still
    /// sends every request due before the end, so it may finish after it.
    pub fn due(&self, sequence: u64, now: Instant) -> Option<Instant> {
        let due = match self.period {
            Some(p) => self.started + p.mul_f64(sequence as f64 + self.phase),
            None => now,
        };
        (due < self.deadline).then_some(due)
    }
}

/// How long to wait before a request due at `due`; `None` if it is late, when it is
/// sent at once (its latency still counting from `due`).
pub fn wait_for(due: Instant, now: Instant) -> Option<Duration> {
    due.checked_duration_since(now)
}

/// One of the `--concurrency` workers and what it shares with the others.
pub struct Worker<'a> {
    pub index: usize,
    pub args: &'a Args,
    pub client: &'a reqwest::Client,
    pub run_id: &'a str,
    pub prebuilt: Option<&'a PrebuiltBodies>,
    pub tracker: &'a visibility::Tracker,
}

impl Worker<'_> {
    /// Sends on schedule until the end of the run.
    pub async fn run(&self, stats: Arc<Stats>, started: Instant) -> anyhow::Result<()> {
        let args = self.args;
        let role = Role::of(args, self.index);
        let duration = Duration::from_secs(args.duration);
        let schedule = Schedule::new(started, duration, &role, self.index, args.concurrency);
        let mut sequence = 0u64;
        while let Some(due) = schedule.due(sequence, Instant::now()) {
            if let Some(wait) = wait_for(due, Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            sequence += 1;
            match role.mode {
                Mode::Ingest | Mode::E2e | Mode::Mixed => {
                    self.ingest(&stats, &role, sequence, due).await?
                }
                Mode::Query => workload::send_query(args, self.client, &stats, sequence, due).await,
            }
        }
        Ok(())
    }

    async fn ingest(
        &self,
        stats: &Stats,
        role: &Role,
        sequence: u64,
        due: Instant,
    ) -> anyhow::Result<()> {
        let (args, events) = (self.args, role.units_per_request);
        let body = match self.prebuilt {
            Some(bodies) => bodies.pick(self.index, sequence),
            None => {
                let source = workload::source_name(self.run_id, self.index);
                workload::ingest_body(args, &source, events)?
            }
        };
        let sampled = workload::send_ingest(args, self.client, stats, body, due, events).await;
        let follow = workload::is_sampled(sequence, args.sample_every, events);
        if let (Mode::E2e, true, Some(id)) = (role.mode, follow, sampled) {
            // Looked up by the sampler thread, never by this worker: following a
            // sample must not delay the ingest schedule.
            if let Ok(id) = uuid::Uuid::parse_str(&id) {
                self.tracker.track(id, due);
            }
        }
        Ok(())
    }
}
