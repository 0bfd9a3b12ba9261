//! One retry schedule for every wait on PostgreSQL or Kafka in the consumer: a batch
//! write, a dead letter, a partition claim, the migrations at start.
//!
//! The schedule is backon's capped exponential backoff with jitter; what backon's
//! `Retryable` cannot give us is kept here: the wait ends early when shutdown comes,
//! and the caller decides per error whether to retry (fenced or permanent errors are
//! not retried) and what to report meanwhile.

use crate::settings::ConsumerTuning;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;
use tokio::sync::watch;

pub struct Retry {
    delays: ExponentialBackoff,
}

impl Retry {
    /// Delays start at `first` and double up to `max`; each gets a random extra of up
    /// to 100% of itself, so instances that failed together do not retry in lockstep.
    pub fn new(first: Duration, max: Duration) -> Self {
        Retry {
            delays: schedule(first, max).with_jitter().build(),
        }
    }

    /// The schedule of the batch writes (`CONSUMER_RETRY_INITIAL_MS`, `CONSUMER_RETRY_MAX_MS`).
    pub fn for_writes(tuning: &ConsumerTuning) -> Self {
        Retry::new(
            Duration::from_millis(tuning.retry_initial_ms.max(1)),
            Duration::from_millis(tuning.retry_max_ms.max(tuning.retry_initial_ms)),
        )
    }

    pub fn next_delay(&mut self) -> Duration {
        // The schedule has no attempt limit, so it never runs out.
        self.delays.next().unwrap_or(Duration::from_secs(1))
    }

    /// Sleeps the next delay; false if shutdown came first.
    pub async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

fn schedule(first: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max.max(first))
        .with_factor(2.0)
        .without_max_times()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_cap() {
        let mut delays = schedule(Duration::from_millis(100), Duration::from_millis(1000)).build();
        let ms: Vec<u128> = (0..7)
            .map(|_| delays.next().expect("no attempt limit").as_millis())
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn jitter_adds_at_most_the_delay_itself_and_never_ends() {
        let mut retry = Retry::new(Duration::from_millis(100), Duration::from_millis(400));
        let bases = [100, 200, 400, 400, 400];
        for base in bases {
            let delay = retry.next_delay().as_millis();
            assert!(
                (base..2 * base).contains(&delay),
                "{delay} ms outside [{base}, {})",
                2 * base
            );
        }
        for _ in 0..1000 {
            assert!(retry.next_delay() < Duration::from_millis(800));
        }
    }

    #[test]
    fn a_cap_below_the_first_delay_is_raised_to_it() {
        let mut delays = schedule(Duration::from_millis(300), Duration::from_millis(10)).build();
        assert_eq!(delays.next(), Some(Duration::from_millis(300)));
        assert_eq!(delays.next(), Some(Duration::from_millis(300)));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_at_once() {
        let (stop, mut shutdown) = watch::channel(false);
        let mut retry = Retry::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let waiting = tokio::spawn(async move { retry.wait(&mut shutdown).await });
        tokio::task::yield_now().await;
        stop.send(true).expect("receiver alive");
        assert!(
            !waiting.await.expect("wait task"),
            "the wait reports shutdown"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_shutdown_the_wait_sleeps_its_delay() {
        let (_stop, mut shutdown) = watch::channel(false);
        let mut retry = Retry::new(Duration::from_secs(10), Duration::from_secs(10));
        let started = tokio::time::Instant::now();
        assert!(retry.wait(&mut shutdown).await);
        let slept = started.elapsed();
        assert!(
            slept >= Duration::from_secs(10) && slept < Duration::from_secs(20),
            "{slept:?}"
        );
    }
}
