//! The live tail: one task per stream polls PostgreSQL for the rows stored past the
//! stream's cursor (see `log_store::queries::tail` for why per-partition offsets
//! make it gap- and duplicate-free) and writes them as Server-Sent Events.
//!
//! The wire format, one SSE message per event:
//!
//! ```text
//! id: 0:1042.1:977          the cursor just past this event (resume point)
//! data: {"id":"…","level":"ERROR",…}
//! ```
//!
//! plus `event: ready` first (its `id:` is the starting cursor, so a stream dropped
//! before any event still resumes where it began), an `id:`-only message when rows that
//! did not match moved the cursor, `: heartbeat` comments, and `event: tail-error` when
//! PostgreSQL cannot be read (the stream stays open and keeps trying).
//!
//! Bounds: at most `TAIL_MAX_CLIENTS` streams (then 503); each stream buffers at most
//! [`CLIENT_BUFFER`] polls, and a client that leaves them unread for
//! `TAIL_SLOW_CLIENT_MS` is dropped. Shutdown ends every stream, so draining never
//! waits on one.

use crate::metrics::GatewayMetrics;
use crate::service::QueryService;
use crate::settings::TailSettings;
use actix_web::web::Bytes;
use log_common::error::ApiError;
use log_store::queries::{Conditions, TailCursor, TailPoll};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Polls' worth of messages a stream holds for a client that reads slowly.
pub const CLIENT_BUFFER: usize = 8;
/// The reconnection delay the stream asks `EventSource` to use (SSE `retry:`).
const RECONNECT_MS: u64 = 1_000;
/// After a poll fails, the next waits at least this long.
const ERROR_BACKOFF: Duration = Duration::from_secs(2);
/// An `id:`-only message is sent at most this often when non-matching rows moved
/// the cursor: a resume then re-reads at most this much.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The tail streams of one gateway process.
#[derive(Clone)]
pub struct Tails {
    settings: TailSettings,
    open: Arc<AtomicUsize>,
    closing: watch::Receiver<bool>,
    metrics: GatewayMetrics,
}

/// A place among the `TAIL_MAX_CLIENTS`, given back when the stream ends.
struct Slot {
    open: Arc<AtomicUsize>,
    metrics: GatewayMetrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.tail_clients.dec();
    }
}

impl Tails {
    /// `closing` turns true when the gateway shuts down: every stream then ends.
    pub fn new(
        settings: TailSettings,
        closing: watch::Receiver<bool>,
        metrics: GatewayMetrics,
    ) -> Self {
        Tails {
            settings,
            open: Arc::new(AtomicUsize::new(0)),
            closing,
            metrics,
        }
    }

    pub fn settings(&self) -> &TailSettings {
        &self.settings
    }

    fn take_slot(&self) -> Result<Slot, ApiError> {
        let max = self.settings.max_clients;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            });
        if taken.is_err() {
            self.metrics
                .tail_drops
                .with_label_values(&["too_many_clients"])
                .inc();
            return Err(ApiError::Unavailable {
                message: format!(
                    "{max} tail streams are open, the most this gateway serves (TAIL_MAX_CLIENTS); retry later"
                ),
                retry_after_secs: 5,
            });
        }
        self.metrics.tail_clients.inc();
        Ok(Slot {
            open: self.open.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// Opens a stream from `resume` (or from what is stored now) and returns the
    /// receiving end of its messages. Fails before anything is sent: 503 past the
    /// client limit or when PostgreSQL cannot be read.
    pub async fn open(
        &self,
        service: QueryService,
        conditions: Conditions,
        resume: Option<TailCursor>,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let slot = self.take_slot()?;
        let cursor = match resume {
            Some(cursor) => cursor,
            None => service.tail_start(&self.settings).await?,
        };
        let (sender, receiver) = mpsc::channel(CLIENT_BUFFER);
        let ready = format!(
            "retry: {RECONNECT_MS}\nevent: ready\nid: {id}\ndata: {{\"cursor\":\"{id}\"}}\n\n",
            id = cursor.encode()
        );
        // The channel is new and empty: this cannot be refused for lack of room.
        let _ = sender.try_send(Bytes::from(ready));
        let stream = Stream {
            service,
            conditions,
            cursor,
            sender,
            settings: self.settings.clone(),
            closing: self.closing.clone(),
            metrics: self.metrics.clone(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            stream.follow().await;
        });
        Ok(receiver)
    }
}

/// One client's stream: its filters, its cursor, the channel to its connection.
struct Stream {
    service: QueryService,
    conditions: Conditions,
    cursor: TailCursor,
    sender: mpsc::Sender<Bytes>,
    settings: TailSettings,
    closing: watch::Receiver<bool>,
    metrics: GatewayMetrics,
}

/// Why a stream stopped.
enum End {
    /// The client went away, or the gateway is shutting down.
    Closed,
    /// The client left its buffer full for `TAIL_SLOW_CLIENT_MS`.
    Slow,
}

impl Stream {
    async fn follow(mut self) {
        let end = self.run().await;
        if let End::Slow = end {
            self.metrics
                .tail_drops
                .with_label_values(&["slow_client"])
                .inc();
            tracing::info!(
                limit_ms = self.settings.slow_client_ms,
                "tail client dropped: it left its buffer full past TAIL_SLOW_CLIENT_MS"
            );
        }
    }

    async fn run(&mut self) -> End {
        let poll_every = Duration::from_millis(self.settings.poll_ms.max(1));
        let heartbeat_every = Duration::from_secs(self.settings.heartbeat_secs.max(1));
        let mut last_write = Instant::now();
        let mut sent_cursor = self.cursor.clone();
        let mut wait = poll_every;
        let mut failing = false;
        loop {
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = self.closing.changed() => return End::Closed,
                    () = self.sender.closed() => return End::Closed,
                }
            }
            if *self.closing.borrow() {
                return End::Closed;
            }
            let polled = self
                .service
                .tail_poll(&self.settings, self.cursor.clone(), self.conditions.clone())
                .await;
            let mut message = String::new();
            match polled {
                Ok(poll) => {
                    failing = false;
                    wait = if poll.more {
                        Duration::ZERO
                    } else {
                        poll_every
                    };
                    let sent = poll.events.len();
                    if sent > 0 {
                        // Rows past the last event that did not match are covered by
                        // the progress message below.
                        sent_cursor = write_events(&mut message, &self.cursor, &poll);
                        self.metrics.tail_events_sent.inc_by(sent as u64);
                    }
                    self.cursor = poll.cursor;
                }
                Err(error) => {
                    wait = ERROR_BACKOFF.max(poll_every);
                    if !failing {
                        failing = true;
                        let body = serde_json::json!({ "message": error.to_string() });
                        let _ = write!(message, "event: tail-error\ndata: {body}\n\n");
                    }
                }
            }
            let since_write = last_write.elapsed();
            if sent_cursor != self.cursor && (since_write >= PROGRESS_EVERY || !message.is_empty())
            {
                let _ = write!(message, "id: {}\n\n", self.cursor.encode());
                sent_cursor = self.cursor.clone();
            } else if message.is_empty() && since_write >= heartbeat_every {
                message.push_str(": heartbeat\n\n");
            }
            if message.is_empty() {
                continue;
            }
            let send = self.sender.send(Bytes::from(message));
            match tokio::time::timeout(Duration::from_millis(self.settings.slow_client_ms), send)
                .await
            {
                Ok(Ok(())) => last_write = Instant::now(),
                Ok(Err(_)) => return End::Closed,
                Err(_) => return End::Slow,
            }
        }
    }
}

/// Appends one SSE message per event of `poll`, each with the cursor just past it
/// (`from` moved by the events before it). Returns the last event's cursor.
fn write_events(out: &mut String, from: &TailCursor, poll: &TailPoll) -> TailCursor {
    let mut position = from.clone();
    for tail_event in &poll.events {
        position.advance(tail_event.partition, tail_event.offset + 1);
        let data = serde_json::to_string(&tail_event.event).unwrap_or_default();
        let _ = write!(out, "id: {}\ndata: {data}\n\n", position.encode());
    }
    position
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_common::event::LogEvent;
    use log_store::queries::TailEvent;

    fn event(message: &str) -> LogEvent {
        serde_json::from_value(serde_json::json!({
            "level": "INFO", "message": message, "source": "s",
            "timestamp": "2024-01-01T00:00:00Z",
            "id": uuid::Uuid::now_v7(),
        }))
        .expect("a valid event")
    }

    #[test]
    fn each_event_carries_the_cursor_just_past_it() {
        let from = TailCursor::decode("0:10.1:20").expect("cursor");
        let poll = TailPoll {
            events: vec![
                TailEvent {
                    partition: 1,
                    offset: 25,
                    event: event("a"),
                },
                TailEvent {
                    partition: 0,
                    offset: 12,
                    event: event("b\nwith a newline"),
                },
            ],
            cursor: TailCursor::decode("0:40.1:40").expect("cursor"),
            more: false,
        };
        let mut out = String::new();
        let last = write_events(&mut out, &from, &poll);
        assert_eq!(last.encode(), "0:13.1:26");
        let messages: Vec<&str> = out.split("\n\n").filter(|m| !m.is_empty()).collect();
        assert_eq!(messages.len(), 2, "{out}");
        assert!(messages[0].starts_with("id: 0:10.1:26\ndata: {"), "{out}");
        assert!(messages[1].starts_with("id: 0:13.1:26\ndata: {"), "{out}");
        // A newline in a message is escaped by JSON, so a data line never splits.
        assert!(messages.iter().all(|m| m.lines().count() == 2), "{out}");
    }
}
