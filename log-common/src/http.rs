//! Pieces every service's actix app is built from: the observing middleware, the
//! Prometheus endpoint and the actuator health shape.

use crate::error::{ApiError, ErrorBody};
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use utoipa::ToSchema;

/// `http_server_requests_seconds{method,uri,status}`, the name Spring's Micrometer
/// uses, so dashboards built for the seed keep working.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "http_server_requests_seconds",
                "HTTP requests served, by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "uri", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        Ok(HttpMetrics { requests })
    }
}

/// Serves until `shutdown` resolves (or the server fails), then stops accepting
/// connections and waits for the requests in flight to finish.
pub async fn serve_until_stopped(
    server: actix_web::dev::Server,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let handle = server.handle();
    let mut serving = tokio::spawn(server);
    tokio::select! {
        result = &mut serving => result??,
        () = shutdown => {
            tracing::info!("draining: no new connections, finishing requests in flight");
            handle.stop(true).await;
            serving.await??;
        }
    }
    Ok(())
}

/// A service's registry, with the process collector (`process_resident_memory_bytes`,
/// `process_cpu_seconds_total`, open fds …) that the dashboards' memory and CPU panels use.
pub fn new_registry() -> Registry {
    let registry = Registry::new();
    if let Err(e) = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    )) {
        tracing::warn!(error = %e, "process metrics unavailable");
    }
    registry
}

/// Middleware (via `actix_web::middleware::from_fn`): times every request into
/// [`HttpMetrics`] (found in app data) and writes the request path into error bodies.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let method = req.method().to_string();
    let res = next.call(req).await?;
    let res = error_path(res);
    if let Some(metrics) = metrics {
        // The route template, not the raw path, keeps label cardinality bounded.
        let uri = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "UNKNOWN".to_owned());
        metrics
            .requests
            .with_label_values(&[method.as_str(), uri.as_str(), res.status().as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// Rebuilds an error response with the request path in its body. Errors that are not
/// [`ApiError`] (raised by actix itself) get the same JSON shape with their status.
fn error_path<B: MessageBody + 'static>(res: ServiceResponse<B>) -> ServiceResponse<BoxBody> {
    let path = res.request().path().to_owned();
    let status = res.status();
    let response = match res.response().error() {
        Some(error) => match error.as_error::<ApiError>() {
            Some(api_error) => api_error.response_at(&path),
            None => {
                let status = if status.is_success() {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    status
                };
                HttpResponse::build(status).json(ErrorBody::new(
                    status,
                    error.to_string(),
                    &path,
                    Vec::new(),
                ))
            }
        },
        // actix's own empty answers, e.g. 405 for a wrong method on a known route.
        None if status.is_client_error() || status.is_server_error() => {
            if !matches!(
                res.response().body().size(),
                BodySize::None | BodySize::Sized(0)
            ) {
                return res.map_into_boxed_body();
            }
            let message = status.canonical_reason().unwrap_or("error").to_owned();
            HttpResponse::build(status).json(ErrorBody::new(status, message, &path, Vec::new()))
        }
        None => return res.map_into_boxed_body(),
    };
    res.into_response(response)
}

/// `GET …/actuator/prometheus`: the service's registry in Prometheus text format.
pub async fn prometheus_metrics(registry: web::Data<Registry>) -> HttpResponse {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(buffer),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// Actuator-style readiness: overall status and one entry per dependency.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthReport {
    /// "UP" when every required component is up, otherwise "DOWN" (answered with 503)
    /// or "DEGRADED" (still 200: the service works, slower or without a cache).
    pub status: &'static str,
    pub service: &'static str,
    pub components: BTreeMap<&'static str, ComponentHealth>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentHealth {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl ComponentHealth {
    pub fn up(details: Option<serde_json::Value>) -> Self {
        ComponentHealth {
            status: "UP",
            details,
        }
    }

    pub fn down(reason: impl Into<String>) -> Self {
        ComponentHealth {
            status: "DOWN",
            details: Some(serde_json::json!({ "error": reason.into() })),
        }
    }

    /// Turned off by configuration: not used, so neither up nor a reason to degrade.
    pub fn disabled(reason: impl Into<String>) -> Self {
        ComponentHealth {
            status: "DISABLED",
            details: Some(serde_json::json!({ "reason": reason.into() })),
        }
    }

    pub fn is_up(&self) -> bool {
        self.status == "UP"
    }

    pub fn is_down(&self) -> bool {
        self.status == "DOWN"
    }
}

impl HealthReport {
    /// `required` components make the service DOWN; the others only DEGRADED.
    pub fn new(
        service: &'static str,
        components: BTreeMap<&'static str, ComponentHealth>,
        required: &[&str],
    ) -> Self {
        let required_down = components
            .iter()
            .any(|(name, c)| !c.is_up() && required.contains(name));
        let any_down = components.values().any(ComponentHealth::is_down);
        let status = if required_down {
            "DOWN"
        } else if any_down {
            "DEGRADED"
        } else {
            "UP"
        };
        HealthReport {
            status,
            service,
            components,
        }
    }

    pub fn into_response(self) -> HttpResponse {
        let code = if self.status == "DOWN" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        HttpResponse::build(code).json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{middleware::from_fn, test as actix_test, App};

    #[test]
    fn a_disabled_component_neither_degrades_nor_downs_the_service() {
        let report = |optional: ComponentHealth| {
            let components =
                BTreeMap::from([("db", ComponentHealth::up(None)), ("cache", optional)]);
            HealthReport::new("svc", components, &["db"]).status
        };
        assert_eq!(report(ComponentHealth::disabled("turned off")), "UP");
        assert_eq!(report(ComponentHealth::down("gone")), "DEGRADED");
        let components = BTreeMap::from([("db", ComponentHealth::disabled("off"))]);
        assert_eq!(
            HealthReport::new("svc", components, &["db"]).status,
            "DOWN",
            "a required component cannot be turned off"
        );
    }

    async fn fails() -> Result<HttpResponse, ApiError> {
        Err(ApiError::invalid_field("size", "too big"))
    }

    #[actix_web::test]
    async fn errors_carry_their_path_and_requests_are_counted() {
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry).expect("register");
        let app = actix_test::init_service(
            App::new()
                .app_data(web::Data::new(metrics))
                .wrap(from_fn(observe))
                .route("/items/{id}", web::get().to(fails))
                .default_service(web::to(crate::error::not_found)),
        )
        .await;

        let resp = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/items/42").to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = actix_test::read_body_json(resp).await;
        assert_eq!(body["path"], "/items/42");
        assert_eq!(body["errors"][0]["field"], "size");

        let resp = actix_test::call_service(
            &app,
            actix_test::TestRequest::get().uri("/nowhere").to_request(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = actix_test::read_body_json(resp).await;
        assert_eq!(body["path"], "/nowhere");

        let families = registry.gather();
        let text = {
            let mut buf = Vec::new();
            TextEncoder::new()
                .encode(&families, &mut buf)
                .expect("encode");
            String::from_utf8(buf).expect("utf8")
        };
        assert!(text.contains(r#"uri="/items/{id}""#), "{text}");
        assert!(text.contains(r#"status="404""#), "{text}");
    }

    #[test]
    fn optional_components_only_degrade() {
        let mut components = BTreeMap::new();
        components.insert("postgres", ComponentHealth::up(None));
        components.insert("redis", ComponentHealth::down("refused"));
        assert_eq!(
            HealthReport::new("g", components.clone(), &["postgres"]).status,
            "DEGRADED"
        );
        assert_eq!(
            HealthReport::new("g", components, &["postgres", "redis"]).status,
            "DOWN"
        );
    }
}
