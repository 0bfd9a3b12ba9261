//! Admission control: a bound on the request bytes the producer holds at once.
//!
//! The rate limiter is per client; this is the bound for all of them together. A
//! request reserves its body size before the body is read and keeps it until its answer
//! is sent, covering the parsed events and the Kafka queue behind them. When the
//! reservation does not fit, the request waits for room in arrival order, at most
//! `INGEST_ADMISSION_WAIT_MS`, and then gets a 503 with `Retry-After` and the connection
//! closed: a burst queues briefly, a flood costs bounded memory and prompt refusals
//! instead of piling up.
//!
//! A compressed body cannot say beforehand how large it will be. Reserving the route's
//! maximum for it (16 MiB) let only two gzip or zstd requests in at a time under the
//! default 32 MiB, whatever their size, and held the producer to about one core. Such a
//! body now reserves its compressed length, then is inflated here, before its route,
//! and its reservation grows with the inflated bytes ([`inflate`]); the route's limit
//! still stops a bomb at 16 MiB inflated.

use crate::metrics::ProducerMetrics;
use crate::settings::AdmissionSettings;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use actix_web::http::{ConnectionType, Method};
use actix_web::middleware::Next;
use actix_web::web;
use actix_web::HttpMessage;
use futures::StreamExt;
use log_common::error::ApiError;
use log_common::event::MAX_BATCH_BODY_BYTES;
use prometheus::IntGauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB: a semaphore's permits are `u32`.
const UNIT: usize = 1024;

fn units_in_mib(mib: u32) -> u32 {
    mib * (1024 * 1024 / UNIT) as u32
}

pub struct InflightBytes {
    permits: Arc<Semaphore>,
    limit_mib: u32,
    wait: Duration,
    /// `producer_inflight_request_bytes`: what is reserved right now.
    gauge: IntGauge,
    /// `producer_admission_waiting_requests`: how many wait for room right now.
    waiting: IntGauge,
}

impl InflightBytes {
    pub fn new(settings: &AdmissionSettings, metrics: &ProducerMetrics) -> Self {
        let limit_mib = settings.max_inflight_mib;
        InflightBytes {
            permits: Arc::new(Semaphore::new(units_in_mib(limit_mib) as usize)),
            limit_mib,
            wait: Duration::from_millis(settings.wait_ms),
            gauge: metrics.inflight_bytes.clone(),
            waiting: metrics.admission_waiting.clone(),
        }
    }

    /// The 503 of a request that found no room within the wait.
    fn full(&self) -> ApiError {
        ApiError::Unavailable {
            message: format!(
                "the producer is holding its limit of {} MiB of requests; retry shortly",
                self.limit_mib
            ),
            retry_after_secs: 1,
        }
    }

    /// The whole limit, in units.
    fn capacity(&self) -> u32 {
        units_in_mib(self.limit_mib)
    }

    /// What a request reserves before its body is read: its declared length, or its
    /// route's maximum when the length is unknown. A compressed body reserves its
    /// compressed length (or one growth step when unknown) and grows as [`inflate`]
    /// reads it. A declared length over the maximum is refused by the body limit
    /// (413), so it never needs more than the maximum.
    fn cost(req: &ServiceRequest, max: usize) -> usize {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match (declared, Self::is_compressed(req)) {
            (Some(bytes), _) => bytes.min(max),
            (None, true) => (GROWTH_UNITS as usize * UNIT).min(max),
            (None, false) => max,
        }
    }

    /// Whether the body comes with a `Content-Encoding` other than `identity`.
    fn is_compressed(req: &ServiceRequest) -> bool {
        req.headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    }
}

/// The largest body a route accepts, set on the route itself (see `routes::ingest_route`):
/// its body limit, and what admission reserves when the size is not known beforehand.
#[derive(Debug, Clone, Copy)]
pub struct RouteBodyLimit(pub usize);

/// Middleware (via `from_fn`) for each ingest route, so only a request that reached
/// one is sized, by that route's [`RouteBodyLimit`].
pub async fn admit(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let inflight = req.app_data::<web::Data<InflightBytes>>().cloned();
    // POST and PUT carry the bodies (Elasticsearch clients send their bulks with PUT).
    let has_body = matches!(*req.method(), Method::POST | Method::PUT);
    let Some(inflight) = inflight.filter(|_| has_body) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // A route wrapped without its limit is sized as the largest body any route takes.
    let max = req
        .app_data::<RouteBodyLimit>()
        .map_or(MAX_BATCH_BODY_BYTES, |limit| limit.0);
    // Capped at the whole limit, so one request larger than it can still run alone.
    let units =
        (InflightBytes::cost(&req, max).div_ceil(UNIT).max(1) as u32).min(inflight.capacity());
    // The semaphore is fair: a waiting request is admitted before any that came later.
    let room = Arc::clone(&inflight.permits).acquire_many_owned(units);
    let waiting = Waiting::new(&inflight.waiting);
    let admitted = tokio::time::timeout(inflight.wait, room).await;
    drop(waiting);
    let Ok(Ok(permit)) = admitted else {
        drain_body(&mut req).await;
        let path = req.path().to_owned();
        let refusal = inflight.full();
        // Closing hands the connection's slot (`HTTP_MAX_CONNECTIONS`) to one waiting in
        // the accept queue. Kept alive, the clients already in would hold every slot and
        // the queued ones would wait past their timeouts without an answer.
        let mut response = refusal.response_at(&path);
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(response));
    };
    let mut reservation = Reservation::new(permit, units, inflight.gauge.clone());
    if InflightBytes::is_compressed(&req) {
        if let Err(error) = inflate(&mut req, &inflight, &mut reservation, max).await {
            drop(reservation);
            let path = req.path().to_owned();
            let mut response = error.response_at(&path);
            if let ApiError::Unavailable { .. } = error {
                // As for a refusal above: the connection's slot goes to a waiting one.
                response
                    .head_mut()
                    .set_connection_type(ConnectionType::Close);
            }
            return Ok(req.into_response(response));
        }
    }
    let response = next.call(req).await;
    drop(reservation);
    Ok(response?.map_into_boxed_body())
}

/// The inflated size is only known as a compressed body is read, so a reservation
/// grows by at least this much at a time.
const GROWTH_UNITS: u32 = 256;

/// Inflates a compressed body here, before its route: reads it through actix's own
/// decoder (gzip, deflate, zstd, br; an encoding it does not know passes as it is),
/// growing `reservation` with the inflated bytes, and hands the route the inflated
/// body without its `Content-Encoding`. Past `max` inflated bytes it stops with a 413;
/// a body that does not decode is a 400; room that does not come within the admission
/// wait is a 503, as for a request refused at the door.
async fn inflate(
    req: &mut ServiceRequest,
    inflight: &InflightBytes,
    reservation: &mut Reservation,
    max: usize,
) -> Result<(), ApiError> {
    let encoding = req
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut decoded = actix_web::dev::Decompress::from_headers(req.take_payload(), req.headers());
    let deadline = tokio::time::Instant::now() + inflight.wait;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = decoded.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(format!(
                "the body does not decode as Content-Encoding '{encoding}': {e}"
            ))
        })?;
        if body.len() + chunk.len() > max {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body inflates past this route's limit of {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
        let needed = (body.len().div_ceil(UNIT) as u32).min(inflight.capacity());
        if needed > reservation.units {
            let more = (needed - reservation.units)
                .max(GROWTH_UNITS)
                .min(inflight.capacity() - reservation.units);
            let room = Arc::clone(&inflight.permits).acquire_many_owned(more);
            let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, room).await else {
                return Err(inflight.full());
            };
            reservation.grow(permit, more);
        }
    }
    let body = body.freeze();
    let headers = req.headers_mut();
    headers.remove(CONTENT_ENCODING);
    headers.insert(CONTENT_LENGTH, body.len().into());
    req.set_payload(actix_web::dev::Payload::from(body));
    Ok(())
}

/// Admitted bytes, counted in the gauge until released. Released on drop, so a request
/// whose future is dropped (client gone, shutdown) gives its room and its count back.
struct Reservation {
    permit: OwnedSemaphorePermit,
    units: u32,
    gauge: IntGauge,
}

impl Reservation {
    fn new(permit: OwnedSemaphorePermit, units: u32, gauge: IntGauge) -> Self {
        gauge.add(Self::bytes(units));
        Reservation {
            permit,
            units,
            gauge,
        }
    }

    fn bytes(units: u32) -> i64 {
        i64::from(units) * UNIT as i64
    }

    /// Adds `units` more, held by `permit`, to the reservation.
    fn grow(&mut self, permit: OwnedSemaphorePermit, units: u32) {
        self.permit.merge(permit);
        self.units += units;
        self.gauge.add(Self::bytes(units));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.gauge.sub(Self::bytes(self.units));
    }
}

/// A request waiting for room, counted in the gauge until it is admitted, refused or
/// dropped.
struct Waiting(IntGauge);

impl Waiting {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Waiting(gauge.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reads and drops the body of a refused request, chunk by chunk (no memory kept), so
/// the client gets its 503 rather than a connection reset while it is still sending.
/// Bounded by the largest body we accept and by time; past either, the connection ends.
async fn drain_body(req: &mut ServiceRequest) {
    let mut payload = req.take_payload();
    let drained = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = payload.next().await {
            seen += chunk.len();
            if seen > MAX_BATCH_BODY_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
}
