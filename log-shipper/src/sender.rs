//! Sends batches to the producer's `/bulk` (a few requests in flight) until each is
//! acknowledged; then, in the order the batches were read, and only then, moves the
//! checkpoints each batch covers.
//!
//! - 2xx: done. Events listed with a `logId` were valid but not delivered (Kafka
//!   failed them): the whole batch is sent again (the ids make the repeats one row).
//!   Events listed without one were refused as invalid: counted and logged, never sent
//!   again (the parser makes them valid, so this does not happen in practice).
//! - 429 and 503: wait out `Retry-After` (1 s when absent, 60 s at most), then again.
//! - 400 and 413 (the batch as a whole is refused): logged, counted, skipped, so one bad
//!   batch cannot stall a file forever.
//! - Any other failure (connection refused, timeout, 5xx, 401/403/404/415, which are
//!   configuration errors an operator can fix): exponential backoff with jitter,
//!   100 ms doubling to 10 s, for ever. Meanwhile the reader is blocked on the full
//!   channel, so reading pauses and memory stays bounded.

use crate::checkpoint::{Checkpoints, Entry};
use crate::identity::FileKey;
use crate::metrics::Metrics;
use crate::settings::Compression;
use anyhow::Context;
use futures::stream::{FuturesOrdered, StreamExt};
use log_common::settings::Secret;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Events ready to send, with the checkpoints they move once acknowledged.
#[derive(Debug, Default)]
pub struct Batch {
    /// NDJSON, one event per line, uncompressed.
    pub body: Vec<u8>,
    pub events: usize,
    /// The last position of each file covered, applied after the 2xx.
    pub marks: Vec<Entry>,
    /// Files left after this batch (deleted, or rotated away and finished).
    pub releases: Vec<FileKey>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.marks.is_empty() && self.releases.is_empty()
    }

    /// Records that everything of `entry.key` before `entry.offset` is in this batch.
    pub fn mark(&mut self, entry: Entry) {
        match self.marks.iter_mut().find(|m| m.key == entry.key) {
            Some(m) => *m = entry,
            None => self.marks.push(entry),
        }
    }
}

/// Acknowledged offset per file, shared with the reader for the lag gauge.
pub type Acked = Arc<Mutex<HashMap<FileKey, u64>>>;

/// Acknowledges batches in the order they were read, whatever order their requests
/// finish in, so a checkpoint never passes a batch still in flight.
pub struct Sender {
    pub http: Arc<Http>,
    pub checkpoints: Checkpoints,
    pub acked: Acked,
    /// Requests in flight at once (each a batch); their answers are applied in order.
    pub max_inflight: usize,
}

/// What a request needs; shared by the requests in flight.
pub struct Http {
    pub client: reqwest::Client,
    pub url: String,
    pub compression: Compression,
    pub api_key: Option<Secret>,
    pub metrics: Metrics,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkAnswer {
    #[serde(default)]
    errors: Vec<ItemError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemError {
    log_id: Option<serde_json::Value>,
    message: String,
}

/// The sender was told to give up (shutdown with the producer away).
struct GaveUp;

enum Outcome {
    Done,
    Retry {
        reason: &'static str,
        wait: Option<Duration>,
    },
}

impl Sender {
    /// Sends batches until the reader closes the channel, or `give_up` turns true.
    pub async fn run(
        mut self,
        mut batches: mpsc::Receiver<Batch>,
        mut give_up: watch::Receiver<bool>,
    ) {
        let mut inflight = FuturesOrdered::new();
        let mut open = true;
        loop {
            tokio::select! {
                batch = batches.recv(), if open && inflight.len() < self.max_inflight => match batch {
                    Some(batch) => {
                        let http = self.http.clone();
                        let mut give_up = give_up.clone();
                        inflight.push_back(async move {
                            if batch.events > 0 {
                                http.deliver(&batch, &mut give_up).await?;
                            }
                            Ok::<Batch, GaveUp>(batch)
                        });
                    }
                    None => open = false,
                },
                Some(done) = inflight.next(), if !inflight.is_empty() => match done {
                    Ok(batch) => self.acknowledge(batch),
                    Err(GaveUp) => {
                        tracing::warn!(
                            "shutting down with batches unacknowledged: they are read and sent again at the next start"
                        );
                        return;
                    }
                },
                _ = wait_for(&mut give_up), if inflight.is_empty() && open => {
                    // Stopped for good: what is still queued is read again at the next start.
                    return;
                }
                else => return,
            }
        }
    }

    fn acknowledge(&mut self, batch: Batch) {
        if batch.marks.is_empty() && batch.releases.is_empty() {
            return;
        }
        {
            let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
            for mark in &batch.marks {
                acked.insert(mark.key, mark.offset);
            }
            for key in &batch.releases {
                acked.remove(key);
            }
        }
        for mark in batch.marks {
            self.checkpoints.advance(mark);
        }
        for key in &batch.releases {
            self.checkpoints.release(key);
        }
        if let Err(e) = self.checkpoints.save() {
            // The next batch tries again; until then a crash re-sends a little more.
            tracing::error!(error = format!("{e:#}"), "cannot write the checkpoints");
        }
    }
}

impl Http {
    async fn deliver(
        &self,
        batch: &Batch,
        give_up: &mut watch::Receiver<bool>,
    ) -> Result<(), GaveUp> {
        let body = match self.compress(&batch.body) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "compression failed; sending uncompressed");
                batch.body.clone()
            }
        };
        let mut attempt: u32 = 0;
        loop {
            let outcome = tokio::select! {
                outcome = self.attempt(batch, &body) => outcome,
                _ = wait_for(give_up) => return Err(GaveUp),
            };
            let (reason, wait) = match outcome {
                Outcome::Done => {
                    self.metrics.events_sent.inc_by(batch.events as u64);
                    self.metrics.bytes_sent.inc_by(body.len() as u64);
                    return Ok(());
                }
                Outcome::Retry { reason, wait } => (reason, wait),
            };
            self.metrics.retries.with_label_values(&[reason]).inc();
            let wait = wait.unwrap_or_else(|| backoff(attempt));
            attempt = attempt.saturating_add(1);
            if attempt == 1 || attempt.is_multiple_of(10) {
                tracing::warn!(
                    reason,
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    events = batch.events,
                    "producer did not take the batch; reading is paused until it does"
                );
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = wait_for(give_up) => return Err(GaveUp),
            }
        }
    }

    async fn attempt(&self, batch: &Batch, body: &[u8]) -> Outcome {
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body.to_vec());
        if let Some(encoding) = match self.compression {
            Compression::Zstd => Some("zstd"),
            Compression::Gzip => Some("gzip"),
            Compression::None => None,
        } {
            request = request.header(reqwest::header::CONTENT_ENCODING, encoding);
        }
        if let Some(key) = &self.api_key {
            request = request.header("X-API-Key", key.expose());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(error = %e, "request failed");
                return Outcome::Retry {
                    reason: "connection",
                    wait: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(60.0)));
        let text = match response.text().await {
            Ok(text) => text,
            Err(_) => {
                return Outcome::Retry {
                    reason: "connection",
                    wait: None,
                }
            }
        };
        match status.as_u16() {
            200..=299 => {
                let answer: BulkAnswer =
                    serde_json::from_str(&text).unwrap_or(BulkAnswer { errors: Vec::new() });
                if answer
                    .errors
                    .iter()
                    .any(|e| e.log_id.as_ref().is_some_and(|v| !v.is_null()))
                {
                    return Outcome::Retry {
                        reason: "partial",
                        wait: None,
                    };
                }
                if let Some(first) = answer.errors.first() {
                    self.metrics
                        .events_rejected
                        .inc_by(answer.errors.len() as u64);
                    tracing::error!(rejected = answer.errors.len(), first = %first.message,
                        "the producer refused events as invalid; they are skipped");
                }
                Outcome::Done
            }
            429 => Outcome::Retry {
                reason: "rate_limited",
                wait: Some(retry_after.unwrap_or(Duration::from_secs(1))),
            },
            503 => Outcome::Retry {
                reason: "unavailable",
                wait: Some(retry_after.unwrap_or(Duration::from_secs(1))),
            },
            400 | 413 => {
                self.metrics.events_rejected.inc_by(batch.events as u64);
                tracing::error!(status = status.as_u16(), answer = %truncate(&text, 500), events = batch.events,
                    "the producer refused the whole batch; it is skipped");
                Outcome::Done
            }
            400..=499 => {
                tracing::error!(status = status.as_u16(), answer = %truncate(&text, 500),
                    "the producer refused the request (check --producer-url and --api-key); retrying");
                Outcome::Retry {
                    reason: "rejected",
                    wait: None,
                }
            }
            _ => Outcome::Retry {
                reason: "server_error",
                wait: retry_after,
            },
        }
    }

    fn compress(&self, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        match self.compression {
            Compression::Zstd => zstd::bulk::compress(body, 1).context("zstd"),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                encoder.write_all(body)?;
                Ok(encoder.finish()?)
            }
            Compression::None => Ok(body.to_vec()),
        }
    }
}

async fn wait_for(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// 100 ms doubling to 10 s, each wait drawn from its upper half (jitter), so many
/// shippers do not come back at the same instant.
pub fn backoff(attempt: u32) -> Duration {
    let full = 100u64.saturating_mul(1 << attempt.min(7)).min(10_000);
    Duration::from_millis(full / 2 + fastrand::u64(0..=full / 2))
}

fn truncate(text: &str, max: usize) -> &str {
    &text[..crate::parse::floor_char_boundary(text, max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        for attempt in 0..20 {
            let full = (100u64 << attempt.min(7)).min(10_000);
            let wait = backoff(attempt).as_millis() as u64;
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait}"
            );
        }
    }

    #[test]
    fn a_batch_keeps_the_last_mark_per_file() {
        let key = FileKey {
            dev: 1,
            ino: 1,
            fingerprint: 1,
        };
        let mut batch = Batch::default();
        for offset in [10, 20] {
            batch.mark(Entry {
                key,
                generation: 0,
                offset,
                path: "/a".into(),
            });
        }
        assert_eq!(batch.marks.len(), 1);
        assert_eq!(batch.marks[0].offset, 20);
    }
}
