//! Optional API keys. When `API_KEYS` (comma-separated) or `API_KEYS_FILE` (one key a
//! line, `#` comments) is set, ingest and query endpoints require `X-API-Key: <key>`
//! or `Authorization: Bearer <key>`; metrics and the API docs (outside the keyed scopes)
//! and each service's liveness route (registered with [`open_resource`]) stay open. When
//! neither is set, every request is let through (local development).
//!
//! Keys are compared in constant time and never logged or printed.

use crate::error::ApiError;
use crate::settings::Secret;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::web;
use anyhow::Context;
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// Header carrying the client's API key (also accepted: `Authorization: Bearer`).
pub const API_KEY_HEADER: &str = "X-API-Key";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthSettings {
    /// Comma-separated API keys. Unset (and no file): no key is required.
    #[arg(long = "api-keys", env = "API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret>,
    /// A file with one API key per line (`#` starts a comment).
    #[arg(long = "api-keys-file", env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
}

/// The accepted keys; empty means authentication is off.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.len())
    }
}

impl ApiKeys {
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        if let Some(list) = &settings.api_keys {
            keys.extend(
                list.expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(|k| k.as_bytes().to_vec()),
            );
        }
        if let Some(path) = &settings.api_keys_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("API_KEYS_FILE: cannot read {}", path.display()))?;
            keys.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|k| !k.is_empty())
                    .map(|k| k.as_bytes().to_vec()),
            );
        }
        Ok(ApiKeys { keys })
    }

    /// [`ApiKeys::from_settings`], saying at start which mode the service runs in.
    pub fn load(settings: &AuthSettings) -> anyhow::Result<Self> {
        let keys = ApiKeys::from_settings(settings)?;
        if keys.enabled() {
            tracing::info!(keys = ?keys, "API keys required for ingest and queries");
        } else {
            tracing::warn!(
                "no API_KEYS configured: every client is trusted (fine for local development)"
            );
        }
        Ok(keys)
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Constant time in the key's content: every stored key is compared, whatever
    /// matched first.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut accepted = subtle::Choice::from(0);
        for key in &self.keys {
            accepted |= key.as_slice().ct_eq(presented);
        }
        accepted.into()
    }
}

/// The key a request presents, from `X-API-Key` or `Authorization: Bearer`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The route name [`require_api_key`] lets through without a key.
pub const OPEN_ROUTE: &str = "open-without-api-key";

/// A resource inside a keyed scope that stays open without a key: a service's liveness
/// route, for probes. Exemption goes by this registered name, never by how a path looks,
/// so `…/anything/health` is not open because of its last segment.
pub fn open_resource(path: &str) -> actix_web::Resource {
    web::resource(path).name(OPEN_ROUTE)
}

/// Middleware (via `from_fn`) for the ingest and query scopes: 401 without a valid key
/// when keys are configured, except on a route made with [`open_resource`].
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let keys = req.app_data::<web::Data<ApiKeys>>().cloned();
    if let Some(keys) = keys.filter(|k| k.enabled()) {
        // Routing inside the scope has not run yet; the name comes from matching the
        // whole path against every registered resource.
        if req.match_name() != Some(OPEN_ROUTE) {
            let refusal = match presented_key(req.headers()) {
                None => Some(
                    "an API key is required: send X-API-Key: <key> or Authorization: Bearer <key>",
                ),
                Some(key) if !keys.accepts(key.as_bytes()) => Some("the API key is not valid"),
                Some(_) => None,
            };
            if let Some(message) = refusal {
                let path = req.path().to_owned();
                let response = ApiError::Unauthorized(message.to_owned()).response_at(&path);
                return Ok(req.into_response(response));
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::{test as http_test, App, HttpResponse};

    fn keys(list: &str) -> ApiKeys {
        ApiKeys::from_settings(&AuthSettings {
            api_keys: Some(list.parse().expect("infallible")),
            api_keys_file: None,
        })
        .expect("keys")
    }

    #[test]
    fn accepts_only_configured_keys() {
        let keys = keys(" alpha , beta,,");
        assert!(keys.enabled());
        assert!(keys.accepts(b"alpha"));
        assert!(keys.accepts(b"beta"));
        assert!(!keys.accepts(b"alph"));
        assert!(!keys.accepts(b"alphaa"));
        assert!(!keys.accepts(b""));
    }

    #[test]
    fn no_keys_means_off_and_debug_never_shows_keys() {
        assert!(!ApiKeys::default().enabled());
        let keys = keys("topsecret");
        assert!(!format!("{keys:?}").contains("topsecret"));
        let settings = AuthSettings {
            api_keys: Some("topsecret".parse().expect("infallible")),
            api_keys_file: None,
        };
        assert!(!format!("{settings:?}").contains("topsecret"));
    }

    #[test]
    fn keys_file_with_comments() {
        let path = std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "# team a\nkey-one\n\nkey-two # ci\n").expect("write");
        let keys = ApiKeys::from_settings(&AuthSettings {
            api_keys: None,
            api_keys_file: Some(path.clone()),
        })
        .expect("keys");
        assert!(keys.accepts(b"key-one") && keys.accepts(b"key-two"));
        assert!(!keys.accepts(b"# team a"));
        let _ = std::fs::remove_file(path);
        assert!(ApiKeys::from_settings(&AuthSettings {
            api_keys: None,
            api_keys_file: Some("/nonexistent/keys".into()),
        })
        .is_err());
    }

    /// Only the route registered as open is: not a path that merely ends like it, whether
    /// it is unrouted or matched by another route's pattern.
    #[actix_web::test]
    async fn only_the_registered_open_route_goes_without_a_key() {
        let app = http_test::init_service(
            App::new()
                .app_data(web::Data::new(keys("k")))
                .service(
                    web::scope("/svc/api")
                        .wrap(from_fn(require_api_key))
                        .route("/items/{id}", web::get().to(HttpResponse::Ok))
                        .service(open_resource("/health").route(web::get().to(HttpResponse::Ok))),
                )
                .default_service(web::to(HttpResponse::NotFound)),
        )
        .await;
        let status = |uri: &'static str, key: Option<&'static str>| {
            let mut req = http_test::TestRequest::get().uri(uri);
            if let Some(key) = key {
                req = req.insert_header((API_KEY_HEADER, key));
            }
            let app = &app;
            async move {
                http_test::call_service(app, req.to_request())
                    .await
                    .status()
            }
        };
        assert_eq!(status("/svc/api/health", None).await, 200);
        for guarded in [
            "/svc/api/items/health",
            "/svc/api/x/health",
            "/svc/api/items/1",
        ] {
            assert_eq!(status(guarded, None).await, 401, "{guarded}");
        }
        assert_eq!(status("/svc/api/items/health", Some("k")).await, 200);
        assert_eq!(status("/svc/api/x/health", Some("k")).await, 404);
    }
}
