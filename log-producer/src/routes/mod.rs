//! HTTP surface of the producer, all under `/producer`.

pub mod agents;
mod health;
pub(crate) mod ingest;
mod ndjson;
mod openapi;

pub use ingest::IngestState;
pub use openapi::ApiDoc;

use crate::admission::{admit, RouteBodyLimit};
use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, Resource};
use log_common::auth::{open_resource, require_api_key};
use log_common::error::json_config;
use log_common::event::{MAX_BATCH_BODY_BYTES, MAX_SINGLE_BODY_BYTES};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub fn configure(cfg: &mut web::ServiceConfig, prometheus_enabled: bool) {
    let mut actuator =
        web::scope("/producer/actuator").route("/health", web::get().to(health::readiness));
    if prometheus_enabled {
        actuator = actuator.route(
            "/prometheus",
            web::get().to(log_common::http::prometheus_metrics),
        );
    }
    cfg.service(
        web::scope("/producer/api/logs")
            // Runs before each route's admission: a request without a valid key reserves
            // nothing.
            .wrap(from_fn(require_api_key))
            .service(
                ingest_route("/ingest", MAX_SINGLE_BODY_BYTES)
                    .route(web::post().to(ingest::ingest)),
            )
            .service(
                ingest_route("/ingest/async", MAX_SINGLE_BODY_BYTES)
                    .route(web::post().to(ingest::ingest_async)),
            )
            .service(
                ingest_route("/batch", MAX_BATCH_BODY_BYTES).route(web::post().to(ingest::batch)),
            )
            .service(
                // For /bulk the limit applies to the decompressed body, so a gzip bomb
                // stops at it.
                ingest_route("/bulk", MAX_BATCH_BODY_BYTES).route(web::post().to(ingest::bulk)),
            )
            .service(open_resource("/health").route(web::get().to(health::liveness))),
    )
    .service(
        web::scope("/producer/v1")
            .wrap(from_fn(require_api_key))
            .wrap(from_fn(agents::otlp::status_errors))
            .service(
                ingest_route("/logs", MAX_BATCH_BODY_BYTES)
                    .route(web::post().to(agents::otlp::export)),
            ),
    )
    .service(
        web::scope("/producer/es")
            .wrap(from_fn(require_api_key))
            .wrap(from_fn(agents::elasticsearch::es_errors))
            .wrap(DefaultHeaders::new().add(agents::elasticsearch::PRODUCT_HEADER))
            .service(
                ingest_route("/_bulk", MAX_BATCH_BODY_BYTES)
                    .route(web::post().to(agents::elasticsearch::bulk))
                    .route(web::put().to(agents::elasticsearch::bulk)),
            )
            .configure(agents::elasticsearch::startup_routes)
            .service(
                ingest_route("/{index}/_bulk", MAX_BATCH_BODY_BYTES)
                    .route(web::post().to(agents::elasticsearch::bulk))
                    .route(web::put().to(agents::elasticsearch::bulk)),
            )
            .default_service(web::to(agents::elasticsearch::not_found)),
    )
    .service(
        web::scope("/producer/loki")
            .wrap(from_fn(require_api_key))
            .service(
                ingest_route("/api/v1/push", MAX_BATCH_BODY_BYTES)
                    .route(web::post().to(agents::loki::push)),
            )
            .service(open_resource("/ready").route(web::get().to(agents::loki::ready))),
    )
    .service(actuator)
    .service(
        SwaggerUi::new("/producer/swagger-ui/{_:.*}")
            .url("/producer/v3/api-docs", ApiDoc::openapi()),
    );
}

/// An ingest route taking bodies up to `max_body` bytes: the limit for its JSON or raw
/// body (413 past it), and the size admission reserves for it when the request does not
/// say (see [`admit`]). Admission sizes a request by the route it reached, never by how
/// its path looks.
fn ingest_route(
    path: &str,
    max_body: usize,
) -> Resource<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path)
        .app_data(RouteBodyLimit(max_body))
        .app_data(json_config(max_body))
        .app_data(web::PayloadConfig::new(max_body))
        .wrap(from_fn(admit))
}
