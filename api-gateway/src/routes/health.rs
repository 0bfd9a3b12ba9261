//! Liveness (`/api/query/health`, the seed's URL) and readiness (`/actuator/health`).

use crate::service::QueryService;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use log_common::http::{ComponentHealth, HealthReport};
use serde_json::json;
use std::collections::BTreeMap;

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/gateway/api/query/health", tag = "health",
    responses((status = 200, description = "The service is running", body = Object,
        example = json!({"status": "healthy", "service": "api-gateway", "timestamp": "2024-01-01T12:00:00Z"}))))]
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "healthy",
        "service": "api-gateway",
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": Utc::now(),
    }))
}

/// PostgreSQL is required (DOWN, 503, without it); Redis only speeds answers up
/// (DEGRADED, still 200, without it; DISABLED, and no effect, with `CACHE_ENABLED=false`).
#[utoipa::path(get, path = "/gateway/actuator/health", tag = "health",
    responses((status = 200, description = "PostgreSQL reachable (Redis may be degraded)", body = HealthReport),
              (status = 503, description = "PostgreSQL unreachable", body = HealthReport)))]
pub async fn readiness(service: web::Data<QueryService>) -> HttpResponse {
    let mut components = BTreeMap::new();
    let postgres = match service.ping().await {
        Ok(()) => ComponentHealth::up(Some(
            json!({ "breaker": service.database_breaker().state().as_str() }),
        )),
        Err(e) => ComponentHealth::down(e.to_string()),
    };
    components.insert("postgres", postgres);
    let redis = if !service.cache().enabled() {
        ComponentHealth::disabled("CACHE_ENABLED=false")
    } else {
        match service.cache().ping().await {
            Ok(()) => ComponentHealth::up(Some(
                json!({ "breaker": service.cache().breaker().state().as_str() }),
            )),
            Err(e) => ComponentHealth::down(e),
        }
    };
    components.insert("redis", redis);
    HealthReport::new("api-gateway", components, &["postgres"]).into_response()
}
