//! The syslog listeners: what routers, firewalls, appliances and Unix daemons speak.
//! `SYSLOG_TCP_ADDR` and `SYSLOG_UDP_ADDR` turn them on (off by default).
//!
//! Each message is parsed ([`parse`]) into the agents' [`Record`] and takes their path
//! ([`publish_many_as`]): validation, the rate limit (per peer address, `ip:…`, as for
//! HTTP clients without keys), the breaker, the priority lane, Kafka. Messages are sent
//! on in batches of up to [`BATCH`] or after [`LINGER`].
//!
//! **Delivery.** Plain syslog has no acknowledgement. Over TCP the listener pushes back
//! instead of dropping: while the rate limit or Kafka refuses a batch, it stops reading
//! that connection (past the one batch it reads while another is in flight) and tries
//! the batch again after the `Retry-After` it was given, so a sender's own queue holds
//! what waits. What is lost is what a sender had written when
//! its connection broke, or a batch still waiting when the producer stops: at most once
//! per connection loss. Over UDP nothing pushes back: a refused batch is dropped and
//! counted. Every message is counted in `log_syslog_messages_total{transport,outcome}`:
//! `accepted` (Kafka acknowledged it), `invalid` (it parsed but failed validation, e.g.
//! a time too far in the future), `malformed` (not syslog), `oversized` (a frame over
//! [`MAX_FRAME`], dropped whole) or `dropped` (refused or undelivered, UDP, shutdown).
//! Syslog carries no id, so each message gets a new one: a sender that sends a message
//! twice stores it twice. RELP, rsyslog's acknowledged protocol, would allow better; no
//! well-kept Rust crate speaks it today, so it is left for later.
//!
//! **TCP framing** (RFC 6587), chosen per message: a message that starts with a digit
//! is octet-counted (`LEN SP MSG`, `logger --octet-count`, rsyslog's
//! `TCP_Framing="octet-counted"`), any other ends at a line feed (the common default).

pub mod parse;

use crate::routes::agents::Record;
use crate::routes::ingest::{publish_many_as, IngestState, Outcome};
use actix_web::web;
use chrono::Utc;
use log_common::error::ApiError;
use log_common::ids::mint_event_id;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The largest message kept; a longer frame is dropped whole and counted.
pub const MAX_FRAME: usize = 64 * 1024;
/// Messages sent on to Kafka at once.
pub const BATCH: usize = 1_000;
/// How long a message waits for its batch to fill.
pub const LINGER: Duration = Duration::from_millis(50);
/// How long the producer's stop waits for the listeners to send what they hold.
const DRAIN: Duration = Duration::from_secs(5);

/// What becomes of a message: the `outcome` label of `log_syslog_messages_total`.
pub const OUTCOMES: [&str; 5] = ["accepted", "invalid", "malformed", "oversized", "dropped"];

/// A listener's transport, the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Transport::Tcp => "syslog_tcp",
            Transport::Udp => "syslog_udp",
        }
    }
}

/// The running listeners: their addresses, and how to stop them.
pub struct SyslogListeners {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl SyslogListeners {
    /// Binds the listeners asked for (port 0 picks a free one) and starts serving.
    pub async fn start(
        tcp: Option<&str>,
        udp: Option<&str>,
        state: web::Data<IngestState>,
    ) -> anyhow::Result<SyslogListeners> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let (mut tcp_address, mut udp_address) = (None, None);
        if let Some(address) = tcp {
            let listener = TcpListener::bind(address).await?;
            let bound = listener.local_addr()?;
            tracing::info!(address = %bound, "syslog listening on TCP");
            tcp_address = Some(bound);
            tasks.spawn(serve_tcp(listener, state.clone(), stopped.clone()));
        }
        if let Some(address) = udp {
            let socket = UdpSocket::bind(address).await?;
            let bound = socket.local_addr()?;
            tracing::info!(address = %bound, "syslog listening on UDP");
            udp_address = Some(bound);
            tasks.spawn(serve_udp(socket, state, stopped));
        }
        Ok(SyslogListeners {
            tcp: tcp_address,
            udp: udp_address,
            stop,
            tasks,
        })
    }

    /// Stops accepting and reading, sends on what each listener holds, waits for that
    /// at most [`DRAIN`].
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(DRAIN, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("syslog listeners did not drain in time; what they held is dropped");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    state: web::Data<IngestState>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, state.clone(), stopped.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "syslog TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stopped.changed() => break,
        }
        // Reap finished connections so the set does not grow with every one.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// One TCP sender: frames read, parsed and sent on in batches until it hangs up or the
/// producer stops.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: web::Data<IngestState>,
    mut stopped: watch::Receiver<bool>,
) {
    let client = format!("ip:{}", peer.ip());
    let mut framer = Framer::default();
    let mut batch = Vec::new();
    let mut lingering = Linger::default();
    let mut in_flight: Option<tokio::task::JoinHandle<()>> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout(lingering.left(), stream.read(&mut buffer)) => read,
            _ = stopped.changed() => break,
        };
        match read {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => {
                framer.push(&buffer[..n]);
                while let Some(frame) = framer.next_frame() {
                    take_frame(frame, Transport::Tcp, &state, &mut batch);
                }
                lingering.start_if(!batch.is_empty());
                if batch.len() < BATCH {
                    continue;
                }
            }
            // The batch waited long enough.
            Err(_) => {}
        }
        lingering = Linger::default();
        if batch.is_empty() {
            continue;
        }
        // One batch in flight while the next is read: its sender is not held up by
        // Kafka's round trip, and the connection still holds at most two batches
        // (it waits for the one in flight before it sends the next, in order).
        if let Some(previous) = in_flight.take() {
            let _ = previous.await;
        }
        let full = std::mem::take(&mut batch);
        let (sender, ingest, mut stop) = (client.clone(), state.clone(), stopped.clone());
        in_flight = Some(tokio::spawn(async move {
            send_tcp(&sender, full, &ingest, &mut stop).await;
        }));
    }
    if let Some(previous) = in_flight {
        let _ = previous.await;
    }
    send_tcp(&client, batch, &state, &mut stopped).await;
}

/// When the oldest message held was received, so a trickle is sent on within [`LINGER`].
#[derive(Default)]
struct Linger(Option<std::time::Instant>);

impl Linger {
    fn start_if(&mut self, holding: bool) {
        if holding && self.0.is_none() {
            self.0 = Some(std::time::Instant::now());
        }
    }

    /// How long to wait for more before sending what is held.
    fn left(&self) -> Duration {
        self.0.map_or(Duration::from_secs(3600), |since| {
            LINGER.saturating_sub(since.elapsed())
        })
    }
}

/// Parses a frame into the batch, counting what is not a message.
fn take_frame(
    frame: Frame,
    transport: Transport,
    state: &IngestState,
    batch: &mut Vec<parse::SyslogRecord>,
) {
    match frame {
        Frame::Message(bytes) => match parse::parse(&bytes, Utc::now()) {
            Ok(record) => batch.push(record),
            Err(reason) => {
                count(state, transport, "malformed", 1);
                tracing::debug!(%reason, "a syslog message that does not parse; skipped");
            }
        },
        Frame::Oversized => count(state, transport, "oversized", 1),
        Frame::Malformed => count(state, transport, "malformed", 1),
    }
}

/// Sends a TCP batch on, [`BATCH`] at a time, pushing back (not reading) while it is
/// refused for a while.
async fn send_tcp(
    client: &str,
    batch: Vec<parse::SyslogRecord>,
    state: &IngestState,
    stopped: &mut watch::Receiver<bool>,
) {
    let records: Vec<Record> = batch.into_iter().map(into_record).collect();
    for chunk in records.chunks(BATCH) {
        loop {
            match publish(client, Transport::Tcp, chunk.to_vec(), state).await {
                Ok(()) => break,
                Err(retry_after) if !*stopped.borrow() => {
                    tokio::select! {
                        () = tokio::time::sleep(retry_after) => {}
                        _ = stopped.changed() => {}
                    }
                }
                Err(_) => {
                    count(state, Transport::Tcp, "dropped", chunk.len());
                    break;
                }
            }
        }
    }
}

async fn serve_udp(
    socket: UdpSocket,
    state: web::Data<IngestState>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut batches: HashMap<IpAddr, Vec<parse::SyslogRecord>> = HashMap::new();
    let mut held = 0usize;
    let mut lingering = Linger::default();
    let mut buffer = vec![0u8; MAX_FRAME + 1];
    loop {
        let received = tokio::select! {
            received = tokio::time::timeout(lingering.left(), socket.recv_from(&mut buffer)) => received,
            _ = stopped.changed() => break,
        };
        if let Ok(Ok((n, peer))) = received {
            if n > MAX_FRAME {
                count(&state, Transport::Udp, "oversized", 1);
            } else {
                let mut batch = Vec::new();
                let datagram = Frame::Message(buffer[..n].to_vec());
                take_frame(datagram, Transport::Udp, &state, &mut batch);
                held += batch.len();
                batches.entry(peer.ip()).or_default().extend(batch);
            }
            lingering.start_if(held > 0);
            if held < BATCH {
                continue;
            }
        }
        lingering = Linger::default();
        send_udp(std::mem::take(&mut batches), &state).await;
        held = 0;
    }
    send_udp(batches, &state).await;
}

/// Sends each peer's UDP messages on; a refused batch is dropped and counted.
async fn send_udp(batches: HashMap<IpAddr, Vec<parse::SyslogRecord>>, state: &IngestState) {
    for (peer, batch) in batches {
        let records: Vec<Record> = batch.into_iter().map(into_record).collect();
        for chunk in records.chunks(BATCH) {
            let client = format!("ip:{peer}");
            if publish(&client, Transport::Udp, chunk.to_vec(), state)
                .await
                .is_err()
            {
                count(state, Transport::Udp, "dropped", chunk.len());
            }
        }
    }
}

fn into_record(record: parse::SyslogRecord) -> Record {
    // Timed here rather than on parsing the event, so the id names the event's time.
    let timestamp = record.timestamp.unwrap_or_else(Utc::now);
    Record {
        id: mint_event_id(timestamp),
        level: record.level,
        message: record.message,
        source: record.source,
        timestamp: Some(timestamp),
        trace_id: None,
        metadata: record.metadata,
    }
}

/// Publishes a batch (at most [`BATCH`]), counting each message's outcome; `Err` with
/// the time to wait when it was refused for now (rate limit, breaker, Kafka took none).
async fn publish(
    client: &str,
    transport: Transport,
    records: Vec<Record>,
    state: &IngestState,
) -> Result<(), Duration> {
    let total = records.len();
    let items = records
        .into_iter()
        .enumerate()
        .map(|(i, record)| (i, Ok(record.into_event_json())))
        .collect();
    match publish_many_as(client, state, transport.endpoint(), items, BATCH).await {
        Ok(outcomes) => {
            let mut by_outcome: HashMap<&str, usize> = HashMap::new();
            for (_, outcome) in &outcomes {
                let name = match outcome {
                    Outcome::Stored(_) => "accepted",
                    Outcome::Invalid(_) => "invalid",
                    Outcome::Undelivered(..) => "dropped",
                };
                *by_outcome.entry(name).or_default() += 1;
            }
            for (name, n) in by_outcome {
                count(state, transport, name, n);
            }
            Ok(())
        }
        Err(
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable {
                retry_after_secs, ..
            },
        ) => Err(Duration::from_secs(retry_after_secs.max(1))),
        Err(e) => {
            // Not a refusal that passes (the batch itself was refused): trying again
            // would refuse it again.
            tracing::warn!(error = %e, "a syslog batch was refused; dropped");
            count(state, transport, "dropped", total);
            Ok(())
        }
    }
}

fn count(state: &IngestState, transport: Transport, outcome: &str, n: usize) {
    state
        .metrics
        .syslog_messages
        .with_label_values(&[transport.as_str(), outcome])
        .inc_by(n as u64);
}

/// What a TCP stream's bytes are cut into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A frame over [`MAX_FRAME`], dropped.
    Oversized,
    /// An octet count that is not one (`12x…`); skipped to the next line feed.
    Malformed,
}

/// Cuts a TCP stream into messages (RFC 6587), whatever pieces its bytes arrive in.
#[derive(Debug, Default)]
pub struct Framer {
    buffer: Vec<u8>,
    /// Bytes of an oversized octet-counted frame still to pass over.
    skip_bytes: usize,
    /// Passing over an oversized or malformed frame up to its line feed.
    skip_line: bool,
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// True when no partial frame is waiting for more bytes.
    pub fn is_idle(&self) -> bool {
        self.buffer.is_empty() && self.skip_bytes == 0 && !self.skip_line
    }

    /// The next whole frame, if the bytes so far hold one.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.skip_bytes > 0 {
            let n = self.skip_bytes.min(self.buffer.len());
            self.buffer.drain(..n);
            self.skip_bytes -= n;
            if self.skip_bytes > 0 {
                return None;
            }
        }
        if self.skip_line {
            let end = self.buffer.iter().position(|&b| b == b'\n');
            let Some(end) = end else {
                self.buffer.clear();
                return None;
            };
            self.buffer.drain(..=end);
            self.skip_line = false;
        }
        // Line feeds between frames (a sender ending octet-counted frames with one) are
        // no frames.
        let blank = self
            .buffer
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        self.buffer.drain(..blank);
        if self.buffer.first()?.is_ascii_digit() {
            self.octet_counted()
        } else {
            self.line()
        }
    }

    fn octet_counted(&mut self) -> Option<Frame> {
        let digits = self
            .buffer
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == self.buffer.len() && digits <= 7 {
            return None;
        }
        let len = std::str::from_utf8(&self.buffer[..digits])
            .ok()
            .and_then(|d| d.parse::<usize>().ok());
        match (len, self.buffer.get(digits)) {
            (Some(len), Some(b' ')) if digits <= 7 => {
                let start = digits + 1;
                if len > MAX_FRAME {
                    self.buffer.drain(..start);
                    self.skip_bytes = len;
                    return Some(Frame::Oversized);
                }
                if self.buffer.len() < start + len {
                    return None;
                }
                let frame = self.buffer[start..start + len].to_vec();
                self.buffer.drain(..start + len);
                Some(Frame::Message(frame))
            }
            _ => {
                self.skip_line = true;
                Some(Frame::Malformed)
            }
        }
    }

    fn line(&mut self) -> Option<Frame> {
        match self.buffer.iter().position(|&b| b == b'\n') {
            Some(end) if end > MAX_FRAME => {
                self.buffer.drain(..=end);
                Some(Frame::Oversized)
            }
            Some(end) => {
                let frame = self.buffer[..end].to_vec();
                self.buffer.drain(..=end);
                Some(Frame::Message(frame))
            }
            None if self.buffer.len() > MAX_FRAME => {
                self.buffer.clear();
                self.skip_line = true;
                Some(Frame::Oversized)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(pieces: &[&[u8]]) -> Vec<Frame> {
        let mut framer = Framer::default();
        let mut frames = Vec::new();
        for piece in pieces {
            framer.push(piece);
            while let Some(frame) = framer.next_frame() {
                frames.push(frame);
            }
        }
        frames
    }

    fn message(text: &str) -> Frame {
        Frame::Message(text.as_bytes().to_vec())
    }

    #[test]
    fn octet_counted_and_line_feed_frames_come_whole_whatever_the_pieces() {
        let stream = b"11 <13>1 - a b\n<13>plain line\n5 <1>xy3 <2>";
        let whole = frames_of(&[stream]);
        assert_eq!(
            whole,
            [
                message("<13>1 - a b"),
                message("<13>plain line"),
                message("<1>xy"),
                message("<2>")
            ]
        );
        // Every way of cutting the stream in two gives the same frames.
        for cut in 0..stream.len() {
            assert_eq!(
                frames_of(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        // A line without its line feed is not a frame yet.
        let mut framer = Framer::default();
        framer.push(b"<13>no end yet");
        assert_eq!(framer.next_frame(), None);
        assert!(!framer.is_idle());
    }

    #[test]
    fn oversized_and_malformed_frames_are_counted_and_the_stream_goes_on() {
        let big = vec![b'x'; MAX_FRAME + 1];
        let mut counted = format!("{} ", big.len()).into_bytes();
        counted.extend_from_slice(&big);
        counted.extend_from_slice(b"4 <1>a");
        assert_eq!(
            frames_of(&[&counted[..1000], &counted[1000..]]),
            [Frame::Oversized, message("<1>a")]
        );
        let mut line = big.clone();
        line.extend_from_slice(b"\n<2>next\n");
        assert_eq!(
            frames_of(&[&line[..10], &line[10..]]),
            [Frame::Oversized, message("<2>next")]
        );
        assert_eq!(
            frames_of(&[b"12x <1>bad\n<3>good\n"]),
            [Frame::Malformed, message("<3>good")]
        );
        assert_eq!(
            frames_of(&[b"99999999 <1>too long a count\n<3>good\n"]),
            [Frame::Malformed, message("<3>good")]
        );
    }
}
