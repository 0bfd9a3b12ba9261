//! The gateway's Prometheus metrics.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone)]
pub struct GatewayMetrics {
    /// `log_queries_total{endpoint}`.
    pub queries: IntCounterVec,
    /// `log_query_duration_seconds{endpoint,source="cache"|"stale"|"db"}`.
    pub query_duration: HistogramVec,
    /// `cache_gets_total{result="hit"|"stale"|"miss"|"error"}`.
    pub cache_gets: IntCounterVec,
    /// `cache_reloads_total{result="ok"|"failed"}`: stale entries reloaded in the
    /// background.
    pub cache_reloads: IntCounterVec,
    /// `circuit_breaker_state{name,state}`: 1 marks the current state.
    pub breaker_state: IntGaugeVec,
    /// `log_store_invalid_rows_total{column}`: stored rows that are not valid events
    /// (a level outside the six, …); each one failed its query with a 500.
    pub invalid_rows: IntCounterVec,
    /// `log_query_timeouts_total{class}`: queries stopped at their class's limit.
    pub query_timeouts: IntCounterVec,
    /// `log_tail_clients`: tail streams open now.
    pub tail_clients: IntGauge,
    /// `log_tail_events_sent_total`: events written to tail streams.
    pub tail_events_sent: IntCounter,
    /// `log_tail_drops_total{reason="slow_client"|"too_many_clients"}`: streams
    /// closed, or refused, by the gateway.
    pub tail_drops: IntCounterVec,
    /// `log_dead_letters{reason_kind}`: dead letters never replayed with success, read
    /// from the index every 15 s.
    pub dead_letters: IntGaugeVec,
    /// `log_dead_letter_oldest_unreplayed_age_seconds`: age of the oldest of them (0
    /// when there is none).
    pub dead_letter_oldest_age: Gauge,
    /// `log_dead_letter_replays_total{outcome}`: replay attempts by outcome.
    pub dead_letter_replays: IntCounterVec,
}

impl GatewayMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = GatewayMetrics {
            queries: IntCounterVec::new(
                Opts::new("log_queries_total", "Queries answered, by endpoint"),
                &["endpoint"],
            )?,
            query_duration: HistogramVec::new(
                HistogramOpts::new(
                    "log_query_duration_seconds",
                    "Query time, by endpoint and where the answer came from",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["endpoint", "source"],
            )?,
            cache_gets: IntCounterVec::new(
                Opts::new("cache_gets_total", "Cache lookups, by result"),
                &["result"],
            )?,
            cache_reloads: IntCounterVec::new(
                Opts::new(
                    "cache_reloads_total",
                    "Cache entries past their fresh half reloaded in the background, by result",
                ),
                &["result"],
            )?,
            breaker_state: IntGaugeVec::new(
                Opts::new(
                    "circuit_breaker_state",
                    "Circuit breaker state: 1 marks the current one",
                ),
                &["name", "state"],
            )?,
            invalid_rows: IntCounterVec::new(
                Opts::new(
                    "log_store_invalid_rows_total",
                    "Stored rows read back that are not valid events, by column",
                ),
                &["column"],
            )?,
            query_timeouts: IntCounterVec::new(
                Opts::new(
                    "log_query_timeouts_total",
                    "Queries stopped at their class's time limit (answered 503), by class",
                ),
                &["class"],
            )?,
            tail_clients: IntGauge::new("log_tail_clients", "Live tail streams open now")?,
            tail_events_sent: IntCounter::new(
                "log_tail_events_sent_total",
                "Events written to live tail streams",
            )?,
            tail_drops: IntCounterVec::new(
                Opts::new(
                    "log_tail_drops_total",
                    "Live tail streams the gateway closed or refused, by reason",
                ),
                &["reason"],
            )?,
            dead_letters: IntGaugeVec::new(
                Opts::new(
                    "log_dead_letters",
                    "Dead letters never replayed with success, by reason kind",
                ),
                &["reason_kind"],
            )?,
            dead_letter_oldest_age: Gauge::new(
                "log_dead_letter_oldest_unreplayed_age_seconds",
                "Age of the oldest dead letter never replayed with success (0: none)",
            )?,
            dead_letter_replays: IntCounterVec::new(
                Opts::new(
                    "log_dead_letter_replays_total",
                    "Dead-letter replay attempts, by outcome",
                ),
                &["outcome"],
            )?,
        };
        // Known label values start at 0, so the series exist before the first query.
        for endpoint in ["logs", "search", "stats", "histogram", "log_by_id"] {
            m.queries.with_label_values(&[endpoint]);
        }
        for result in ["hit", "stale", "miss", "error"] {
            m.cache_gets.with_label_values(&[result]);
        }
        for result in ["ok", "failed"] {
            m.cache_reloads.with_label_values(&[result]);
        }
        for column in ["level", "message", "source"] {
            m.invalid_rows.with_label_values(&[column]);
        }
        registry.register(Box::new(m.queries.clone()))?;
        registry.register(Box::new(m.query_duration.clone()))?;
        registry.register(Box::new(m.cache_gets.clone()))?;
        registry.register(Box::new(m.cache_reloads.clone()))?;
        registry.register(Box::new(m.breaker_state.clone()))?;
        for class in ["lookup", "page", "search", "aggregate"] {
            m.query_timeouts.with_label_values(&[class]);
        }
        registry.register(Box::new(m.invalid_rows.clone()))?;
        registry.register(Box::new(m.query_timeouts.clone()))?;
        for reason in ["slow_client", "too_many_clients"] {
            m.tail_drops.with_label_values(&[reason]);
        }
        registry.register(Box::new(m.tail_clients.clone()))?;
        registry.register(Box::new(m.tail_events_sent.clone()))?;
        registry.register(Box::new(m.tail_drops.clone()))?;
        for kind in log_store::dead_letters::ReasonKind::ALL {
            m.dead_letters.with_label_values(&[kind.as_str()]);
        }
        for outcome in ["published", "rejected", "failed"] {
            m.dead_letter_replays.with_label_values(&[outcome]);
        }
        registry.register(Box::new(m.dead_letters.clone()))?;
        registry.register(Box::new(m.dead_letter_oldest_age.clone()))?;
        registry.register(Box::new(m.dead_letter_replays.clone()))?;
        Ok(m)
    }
}
