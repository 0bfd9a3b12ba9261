//! A circuit breaker (failsafe) whose state is visible: in a Prometheus gauge
//! `circuit_breaker_state{name,state}` and to health checks.

use failsafe::failure_policy::{consecutive_failures, ConsecutiveFailures};
use failsafe::{backoff, Config, Instrument, StateMachine};
use prometheus::IntGaugeVec;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Mirrors the breaker's transitions into the gauge and an atomic.
struct Observer {
    name: &'static str,
    state: Arc<AtomicU8>,
    gauge: IntGaugeVec,
}

impl Observer {
    fn set(&self, state: BreakerState) {
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
    machine: StateMachine<ConsecutiveFailures<backoff::Exponential>, Observer>,
    state: Arc<AtomicU8>,
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
        let policy = consecutive_failures(
            failures.max(1),
            backoff::exponential(open_for, max_open.max(open_for)),
        );
        let observer = Observer {
            name,
            state: state.clone(),
            gauge,
        };
        CircuitBreaker {
            machine: Config::new()
                .failure_policy(policy)
                .instrument(observer)
                .build(),
            state,
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

    /// What `Retry-After` should say while open: the first open period, in seconds.
    pub fn retry_after_secs(&self) -> u64 {
        self.open_for.as_millis().div_ceil(1000).max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    #[test]
    fn opens_after_consecutive_failures_and_reports_it() {
        let gauge = IntGaugeVec::new(Opts::new("g", "g"), &["name", "state"]).expect("gauge");
        let breaker = CircuitBreaker::new(
            "kafka",
            3,
            Duration::from_secs(60),
            Duration::from_secs(60),
            gauge.clone(),
        );
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

    #[test]
    fn trip_opens_at_once() {
        let gauge = IntGaugeVec::new(Opts::new("g", "g"), &["name", "state"]).expect("gauge");
        let breaker = CircuitBreaker::new(
            "kafka",
            5,
            Duration::from_secs(60),
            Duration::from_secs(60),
            gauge,
        );
        breaker.trip();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.permits());
    }

    #[test]
    fn a_success_resets_the_count() {
        let gauge = IntGaugeVec::new(Opts::new("g", "g"), &["name", "state"]).expect("gauge");
        let breaker = CircuitBreaker::new(
            "pg",
            2,
            Duration::from_secs(1),
            Duration::from_secs(1),
            gauge,
        );
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
