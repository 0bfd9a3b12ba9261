//! A circuit breaker (failsafe) whose state is visible: in a Prometheus gauge
//! `circuit_breaker_state{name,state}` and to health checks.

use failsafe::failure_policy::{consecutive_failures, ConsecutiveFailures, FailurePolicy};
use failsafe::{backoff, Config, Instrument, StateMachine};
use prometheus::IntGaugeVec;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// The current open period, which failsafe keeps to itself: its length as the policy
/// chose it (the first period, doubled on each failed probe) and, while open, its end.
#[derive(Default)]
struct OpenPeriod {
    /// What the failure policy last chose; read when the breaker opens.
    chosen: Option<Duration>,
    until: Option<Instant>,
}

/// The period, even after a panic elsewhere while it was held (it is two plain values).
fn lock(period: &Mutex<OpenPeriod>) -> MutexGuard<'_, OpenPeriod> {
    period.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The failure policy, noting each open period it chooses in [`OpenPeriod`].
struct Noted<P> {
    policy: P,
    period: Arc<Mutex<OpenPeriod>>,
}

impl<P: FailurePolicy> FailurePolicy for Noted<P> {
    fn record_success(&mut self) {
        self.policy.record_success();
    }

    fn mark_dead_on_failure(&mut self) -> Option<Duration> {
        let chosen = self.policy.mark_dead_on_failure();
        if chosen.is_some() {
            // None on a failed probe means failsafe reuses the last period: so do we.
            lock(&self.period).chosen = chosen;
        }
        chosen
    }

    fn revived(&mut self) {
        self.policy.revived();
    }
}

/// Mirrors the breaker's transitions into the gauge, an atomic and the open period.
struct Observer {
    name: &'static str,
    state: Arc<AtomicU8>,
    gauge: IntGaugeVec,
    period: Arc<Mutex<OpenPeriod>>,
}

impl Observer {
    fn set(&self, state: BreakerState) {
        {
            // failsafe calls this right after it chose the period and opened.
            let mut period = lock(&self.period);
            period.until = match state {
                BreakerState::Open => period.chosen.map(|d| Instant::now() + d),
                _ => None,
            };
        }
        self.state.store(state as u8, Ordering::Relaxed);
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            self.gauge
                .with_label_values(&[self.name, s.as_str()])
                .set(i64::from(s == state));
        }
    }
}

impl Instrument for Observer {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        tracing::warn!(breaker = self.name, "circuit breaker opened: failing fast");
        self.set(BreakerState::Open);
    }

    fn on_half_open(&self) {
        tracing::info!(breaker = self.name, "circuit breaker half-open: probing");
        self.set(BreakerState::HalfOpen);
    }

    fn on_closed(&self) {
        tracing::info!(breaker = self.name, "circuit breaker closed");
        self.set(BreakerState::Closed);
    }
}

/// Opens after `failures` consecutive failures; stays open `open_for` at first,
/// doubling on each failed probe up to `max_open`.
#[derive(Clone)]
pub struct CircuitBreaker {
    machine: StateMachine<Noted<ConsecutiveFailures<backoff::Exponential>>, Observer>,
    state: Arc<AtomicU8>,
    period: Arc<Mutex<OpenPeriod>>,
    open_for: Duration,
    failures: u32,
}

impl CircuitBreaker {
    pub fn new(
        name: &'static str,
        failures: u32,
        open_for: Duration,
        max_open: Duration,
        gauge: IntGaugeVec,
    ) -> Self {
        let state = Arc::new(AtomicU8::new(BreakerState::Closed as u8));
        let period = Arc::new(Mutex::new(OpenPeriod::default()));
        let policy = Noted {
            policy: consecutive_failures(
                failures.max(1),
                backoff::exponential(open_for, max_open.max(open_for)),
            ),
            period: period.clone(),
        };
        let observer = Observer {
            name,
            state: state.clone(),
            gauge,
            period: period.clone(),
        };
        CircuitBreaker {
            machine: Config::new()
                .failure_policy(policy)
                .instrument(observer)
                .build(),
            state,
            period,
            open_for,
            failures: failures.max(1),
        }
    }

    /// Opens the breaker now, when a failure is certain without waiting for calls to
    /// fail one by one (e.g. the client library reports every broker down).
    pub fn trip(&self) {
        for _ in 0..self.failures {
            self.machine.on_error();
        }
    }

    /// May a call go ahead? False while open (until the open period ends).
    pub fn permits(&self) -> bool {
        self.machine.is_call_permitted()
    }

    pub fn record_success(&self) {
        self.machine.on_success();
    }

    pub fn record_failure(&self) {
        self.machine.on_error();
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// The state as a call would find it now: an open breaker whose open period has
    /// passed turns half-open, letting the next call through as its probe. Readiness
    /// asks this, so it recovers without traffic: behind a load balancer or a
    /// readiness probe that sends nothing until a node is ready, an open breaker would
    /// otherwise never see the call that closes it.
    pub fn state_now(&self) -> BreakerState {
        if self.state() == BreakerState::Open && self.retry_after().is_zero() {
            self.machine.is_call_permitted();
        }
        self.state()
    }

    /// How long until the breaker lets a call through again: while open, what is left of
    /// the current open period (which doubles on each failed probe); otherwise the first
    /// open period, the least a breaker that opens now would wait.
    pub fn retry_after(&self) -> Duration {
        match lock(&self.period).until {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => self.open_for,
        }
    }

    /// What `Retry-After` should say: [`CircuitBreaker::retry_after`] in whole seconds,
    /// rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after().as_millis().div_ceil(1000).max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    /// A breaker opening after `failures`, open `open_secs` at first and at most
    /// `max_secs`, and the gauge it reports to.
    fn breaker(failures: u32, open_secs: u64, max_secs: u64) -> (CircuitBreaker, IntGaugeVec) {
        let gauge = IntGaugeVec::new(Opts::new("g", "g"), &["name", "state"]).expect("gauge");
        let breaker = CircuitBreaker::new(
            "kafka",
            failures,
            Duration::from_secs(open_secs),
            Duration::from_secs(max_secs),
            gauge.clone(),
        );
        (breaker, gauge)
    }

    #[test]
    fn opens_after_consecutive_failures_and_reports_it() {
        let (breaker, gauge) = breaker(3, 60, 60);
        assert_eq!(breaker.state(), BreakerState::Closed);
        for _ in 0..2 {
            breaker.record_failure();
        }
        assert!(breaker.permits());
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.permits());
        assert_eq!(gauge.with_label_values(&["kafka", "open"]).get(), 1);
        assert_eq!(gauge.with_label_values(&["kafka", "closed"]).get(), 0);
        assert_eq!(breaker.retry_after_secs(), 60);
    }

    /// `Retry-After` is what is left of the open period the breaker is in, not the
    /// first one: after a failed probe the period doubles, and so does the answer.
    #[test]
    fn retry_after_is_the_time_left_of_the_current_open_period() {
        let (breaker, _gauge) = breaker(1, 1, 60);
        assert_eq!(breaker.retry_after(), Duration::from_secs(1), "closed");
        breaker.trip();
        let left = breaker.retry_after();
        assert!(
            left <= Duration::from_secs(1) && left > Duration::ZERO,
            "{left:?}"
        );
        assert_eq!(breaker.retry_after_secs(), 1);

        // Past the first period: the next call is the probe, and it fails.
        std::thread::sleep(Duration::from_millis(1100));
        assert!(breaker.permits(), "half-open after the first period");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        let left = breaker.retry_after();
        assert!(
            left > Duration::from_secs(1) && left <= Duration::from_secs(2),
            "the second period is twice the first: {left:?} left"
        );
        assert_eq!(breaker.retry_after_secs(), 2);
    }

    #[test]
    fn trip_opens_at_once() {
        let (breaker, _gauge) = breaker(5, 60, 60);
        breaker.trip();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.permits());
    }

    #[test]
    fn a_success_resets_the_count() {
        let (breaker, _gauge) = breaker(2, 1, 1);
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn an_open_breaker_whose_period_passed_is_ready_to_probe_without_a_call() {
        let gauge = IntGaugeVec::new(Opts::new("g", "g"), &["name", "state"]).expect("gauge");
        let breaker = CircuitBreaker::new(
            "kafka",
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
            gauge,
        );
        breaker.trip();
        assert_eq!(breaker.state_now(), BreakerState::Open, "within its period");
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(breaker.state(), BreakerState::Open, "nothing moved it yet");
        assert_eq!(breaker.state_now(), BreakerState::HalfOpen);
        breaker.record_success();
        assert_eq!(breaker.state_now(), BreakerState::Closed);
    }
}
