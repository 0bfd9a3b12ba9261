//! The consumer's HTTP side: `/actuator/health` and `/actuator/prometheus`.

use crate::metrics::ConsumerMetrics;
use crate::pipeline::PipelineStatus;
use crate::rebalance::Assignment;
use actix_web::{web, HttpResponse};
use log_common::http::{ComponentHealth, HealthReport};
use log_store::Store;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct HealthState {
    pub store: Store,
    pub assignment: Arc<Assignment>,
    pub status: Arc<PipelineStatus>,
    pub metrics: ConsumerMetrics,
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

/// PostgreSQL reachable, partitions owned, lag. DOWN (503) when PostgreSQL is
/// unreachable; DEGRADED while a batch is being retried.
async fn health(state: web::Data<HealthState>) -> HttpResponse {
    let store = state.store.clone();
    let postgres = match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => ComponentHealth::up(None),
        Ok(Err(e)) => ComponentHealth::down(e.to_string()),
        Err(e) => ComponentHealth::down(e.to_string()),
    };
    let partitions = state.assignment.partitions();
    let lag: i64 = partitions
        .iter()
        .map(|p| state.metrics.lag.with_label_values(&[&p.to_string()]).get())
        .sum();
    let kafka = ComponentHealth::up(Some(json!({
        "assignedPartitions": partitions,
        "lag": lag,
    })));
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
    HealthReport::new("log-consumer", components, &["postgres"]).into_response()
}
