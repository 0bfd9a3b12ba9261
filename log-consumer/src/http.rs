//! The consumer's HTTP side: `/actuator/health` and `/actuator/prometheus`.

use crate::metrics::ConsumerMetrics;
use crate::pipeline::{LaneTopic, LogConsumer, PipelineStatus};
use crate::rebalance::Assignment;
use actix_web::{web, HttpResponse};
use log_common::http::{ComponentHealth, HealthReport};
use log_store::Store;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct HealthState {
    pub store: Store,
    /// The normal lane, then the priority lane.
    pub lanes: Vec<LaneHealth>,
    pub status: Arc<PipelineStatus>,
    pub metrics: ConsumerMetrics,
}

/// What health reads of one lane's pipeline.
pub struct LaneHealth {
    pub topic: LaneTopic,
    /// Asked for cluster metadata on every health check: a real round trip to a broker.
    pub consumer: Arc<LogConsumer>,
    pub assignment: Arc<Assignment>,
}

impl LaneHealth {
    fn details(&self, metrics: &ConsumerMetrics) -> serde_json::Value {
        let partitions = self.assignment.partitions();
        let lag: i64 = partitions
            .iter()
            .map(|p| {
                metrics
                    .lag
                    .with_label_values(&[&self.topic.name, &p.to_string()])
                    .get()
            })
            .sum();
        let awaiting_claim = self.assignment.pending().map(|p| p.partitions);
        json!({
            "topic": self.topic.name,
            "assignedPartitions": partitions,
            "awaitingClaim": awaiting_claim.unwrap_or_default(),
            "lag": lag,
        })
    }
}

pub fn configure(cfg: &mut web::ServiceConfig, prometheus_enabled: bool) {
    let mut actuator = web::scope("/actuator").route("/health", web::get().to(health));
    if prometheus_enabled {
        actuator = actuator.route(
            "/prometheus",
            web::get().to(log_common::http::prometheus_metrics),
        );
    }
    cfg.service(actuator);
}

/// PostgreSQL and Kafka reachable, partitions owned, lag. DOWN (503) when either is
/// unreachable (the consumer can do nothing without both); the writer component is
/// DOWN while a batch is being retried.
async fn health(state: web::Data<HealthState>) -> HttpResponse {
    let store = state.store.clone();
    let postgres = match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => ComponentHealth::up(None),
        Ok(Err(e)) => ComponentHealth::down(e.to_string()),
        Err(e) => ComponentHealth::down(e.to_string()),
    };
    let mut lanes = serde_json::Map::new();
    for lane in &state.lanes {
        lanes.insert(
            lane.topic.lane.as_str().to_owned(),
            lane.details(&state.metrics),
        );
    }
    let normal = &state.lanes[0];
    let consumer = normal.consumer.clone();
    let topic = normal.topic.name.clone();
    let kafka = match tokio::task::spawn_blocking(move || broker_reachable(&consumer, &topic)).await
    {
        // The normal lane's figures stay at the top level, as before there were lanes.
        Ok(Ok(brokers)) => {
            let normal = lanes.get("normal").cloned().unwrap_or_default();
            ComponentHealth::up(Some(json!({
                "brokers": brokers,
                "assignedPartitions": normal["assignedPartitions"],
                "awaitingClaim": normal["awaitingClaim"],
                "lag": normal["lag"],
                "lanes": lanes,
            })))
        }
        Ok(Err(e)) => ComponentHealth::down(format!("no broker answers: {e}")),
        Err(e) => ComponentHealth::down(e.to_string()),
    };
    let retrying = state.status.retrying();
    let writer = if retrying {
        let last = state.status.last_error.lock().ok().and_then(|l| l.clone());
        ComponentHealth::down(format!("retrying a batch: {}", last.unwrap_or_default()))
    } else {
        ComponentHealth::up(None)
    };
    let mut components = BTreeMap::new();
    components.insert("postgres", postgres);
    components.insert("kafka", kafka);
    components.insert("writer", writer);
    HealthReport::new("log-consumer", components, &["postgres", "kafka"]).into_response()
}

/// How many brokers the cluster metadata names, fetched now (not librdkafka's cached
/// view, which lags by its statistics interval).
fn broker_reachable(consumer: &LogConsumer, topic: &str) -> rdkafka::error::KafkaResult<usize> {
    use rdkafka::consumer::Consumer;
    let metadata = consumer
        .client()
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(2))?;
    Ok(metadata.brokers().len())
}
