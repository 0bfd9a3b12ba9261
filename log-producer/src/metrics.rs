//! The producer's Prometheus metrics (names from the seed where it has one).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The `protocol` label values of `log_ingestion_protocol_events_total`: each ingest
/// route's and listener's endpoint name.
pub const PROTOCOLS: [&str; 9] = [
    "ingest",
    "ingest_async",
    "batch",
    "bulk",
    "otlp",
    "es_bulk",
    "loki",
    "syslog_tcp",
    "syslog_udp",
];

#[derive(Clone)]
pub struct ProducerMetrics {
    /// `log_ingestion_total{level}`: events Kafka acknowledged (or queued, for async).
    pub ingested: IntCounterVec,
    /// `log_ingestion_protocol_events_total{protocol}`: events Kafka acknowledged (or
    /// queued, for async), by the route or listener they came in by: `ingest`,
    /// `ingest_async`, `batch`, `bulk`, `otlp`, `es_bulk`, `loki`, `syslog_tcp`,
    /// `syslog_udp`.
    pub by_protocol: IntCounterVec,
    /// `log_ingestion_rejected_total{reason}`: events refused before Kafka
    /// (validation, rate_limited, unavailable).
    pub rejected: IntCounterVec,
    /// `log_ingestion_duration_seconds{endpoint}`: request time to final answer.
    pub duration: HistogramVec,
    /// `kafka_messages_sent_total{result="success"|"failure"}`.
    pub kafka_sent: IntCounterVec,
    /// `circuit_breaker_state{name,state}`: 1 for the current state, 0 for the others.
    pub breaker_state: IntGaugeVec,
    /// `rate_limit_rejections_total`: requests answered 429.
    pub rate_limited: IntCounterVec,
    /// `producer_inflight_request_bytes`: request bytes admitted and not yet answered.
    pub inflight_bytes: IntGauge,
    /// `producer_admission_waiting_requests`: requests waiting for room under that bound.
    pub admission_waiting: IntGauge,
    /// `log_syslog_messages_total{transport,outcome}`: syslog messages received, by
    /// what became of them (accepted, invalid, malformed, oversized, dropped).
    pub syslog_messages: IntCounterVec,
}

impl ProducerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let ingested = IntCounterVec::new(
            Opts::new("log_ingestion_total", "Log events accepted, by level"),
            &["level"],
        )?;
        let by_protocol = IntCounterVec::new(
            Opts::new(
                "log_ingestion_protocol_events_total",
                "Log events accepted, by the protocol (route or listener) they came in by",
            ),
            &["protocol"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "log_ingestion_rejected_total",
                "Log events refused, by reason",
            ),
            &["reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "log_ingestion_duration_seconds",
                "Ingest request duration, by endpoint",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["endpoint"],
        )?;
        let kafka_sent = IntCounterVec::new(
            Opts::new("kafka_messages_sent_total", "Kafka deliveries, by result"),
            &["result"],
        )?;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "circuit_breaker_state",
                "Circuit breaker state: 1 marks the current one",
            ),
            &["name", "state"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new("rate_limit_rejections_total", "Requests refused with 429"),
            &["endpoint"],
        )?;
        let inflight_bytes = IntGauge::new(
            "producer_inflight_request_bytes",
            "Request bytes admitted and not yet answered (bounded by INGEST_MAX_INFLIGHT_MIB)",
        )?;
        let admission_waiting = IntGauge::new(
            "producer_admission_waiting_requests",
            "Requests waiting for room under INGEST_MAX_INFLIGHT_MIB (at most INGEST_ADMISSION_WAIT_MS)",
        )?;
        let syslog_messages = IntCounterVec::new(
            Opts::new(
                "log_syslog_messages_total",
                "Syslog messages received, by transport and what became of them",
            ),
            &["transport", "outcome"],
        )?;
        registry.register(Box::new(syslog_messages.clone()))?;
        registry.register(Box::new(by_protocol.clone()))?;
        registry.register(Box::new(inflight_bytes.clone()))?;
        registry.register(Box::new(admission_waiting.clone()))?;
        registry.register(Box::new(ingested.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(kafka_sent.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        // Known label values start at 0, so every series (and dashboard panel) exists
        // before the first event of its kind.
        for level in log_common::event::Level::ALL {
            ingested.with_label_values(&[level.as_str()]);
        }
        for reason in ["validation", "rate_limited", "unavailable"] {
            rejected.with_label_values(&[reason]);
        }
        for result in ["success", "failure"] {
            kafka_sent.with_label_values(&[result]);
        }
        for endpoint in ["ingest", "ingest_async", "batch", "bulk"] {
            rate_limited.with_label_values(&[endpoint]);
        }
        for protocol in PROTOCOLS {
            by_protocol.with_label_values(&[protocol]);
        }
        for transport in ["tcp", "udp"] {
            for outcome in crate::syslog::OUTCOMES {
                syslog_messages.with_label_values(&[transport, outcome]);
            }
        }
        Ok(ProducerMetrics {
            syslog_messages,
            by_protocol,
            ingested,
            rejected,
            duration,
            kafka_sent,
            breaker_state,
            rate_limited,
            inflight_bytes,
            admission_waiting,
        })
    }
}
