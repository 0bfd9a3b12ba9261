//! HTTP surface of the gateway, all under `/gateway`.

mod admin;
mod health;
mod openapi;
mod query;
mod tail;
mod ui;

pub use openapi::ApiDoc;

use actix_web::middleware::from_fn;
use actix_web::web;
use log_common::auth::{open_resource, require_admin_key, require_api_key};
use log_common::error::json_config;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub fn configure(cfg: &mut web::ServiceConfig, prometheus_enabled: bool) {
    let mut actuator =
        web::scope("/gateway/actuator").route("/health", web::get().to(health::readiness));
    if prometheus_enabled {
        actuator = actuator.route(
            "/prometheus",
            web::get().to(log_common::http::prometheus_metrics),
        );
    }
    cfg.service(
        web::scope("/gateway/api/query")
            .wrap(from_fn(require_api_key))
            .route("/logs", web::get().to(query::logs))
            .route("/logs/{id}", web::get().to(query::log_by_id))
            .route("/search", web::get().to(query::search))
            .route("/stats", web::get().to(query::stats))
            .route("/histogram", web::get().to(query::histogram))
            .route("/tail", web::get().to(tail::tail))
            .service(open_resource("/health").route(web::get().to(health::liveness))),
    )
    .service(
        // Admin scope: with API keys on, only ADMIN_API_KEYS pass (401/403 otherwise).
        // Literal paths before `{id}`, whose resource would answer 405 for them.
        web::scope("/gateway/api/admin/dead-letters")
            .wrap(from_fn(require_admin_key))
            .app_data(json_config(64 * 1024))
            // A corrected event may be as large as the producer's single-event limit.
            .app_data(web::PayloadConfig::new(
                log_common::event::MAX_SINGLE_BODY_BYTES + 64 * 1024,
            ))
            .route("", web::get().to(admin::list))
            .route("/counts", web::get().to(admin::counts))
            .route("/replay", web::post().to(admin::replay_many))
            .route("/{id}", web::get().to(admin::detail))
            .route("/{id}/replay", web::post().to(admin::replay))
            .route("/{id}/replays", web::get().to(admin::replays)),
    )
    .service(actuator)
    .route("/", web::get().to(ui::redirect_to_ui))
    .route("/gateway/ui", web::get().to(ui::redirect_to_ui))
    .route(ui::UI_ROOT, web::get().to(ui::index))
    .route("/gateway/ui/{file}", web::get().to(ui::asset))
    .service(
        SwaggerUi::new("/gateway/swagger-ui/{_:.*}").url("/gateway/v3/api-docs", ApiDoc::openapi()),
    );
}
