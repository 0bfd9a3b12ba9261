//! Admission control: a bound on the request bytes the producer holds at once.
//!
//! The rate limiter is per client; this is the bound for all of them together. A
//! request reserves its body size before the body is read and keeps it until its answer
//! is sent, covering the parsed events and the Kafka queue behind them. When the
//! reservation does not fit, the request waits for room in arrival order, at most
//! `INGEST_ADMISSION_WAIT_MS`, and then gets a 503 with `Retry-After` and the connection
//! closed: a burst queues briefly, a flood costs bounded memory and prompt refusals
//! instead of piling up.

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

    /// The whole limit, in units.
    fn capacity(&self) -> u32 {
        units_in_mib(self.limit_mib)
    }

    /// What a request may cost before its body is read: its declared length, or its
    /// route's maximum when the length is unknown or the body is compressed (it can
    /// grow up to that maximum when decompressed). A declared length over the maximum
    /// is refused by the body limit (413), so it never needs more than the maximum.
    fn cost(req: &ServiceRequest, max: usize) -> usize {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let compressed = req
            .headers()
            .get(CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes() != b"identity");
        match declared {
            Some(bytes) if !compressed => bytes.min(max),
            _ => max,
        }
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
    let Some(inflight) = inflight.filter(|_| req.method() == Method::POST) else {
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
        let refusal = ApiError::Unavailable {
            message: format!(
                "the producer is holding its limit of {} MiB of requests; retry shortly",
                inflight.limit_mib
            ),
            retry_after_secs: 1,
        };
        // Closing hands the connection's slot (`HTTP_MAX_CONNECTIONS`) to one waiting in
        // the accept queue. Kept alive, the clients already in would hold every slot and
        // the queued ones would wait past their timeouts without an answer.
        let mut response = refusal.response_at(&path);
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(response));
    };
    let reservation = Reservation::new(permit, units, inflight.gauge.clone());
    let response = next.call(req).await;
    drop(reservation);
    Ok(response?.map_into_boxed_body())
}

/// Admitted bytes, counted in the gauge until released. Released on drop, so a request
/// whose future is dropped (client gone, shutdown) gives its room and its count back.
struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: IntGauge,
}

impl Reservation {
    fn new(permit: OwnedSemaphorePermit, units: u32, gauge: IntGauge) -> Self {
        let bytes = i64::from(units) * UNIT as i64;
        gauge.add(bytes);
        Reservation {
            _permit: permit,
            bytes,
            gauge,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
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
