//! Liveness (`/api/logs/health`, the seed's URL) and readiness (`/actuator/health`).

use super::IngestState;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use log_common::breaker::BreakerState;
use log_common::http::{ComponentHealth, HealthReport};
use serde_json::json;
use std::collections::BTreeMap;

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/producer/api/logs/health", tag = "health",
    responses((status = 200, description = "The service is running", body = Object,
        example = json!({"status": "healthy", "service": "log-producer", "timestamp": "2024-01-01T12:00:00Z"}))))]
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "healthy",
        "service": "log-producer",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": Utc::now(),
    }))
}

/// Ready to take events: Kafka reachable and the topic present; reports the breaker.
#[utoipa::path(get, path = "/producer/actuator/health", tag = "health",
    responses((status = 200, description = "Kafka reachable", body = HealthReport),
              (status = 503, description = "Kafka unreachable", body = HealthReport)))]
pub async fn readiness(state: web::Data<IngestState>) -> HttpResponse {
    let mut components = BTreeMap::new();
    let kafka = match state.publisher.check_kafka().await {
        Ok(partitions) => ComponentHealth::up(Some(json!({ "partitions": partitions }))),
        Err(e) => ComponentHealth::down(e),
    };
    components.insert("kafka", kafka);
    // Asked as a call would find it: once its open period has passed, an open breaker
    // is ready to probe, so readiness comes back without a request to close it.
    let breaker = state.publisher.breaker_state_now();
    let breaker_health = if breaker == BreakerState::Open {
        ComponentHealth {
            status: "DOWN",
            details: Some(json!({ "state": breaker.as_str() })),
        }
    } else {
        ComponentHealth::up(Some(json!({ "state": breaker.as_str() })))
    };
    components.insert("circuitBreaker", breaker_health);
    HealthReport::new("log-producer", components, &["kafka", "circuitBreaker"]).into_response()
}
