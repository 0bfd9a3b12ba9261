//! The log explorer: a page and its script and styles, compiled into the binary from
//! `api-gateway/ui/` (no CDN, no build step). It talks only to the query API.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use actix_web::{web, HttpResponse};

/// The explorer's files: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/app.css"),
    ),
];

/// Everything from this origin, nothing from anywhere else; no inline script.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub const UI_ROOT: &str = "/gateway/ui/";

pub async fn redirect_to_ui() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, UI_ROOT))
        .finish()
}

pub async fn index() -> HttpResponse {
    file("index.html")
}

pub async fn asset(name: web::Path<String>) -> HttpResponse {
    file(&name)
}

fn file(name: &str) -> HttpResponse {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, *content_type))
            // Small files, served from memory: always revalidate, so an upgrade shows at once.
            .insert_header((CACHE_CONTROL, "no-cache"))
            .insert_header((CONTENT_SECURITY_POLICY, POLICY))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(*body),
        None => log_common::error::ApiError::NotFound(format!("no explorer file named {name}"))
            .response_at(&format!("{UI_ROOT}{name}")),
    }
}
