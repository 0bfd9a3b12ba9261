//! HTTP surface of the producer, all under `/producer`.

mod health;
mod ingest;
mod openapi;

pub use ingest::IngestState;
pub use openapi::ApiDoc;

use crate::admission::admit;
use actix_web::middleware::from_fn;
use actix_web::web;
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
            // The last wrap runs first: a request without a valid key reserves nothing.
            .wrap(from_fn(admit))
            .wrap(from_fn(require_api_key))
            .service(
                web::resource("/ingest")
                    .app_data(json_config(MAX_SINGLE_BODY_BYTES))
                    .route(web::post().to(ingest::ingest)),
            )
            .service(
                web::resource("/ingest/async")
                    .app_data(json_config(MAX_SINGLE_BODY_BYTES))
                    .route(web::post().to(ingest::ingest_async)),
            )
            .service(
                web::resource("/batch")
                    .app_data(json_config(MAX_BATCH_BODY_BYTES))
                    .route(web::post().to(ingest::batch)),
            )
            .service(
                web::resource("/bulk")
                    // Applies to the decompressed body, so a gzip bomb stops at the limit.
                    .app_data(web::PayloadConfig::new(MAX_BATCH_BODY_BYTES))
                    .route(web::post().to(ingest::bulk)),
            )
            .service(open_resource("/health").route(web::get().to(health::liveness))),
    )
    .service(actuator)
    .service(
        SwaggerUi::new("/producer/swagger-ui/{_:.*}")
            .url("/producer/v3/api-docs", ApiDoc::openapi()),
    );
}
