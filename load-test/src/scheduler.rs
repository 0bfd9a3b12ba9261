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
    pub found: &'a workload::Found,
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
                Mode::Query => {
                    workload::send_query(args, self.client, &stats, sequence, due, self.found).await
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> Args {
        let line = std::iter::once("load-test").chain(flags.iter().copied());
        Args::try_parse_from(line)
            .expect("valid flags")
            .checked()
            .expect("local targets")
    }

    fn schedule_of(args: &Args, worker: usize, started: Instant) -> Schedule {
        let duration = Duration::from_secs(args.duration);
        Schedule::new(
            started,
            duration,
            &Role::of(args, worker),
            worker,
            args.concurrency,
        )
    }

    /// Equal to within a microsecond: the period goes through `f64` seconds.
    #[track_caller]
    fn assert_near(actual: Duration, expected: Duration) {
        let error = actual.abs_diff(expected);
        assert!(
            error < Duration::from_micros(1),
            "{actual:?} is not {expected:?}"
        );
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Every request one worker sends, as (due, sent), when each answer takes
    /// `answer`: the worker loop with a simulated clock.
    fn simulate(
        schedule: &Schedule,
        started: Instant,
        answer: Duration,
    ) -> Vec<(Instant, Instant)> {
        let mut now = started;
        let mut sent = Vec::new();
        let mut sequence = 0;
        while let Some(due) = schedule.due(sequence, now) {
            if let Some(wait) = wait_for(due, now) {
                now += wait;
            }
            sent.push((due, now));
            now += answer;
            sequence += 1;
        }
        sent
    }

    /// One worker sending 100 single events a second for one second.
    const ONE_WORKER_100_PER_SECOND: &[&str] = &[
        "--endpoint",
        "ingest",
        "--rate",
        "100",
        "--duration",
        "1",
        "--concurrency",
        "1",
    ];

    /// The BENCHMARKS e2e run.
    const E2E_RUN: &[&str] = &[
        "--mode",
        "e2e",
        "--endpoint",
        "batch",
        "--batch-size",
        "100",
        "--rate",
        "20000",
        "--duration",
        "60",
        "--concurrency",
        "64",
    ];

    #[test]
    fn each_worker_sends_one_request_per_period_of_units_times_workers_over_rate() {
        // The BENCHMARKS e2e run: 20,000 events/s in requests of 100 over 64 workers is
        // one request per worker every 100 * 64 / 20,000 s = 320 ms.
        let args = args(E2E_RUN);
        let started = Instant::now();
        let schedule = schedule_of(&args, 0, started);
        for n in 0..5 {
            let due = schedule.due(n, started).expect("inside the run");
            assert_near(due - started, ms(320 * n));
        }
    }

    #[test]
    fn workers_are_staggered_evenly_within_one_period() {
        // 400 single events/s over 4 workers: a 10 ms period per worker, the first
        // requests 2.5 ms apart, so that together they send one every 2.5 ms.
        let args = args(&[
            "--endpoint",
            "ingest",
            "--rate",
            "400",
            "--concurrency",
            "4",
        ]);
        let started = Instant::now();
        for worker in 0..4 {
            let schedule = schedule_of(&args, worker, started);
            let first = schedule.due(0, started).expect("inside the run");
            let second = schedule.due(1, started).expect("inside the run");
            assert_near(first - started, Duration::from_micros(2500 * worker as u64));
            assert_near(second - first, ms(10));
        }
    }

    #[test]
    fn all_workers_together_send_the_target_rate_over_the_run() {
        let args = args(E2E_RUN);
        let started = Instant::now();
        let requests: usize = (0..64)
            .map(|worker| simulate(&schedule_of(&args, worker, started), started, ms(1)).len())
            .sum();
        assert_eq!(requests * 100, 20_000 * 60);
    }

    #[test]
    fn mixed_mode_sends_both_target_rates() {
        // The BENCHMARKS mixed run: 4 workers ingest 20,000 events/s in requests of
        // 500, 4 send 200 queries/s.
        let args = args(&[
            "--mode",
            "mixed",
            "--rate",
            "20000",
            "--query-rate",
            "200",
            "--duration",
            "10",
            "--concurrency",
            "8",
        ]);
        let started = Instant::now();
        let (mut events, mut queries) = (0, 0);
        for worker in 0..8 {
            let role = Role::of(&args, worker);
            let sent = simulate(&schedule_of(&args, worker, started), started, ms(1)).len();
            match role.mode {
                Mode::Ingest => events += sent * role.units_per_request,
                Mode::Query => queries += sent,
                other => panic!("mixed worker {worker} in role {other:?}"),
            }
        }
        assert_eq!(events, 20_000 * 10);
        assert_eq!(queries, 200 * 10);
    }

    #[test]
    fn nothing_is_due_at_or_after_the_end_of_the_run() {
        // One event a second for 3 s: due at 0, 1 and 2 s; the fourth would be due
        // exactly at the end.
        let args = args(&[
            "--endpoint",
            "ingest",
            "--rate",
            "1",
            "--duration",
            "3",
            "--concurrency",
            "1",
        ]);
        let started = Instant::now();
        let schedule = schedule_of(&args, 0, started);
        for n in 0..3 {
            assert_near(
                schedule.due(n, started).expect("inside") - started,
                ms(1000 * n),
            );
        }
        assert_eq!(schedule.due(3, started), None);
        assert_eq!(schedule.due(4, started), None);
    }

    #[test]
    fn without_a_rate_every_request_is_due_at_once_until_the_end() {
        let args = args(&["--duration", "5"]);
        let started = Instant::now();
        let schedule = schedule_of(&args, 3, started);
        let end = started + Duration::from_secs(5);
        for now in [started, started + ms(1234), end - ms(1)] {
            assert_eq!(schedule.due(7, now), Some(now));
            assert_eq!(wait_for(now, now), Some(Duration::ZERO));
        }
        assert_eq!(schedule.due(7, end), None);
    }

    #[test]
    fn an_early_worker_waits_and_a_late_one_does_not() {
        let due = Instant::now() + ms(100);
        assert_eq!(wait_for(due, due - ms(3)), Some(ms(3)));
        assert_eq!(wait_for(due, due + ms(3)), None);
    }

    #[test]
    fn a_worker_keeps_up_when_answers_are_faster_than_the_period() {
        let args = args(ONE_WORKER_100_PER_SECOND);
        let started = Instant::now();
        let sent = simulate(&schedule_of(&args, 0, started), started, ms(4));
        assert_eq!(sent.len(), 100);
        assert!(
            sent.iter().all(|(due, at)| due == at),
            "every request on time"
        );
    }

    #[test]
    fn a_late_worker_sends_at_once_without_moving_the_schedule() {
        // A request every 10 ms, answers taking 25 ms: the worker falls behind.
        let args = args(ONE_WORKER_100_PER_SECOND);
        let started = Instant::now();
        let sent = simulate(&schedule_of(&args, 0, started), started, ms(25));
        // Every request due in the run is still sent, the last ones after its end...
        assert_eq!(sent.len(), 100);
        assert_eq!(sent[99].1 - started, ms(99 * 25));
        for (n, (due, at)) in sent.iter().enumerate() {
            let n = n as u64;
            // ...each keeps its place on the schedule, and is sent as soon as the
            // previous answer is in, so its latency (from due) holds the queue: 15 ms
            // more for each request.
            assert_near(*due - started, ms(10 * n));
            assert_near(*at - *due, ms(15 * n));
        }
    }

    #[test]
    fn mixed_mode_ingests_on_even_workers_and_queries_on_odd_ones() {
        let args = args(&[
            "--mode",
            "mixed",
            "--rate",
            "1000",
            "--query-rate",
            "50",
            "--concurrency",
            "5",
            "--batch-size",
            "200",
        ]);
        let ingest = Role {
            mode: Mode::Ingest,
            rate: 1000,
            workers: 3,
            units_per_request: 200,
        };
        let query = Role {
            mode: Mode::Query,
            rate: 50,
            workers: 2,
            units_per_request: 1,
        };
        let roles: Vec<Role> = (0..5).map(|w| Role::of(&args, w)).collect();
        assert_eq!(roles, [ingest, query, ingest, query, ingest]);
    }

    #[test]
    fn a_lone_mixed_worker_ingests() {
        let args = args(&["--mode", "mixed", "--rate", "1000", "--concurrency", "1"]);
        let role = Role::of(&args, 0);
        assert_eq!((role.mode, role.workers), (Mode::Ingest, 1));
    }

    #[test]
    fn a_request_carries_one_unit_for_queries_and_single_events() {
        let units = |flags: &[&str]| Role::of(&args(flags), 0).units_per_request;
        assert_eq!(units(&["--endpoint", "batch", "--batch-size", "250"]), 250);
        assert_eq!(units(&["--endpoint", "bulk", "--batch-size", "250"]), 250);
        assert_eq!(units(&["--endpoint", "ingest", "--batch-size", "250"]), 1);
        assert_eq!(units(&["--mode", "query", "--batch-size", "250"]), 1);
        assert_eq!(units(&["--mode", "e2e", "--batch-size", "250"]), 250);
    }
}
