//! The live tail: the rows stored past each stream's cursor (see
//! `log_store::queries::tail` for why per-partition offsets make it gap- and
//! duplicate-free), written as Server-Sent Events.
//!
//! One reader, the [`Hub`], polls PostgreSQL every `TAIL_POLL_MS` for everything
//! stored since its last poll, turns each event into JSON once, and publishes the lot
//! as a [`Chunk`] on a broadcast channel. Each stream filters chunks in memory by
//! level, source, correlation id and trace id: PostgreSQL reads each new row once however many
//! streams are open. A stream whose cursor is behind the hub's (a resume, or a stream
//! that fell more than [`HUB_CHUNKS`] chunks behind) catches up with polls of its own,
//! filtered in SQL, until it is level again. A stream with full text (`query`) always
//! polls on its own: `websearch_to_tsquery` is PostgreSQL's to evaluate.
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
use log_common::event::LogEvent;
use log_store::queries::{Conditions, TailCursor, TopicPartition};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// Polls' worth of messages a stream holds for a client that reads slowly.
pub const CLIENT_BUFFER: usize = 8;
/// Chunks the hub's channel keeps for a stream that is busy; one further behind
/// catches up on its own. The channel holds on to its last chunks, so this bounds what
/// the tail keeps in memory (a chunk is at most `TAIL_BATCH` events a partition).
pub const HUB_CHUNKS: usize = 16;
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
    service: QueryService,
    hub: broadcast::Sender<Arc<Chunk>>,
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
    /// Starts the hub. `closing` turns true when the gateway shuts down: the hub and
    /// every stream then end.
    pub fn new(
        settings: TailSettings,
        closing: watch::Receiver<bool>,
        metrics: GatewayMetrics,
        service: QueryService,
    ) -> Self {
        let (hub, _) = broadcast::channel(HUB_CHUNKS);
        tokio::spawn(
            Hub {
                service: service.clone(),
                settings: settings.clone(),
                sender: hub.clone(),
                closing: closing.clone(),
            }
            .run(),
        );
        Tails {
            settings,
            open: Arc::new(AtomicUsize::new(0)),
            closing,
            metrics,
            service,
            hub,
        }
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
        conditions: Conditions,
        resume: Option<TailCursor>,
    ) -> Result<mpsc::Receiver<Bytes>, ApiError> {
        let slot = self.take_slot()?;
        let cursor = match resume {
            Some(cursor) => cursor,
            None => self.service.tail_start(&self.settings).await?,
        };
        let (sender, receiver) = mpsc::channel(CLIENT_BUFFER);
        let ready = format!(
            "retry: {RECONNECT_MS}\nevent: ready\nid: {id}\ndata: {{\"cursor\":\"{id}\"}}\n\n",
            id = cursor.encode()
        );
        // The channel is new and empty: this cannot be refused for lack of room.
        let _ = sender.try_send(Bytes::from(ready));
        // Subscribed before the first poll, so no chunk published after it is missed.
        let source = if conditions.text.is_some() {
            Source::OwnPolls
        } else {
            Source::Hub {
                chunks: self.hub.subscribe(),
                catching_up: true,
            }
        };
        let stream = Stream {
            service: self.service.clone(),
            conditions,
            cursor,
            source,
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
    source: Source,
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
        let heartbeat_every = Duration::from_secs(self.settings.heartbeat_secs.max(1));
        let mut last_write = Instant::now();
        let mut sent_cursor = self.cursor.clone();
        let mut failing = false;
        let mut wait = Duration::ZERO;
        loop {
            let step = match self.next_step(wait).await {
                Some(step) => step,
                None => return End::Closed,
            };
            let mut message = String::new();
            match step {
                Step::Read {
                    events,
                    cursor,
                    more,
                } => {
                    failing = false;
                    wait = if more {
                        Duration::ZERO
                    } else {
                        self.poll_every()
                    };
                    if !events.is_empty() {
                        // Rows past the last event that did not match are covered by
                        // the progress message below.
                        sent_cursor = write_events(&mut message, &self.cursor, &events);
                        self.metrics.tail_events_sent.inc_by(events.len() as u64);
                    }
                    self.cursor.advance_to(&cursor);
                }
                Step::Failed(reason) => {
                    wait = ERROR_BACKOFF.max(self.poll_every());
                    if !failing {
                        failing = true;
                        let body = serde_json::json!({ "message": reason });
                        let _ = write!(message, "event: tail-error\ndata: {body}\n\n");
                    }
                }
                Step::Idle => wait = self.poll_every(),
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

    fn poll_every(&self) -> Duration {
        Duration::from_millis(self.settings.poll_ms.max(1))
    }

    /// What comes next for this stream, after at most `wait`; `None` when it must end
    /// (the client left, or the gateway is shutting down).
    async fn next_step(&mut self, wait: Duration) -> Option<Step> {
        let poll_own = match &mut self.source {
            Source::OwnPolls => true,
            Source::Hub { catching_up, .. } => *catching_up,
        };
        if poll_own {
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = self.closing.changed() => return None,
                    () = self.sender.closed() => return None,
                }
            }
            if *self.closing.borrow() {
                return None;
            }
            let polled = self
                .service
                .tail_poll(&self.settings, self.cursor.clone(), self.conditions.clone())
                .await;
            return Some(match polled {
                Ok(poll) => {
                    if let Source::Hub { catching_up, .. } = &mut self.source {
                        // Level with what is stored: the hub's chunks take over.
                        *catching_up = poll.more;
                    }
                    Step::Read {
                        events: poll.events.into_iter().map(SharedEvent::from).collect(),
                        cursor: poll.cursor,
                        more: poll.more,
                    }
                }
                Err(error) => Step::Failed(error.to_string()),
            });
        }
        let Source::Hub {
            chunks,
            catching_up,
        } = &mut self.source
        else {
            return Some(Step::Idle);
        };
        // Long enough that an idle stream still gets its heartbeats and progress.
        let idle = PROGRESS_EVERY;
        let received = tokio::select! {
            received = chunks.recv() => received,
            () = tokio::time::sleep(idle) => return Some(Step::Idle),
            _ = self.closing.changed() => return None,
            () = self.sender.closed() => return None,
        };
        Some(match received {
            Ok(chunk) => match chunk.as_ref() {
                Chunk::Failed(reason) => Step::Failed(reason.clone()),
                Chunk::Read { from, to, events } => {
                    if from.is_ahead_of(&self.cursor) {
                        // The hub has read past rows this stream has not seen (it
                        // started later, or this stream resumed from further back).
                        *catching_up = true;
                        Step::poll_at_once()
                    } else {
                        let events = events
                            .iter()
                            .filter(|e| e.offset >= self.cursor.next_offset(e.partition))
                            .filter(|e| matches(&self.conditions, &e.event))
                            .cloned()
                            .collect();
                        Step::Read {
                            events,
                            cursor: to.clone(),
                            more: false,
                        }
                    }
                }
            },
            Err(broadcast::error::RecvError::Lagged(_)) => {
                *catching_up = true;
                Step::poll_at_once()
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        })
    }
}

/// Where a stream's events come from.
enum Source {
    /// Polls of its own, filtered in SQL (full text).
    OwnPolls,
    /// The hub's chunks, filtered here; polls of its own while `catching_up`.
    Hub {
        chunks: broadcast::Receiver<Arc<Chunk>>,
        catching_up: bool,
    },
}

/// One step of a stream.
enum Step {
    /// Matching events, and the cursor past everything read.
    Read {
        events: Vec<SharedEvent>,
        cursor: TailCursor,
        more: bool,
    },
    /// PostgreSQL could not be read.
    Failed(String),
    /// Nothing new yet.
    Idle,
}

impl Step {
    /// Nothing read (the cursor stays: moving to an empty one moves nothing), and
    /// the next poll, a catch-up of the stream's own, at once.
    fn poll_at_once() -> Step {
        Step::Read {
            events: Vec::new(),
            cursor: TailCursor::default(),
            more: true,
        }
    }
}

/// An event as the tail sends it: where it was stored, and its JSON, made once.
#[derive(Debug, Clone)]
pub struct SharedEvent {
    pub partition: TopicPartition,
    pub offset: i64,
    pub event: Arc<LogEvent>,
    pub json: Arc<str>,
}

impl From<log_store::queries::TailEvent> for SharedEvent {
    fn from(e: log_store::queries::TailEvent) -> Self {
        let json = serde_json::to_string(&e.event).unwrap_or_default();
        SharedEvent {
            partition: e.partition,
            offset: e.offset,
            event: Arc::new(e.event),
            json: json.into(),
        }
    }
}

/// What the hub publishes.
#[derive(Debug)]
pub enum Chunk {
    /// Every event stored from `from` up to `to`.
    Read {
        from: TailCursor,
        to: TailCursor,
        events: Vec<SharedEvent>,
    },
    Failed(String),
}

/// `conditions` (without full text) evaluated here, as the SQL of
/// `Conditions::and_to` would: any of the levels, the exact source, correlation id and
/// trace id.
fn matches(conditions: &Conditions, event: &LogEvent) -> bool {
    (conditions.levels.is_empty() || conditions.levels.contains(&event.level))
        && conditions
            .source
            .as_deref()
            .is_none_or(|source| source == event.source.as_str())
        && conditions
            .correlation_id
            .as_deref()
            .is_none_or(|id| event.correlation_id.as_deref() == Some(id))
        && conditions
            .trace_id
            .as_deref()
            .is_none_or(|id| event.trace_id.as_deref() == Some(id))
}

/// The one reader of new rows for every stream without full text.
struct Hub {
    service: QueryService,
    settings: TailSettings,
    sender: broadcast::Sender<Arc<Chunk>>,
    closing: watch::Receiver<bool>,
}

impl Hub {
    async fn run(mut self) {
        let poll_every = Duration::from_millis(self.settings.poll_ms.max(1));
        // None while no stream listens: the next listener starts it at what is
        // stored then (streams further back catch up on their own).
        let mut cursor: Option<TailCursor> = None;
        // After a (re)start the first chunk is published even when empty (and even
        // when the first poll fails): a stream whose cursor is behind its `from`
        // learns from it to catch up.
        let mut announce = false;
        let mut wait = poll_every;
        loop {
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = self.closing.changed() => return,
                }
            }
            if *self.closing.borrow() {
                return;
            }
            wait = poll_every;
            if self.sender.receiver_count() == 0 {
                cursor = None;
                continue;
            }
            if cursor.is_none() {
                announce = true;
            }
            let from = match cursor.take() {
                Some(from) => from,
                None => match self.service.tail_start(&self.settings).await {
                    Ok(from) => from,
                    Err(error) => {
                        let _ = self.sender.send(Arc::new(Chunk::Failed(error.to_string())));
                        wait = ERROR_BACKOFF.max(poll_every);
                        continue;
                    }
                },
            };
            let polled = self
                .service
                .tail_poll(&self.settings, from.clone(), Conditions::default())
                .await;
            match polled {
                Ok(poll) => {
                    if poll.more {
                        wait = Duration::ZERO;
                    }
                    let to = poll.cursor.clone();
                    if to != from || announce {
                        announce = false;
                        let events = poll.events.into_iter().map(SharedEvent::from).collect();
                        let chunk = Chunk::Read {
                            from,
                            to: to.clone(),
                            events,
                        };
                        let _ = self.sender.send(Arc::new(chunk));
                    }
                    cursor = Some(to);
                }
                Err(error) => {
                    let _ = self.sender.send(Arc::new(Chunk::Failed(error.to_string())));
                    wait = ERROR_BACKOFF.max(poll_every);
                    cursor = Some(from);
                }
            }
        }
    }
}

/// Appends one SSE message per event, each with the cursor just past it (`from`
/// moved by the events before it). Returns the last event's cursor.
fn write_events(out: &mut String, from: &TailCursor, events: &[SharedEvent]) -> TailCursor {
    let mut position = from.clone();
    for event in events {
        position.advance(event.partition, event.offset + 1);
        let _ = write!(out, "id: {}\ndata: {}\n\n", position.encode(), event.json);
    }
    position
}

#[cfg(test)]
mod tests {
    use super::*;
    use log_common::domain::Lane;
    use log_common::event::Level;
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
        let events: Vec<SharedEvent> = [
            (Lane::Normal, 1, 25, "a"),
            (Lane::Normal, 0, 12, "b\nwith a newline"),
            (Lane::Priority, 0, 3, "c"),
        ]
        .into_iter()
        .map(|(lane, partition, offset, message)| {
            SharedEvent::from(TailEvent {
                partition: TopicPartition::new(lane, partition),
                offset,
                event: event(message),
            })
        })
        .collect();
        let mut out = String::new();
        let last = write_events(&mut out, &from, &events);
        assert_eq!(last.encode(), "0:13.1:26.p0:4");
        let messages: Vec<&str> = out.split("\n\n").filter(|m| !m.is_empty()).collect();
        assert_eq!(messages.len(), 3, "{out}");
        assert!(messages[0].starts_with("id: 0:10.1:26\ndata: {"), "{out}");
        assert!(messages[1].starts_with("id: 0:13.1:26\ndata: {"), "{out}");
        assert!(
            messages[2].starts_with("id: 0:13.1:26.p0:4\ndata: {"),
            "{out}"
        );
        // A newline in a message is escaped by JSON, so a data line never splits.
        assert!(messages.iter().all(|m| m.lines().count() == 2), "{out}");
    }

    #[test]
    fn the_in_memory_filter_agrees_with_the_sql_one() {
        let mut e: LogEvent = serde_json::from_value(serde_json::json!({
            "level": "ERROR", "message": "m", "source": "checkout",
            "correlationId": "c-1", "traceId": "t-1", "timestamp": "2024-01-01T00:00:00Z",
            "id": uuid::Uuid::now_v7(),
        }))
        .expect("event");
        let none = Conditions::default();
        assert!(matches(&none, &e));
        let levels = Conditions {
            levels: vec![Level::Warn, Level::Error],
            ..Conditions::default()
        };
        assert!(matches(&levels, &e));
        let other_level = Conditions {
            levels: vec![Level::Info],
            ..Conditions::default()
        };
        assert!(!matches(&other_level, &e));
        let source = Conditions {
            source: Some("checkout".to_owned()),
            ..Conditions::default()
        };
        assert!(matches(&source, &e));
        let other_source = Conditions {
            source: Some("Checkout".to_owned()),
            ..Conditions::default()
        };
        assert!(!matches(&other_source, &e));
        let correlation = Conditions {
            correlation_id: Some("c-1".to_owned()),
            ..Conditions::default()
        };
        assert!(matches(&correlation, &e));
        let trace = Conditions {
            trace_id: Some("t-1".to_owned()),
            ..Conditions::default()
        };
        assert!(matches(&trace, &e));
        let other_trace = Conditions {
            trace_id: Some("T-1".to_owned()),
            ..Conditions::default()
        };
        assert!(!matches(&other_trace, &e), "exact, case and all");
        let trace_as_correlation = Conditions {
            correlation_id: Some("t-1".to_owned()),
            ..Conditions::default()
        };
        assert!(
            !matches(&trace_as_correlation, &e),
            "a trace id is not a correlation id"
        );
        let both = Conditions {
            correlation_id: Some("c-1".to_owned()),
            trace_id: Some("t-1".to_owned()),
            ..Conditions::default()
        };
        assert!(matches(&both, &e));
        e.correlation_id = None;
        assert!(
            !matches(&correlation, &e),
            "no correlation id never matches one"
        );
        assert!(!matches(&both, &e), "every filter given must match");
        assert!(matches(&trace, &e));
        e.trace_id = None;
        assert!(!matches(&trace, &e), "no trace id never matches one");
    }
}
