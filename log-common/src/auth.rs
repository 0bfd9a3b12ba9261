//! Optional API keys. When `API_KEYS` (comma-separated) or `API_KEYS_FILE` (one key a
//! line, `#` comments) is set, ingest and query endpoints require a key, presented in
//! any of the forms the log agents send ([`presented_key`]: `X-API-Key`, `Authorization:
//! Bearer`, `Authorization: ApiKey`, or the password of basic auth); metrics and the API docs (outside the keyed scopes)
//! and each service's liveness route (registered with [`open_resource`]) stay open. When
//! neither is set, every request is let through (local development).
//!
//! Keys are compared in constant time and never logged or printed.
//!
//! Admin scope: `ADMIN_API_KEYS` / `ADMIN_API_KEYS_FILE` (same syntax) name the keys that
//! may also use the admin endpoints ([`require_admin_key`]: 401 without a valid key, 403
//! with a valid key that is not an admin key). An admin key is an ordinary key too, and
//! keys are "on" when any key of either kind is configured. An audit names a key by its
//! [`fingerprint`], never by the key.

use crate::error::ApiError;
use crate::settings::Secret;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::web;
use actix_web::HttpRequest;
use anyhow::Context;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// Header carrying the client's API key (for the other forms, see [`presented_key`]).
pub const API_KEY_HEADER: &str = "X-API-Key";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct AuthSettings {
    /// Comma-separated API keys. Unset (and no file): no key is required.
    #[arg(long = "api-keys", env = "API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret>,
    /// A file with one API key per line (`#` starts a comment).
    #[arg(long = "api-keys-file", env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Comma-separated admin API keys: also valid as ordinary keys, and the only ones
    /// the admin endpoints (dead letters) accept.
    #[arg(
        long = "admin-api-keys",
        env = "ADMIN_API_KEYS",
        hide_env_values = true
    )]
    pub admin_api_keys: Option<Secret>,
    /// A file with one admin API key per line (`#` starts a comment).
    #[arg(long = "admin-api-keys-file", env = "ADMIN_API_KEYS_FILE")]
    pub admin_api_keys_file: Option<PathBuf>,
}

/// The accepted keys; none at all means authentication is off.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<Vec<u8>>,
    /// Admin keys, accepted everywhere ordinary keys are, and in the admin scope.
    admin: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ApiKeys({} keys, {} admin keys)",
            self.keys.len(),
            self.admin.len()
        )
    }
}

/// The keys of a comma-separated list and of a file (one a line, `#` comments);
/// `file_var` names the file's variable in an error.
fn read_keys(
    list: Option<&Secret>,
    file: Option<&PathBuf>,
    file_var: &str,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    if let Some(list) = list {
        keys.extend(
            list.expose()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| k.as_bytes().to_vec()),
        );
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{file_var}: cannot read {}", path.display()))?;
        keys.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|k| !k.is_empty())
                .map(|k| k.as_bytes().to_vec()),
        );
    }
    Ok(keys)
}

/// Constant time in the key's content: every key of `keys` is compared, whatever
/// matched first.
fn any_matches(keys: &[Vec<u8>], presented: &[u8]) -> bool {
    let mut accepted = subtle::Choice::from(0);
    for key in keys {
        accepted |= key.as_slice().ct_eq(presented);
    }
    accepted.into()
}

impl ApiKeys {
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<Self> {
        Ok(ApiKeys {
            keys: read_keys(
                settings.api_keys.as_ref(),
                settings.api_keys_file.as_ref(),
                "API_KEYS_FILE",
            )?,
            admin: read_keys(
                settings.admin_api_keys.as_ref(),
                settings.admin_api_keys_file.as_ref(),
                "ADMIN_API_KEYS_FILE",
            )?,
        })
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
        !self.keys.is_empty() || !self.admin.is_empty()
    }

    /// An ordinary or an admin key. Constant time in the key's content: every stored
    /// key is compared, whatever matched first.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        // `|` rather than `||`: both lists are always compared.
        any_matches(&self.keys, presented) | any_matches(&self.admin, presented)
    }

    /// An admin key (constant time, like [`ApiKeys::accepts`]).
    pub fn accepts_admin(&self, presented: &[u8]) -> bool {
        any_matches(&self.admin, presented)
    }
}

/// What an audit records of the key a request came with: the first 12 hex characters
/// of its SHA-256 (enough to tell a deployment's keys apart, useless to recover one).
pub fn fingerprint(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The audit's name for a caller while keys are off.
pub const ANONYMOUS: &str = "anonymous";

/// Who made `req`, for an audit: the [`fingerprint`] of its key when keys are on (the
/// middleware has checked it), else [`ANONYMOUS`].
pub fn caller_fingerprint(req: &HttpRequest) -> String {
    let keys_on = req
        .app_data::<web::Data<ApiKeys>>()
        .is_some_and(|k| k.enabled());
    match presented_key(req.headers()) {
        Some(key) if keys_on => fingerprint(&key),
        _ => ANONYMOUS.to_owned(),
    }
}

/// The key a request presents. One rule for every route, in the forms the clients and
/// agents people run send it:
/// - `X-API-Key: <key>` (ours; it wins when a request also has `Authorization`);
/// - `Authorization: Bearer <key>` (OTLP exporters, Promtail's `bearer_token`);
/// - `Authorization: ApiKey <key>` (Elasticsearch clients' `api_key`, sent as given);
/// - `Authorization: Basic …`, whose password is the key and whose user name is ignored
///   (Loki clients, Filebeat's and Fluent Bit's username/password).
///
/// The scheme is matched case-insensitively, as HTTP says.
pub fn presented_key(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    if let Some(key) = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(Cow::Borrowed(key.trim()));
    }
    let authorization = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = authorization.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("ApiKey") {
        Some(Cow::Borrowed(credentials))
    } else if scheme.eq_ignore_ascii_case("Basic") {
        basic_auth_password(credentials).map(Cow::Owned)
    } else {
        None
    }
}

/// The password of `Basic` credentials (`base64(user:password)`), when they decode.
fn basic_auth_password(credentials: &str) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// What a 401 tells the client about presenting a key.
const KEY_FORMS: &str = "send X-API-Key: <key>, Authorization: Bearer <key> or ApiKey <key>, \
     or basic auth with the key as password";

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
                None => Some(format!("an API key is required: {KEY_FORMS}")),
                Some(key) if !keys.accepts(key.as_bytes()) => {
                    Some("the API key is not valid".to_owned())
                }
                Some(_) => None,
            };
            if let Some(message) = refusal {
                let path = req.path().to_owned();
                let response = ApiError::Unauthorized(message).response_at(&path);
                return Ok(req.into_response(response));
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Middleware (via `from_fn`) for the admin scope. Keys on: 401 without a valid key,
/// 403 with a valid key that is not an admin key, through with an admin key. Keys off:
/// open, like every scope (local development).
pub async fn require_admin_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let keys = req.app_data::<web::Data<ApiKeys>>().cloned();
    if let Some(keys) = keys.filter(|k| k.enabled()) {
        let refusal = match presented_key(req.headers()) {
            None => Some(ApiError::Unauthorized(format!(
                "an admin API key is required: {KEY_FORMS}"
            ))),
            Some(key) if !keys.accepts(key.as_bytes()) => Some(ApiError::Unauthorized(
                "the API key is not valid".to_owned(),
            )),
            Some(key) if !keys.accepts_admin(key.as_bytes()) => Some(ApiError::Forbidden(
                "this API key has no admin scope: use a key of ADMIN_API_KEYS".to_owned(),
            )),
            Some(_) => None,
        };
        if let Some(error) = refusal {
            let path = req.path().to_owned();
            return Ok(req.into_response(error.response_at(&path)));
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
            ..AuthSettings::default()
        })
        .expect("keys")
    }

    fn with_admin(list: &str, admin: &str) -> ApiKeys {
        ApiKeys::from_settings(&AuthSettings {
            api_keys: Some(list.parse().expect("infallible")),
            admin_api_keys: Some(admin.parse().expect("infallible")),
            ..AuthSettings::default()
        })
        .expect("keys")
    }

    #[test]
    fn an_admin_key_is_an_ordinary_key_too_and_turns_keys_on_alone() {
        let keys = with_admin("reader", "root");
        assert!(keys.accepts(b"reader") && keys.accepts(b"root"));
        assert!(keys.accepts_admin(b"root"));
        assert!(!keys.accepts_admin(b"reader"));
        assert!(!keys.accepts_admin(b"roo"));
        let admin_only = ApiKeys::from_settings(&AuthSettings {
            admin_api_keys: Some("root".parse().expect("infallible")),
            ..AuthSettings::default()
        })
        .expect("keys");
        assert!(admin_only.enabled());
        assert!(admin_only.accepts(b"root"));
        assert!(!format!("{admin_only:?}").contains("root"));
    }

    #[test]
    fn admin_keys_file_errors_name_their_variable() {
        let error = ApiKeys::from_settings(&AuthSettings {
            admin_api_keys_file: Some("/nonexistent/admin-keys".into()),
            ..AuthSettings::default()
        })
        .expect_err("missing file");
        assert!(
            format!("{error:#}").contains("ADMIN_API_KEYS_FILE"),
            "{error:#}"
        );
    }

    #[test]
    fn a_fingerprint_is_twelve_hex_characters_of_the_sha256() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223…
        assert_eq!(fingerprint("abc"), "ba7816bf8f01");
        assert_ne!(fingerprint("abd"), fingerprint("abc"));
    }

    #[actix_web::test]
    async fn the_admin_scope_answers_401_403_or_lets_through() {
        let app = |keys: ApiKeys| {
            http_test::init_service(App::new().app_data(web::Data::new(keys)).service(
                web::scope("/admin").wrap(from_fn(require_admin_key)).route(
                    "/x",
                    web::get().to(|req: HttpRequest| async move {
                        HttpResponse::Ok().body(caller_fingerprint(&req))
                    }),
                ),
            ))
        };
        let call = |key: Option<&'static str>| {
            let mut req = http_test::TestRequest::get().uri("/admin/x");
            if let Some(key) = key {
                req = req.insert_header((API_KEY_HEADER, key));
            }
            req.to_request()
        };
        let keyed = app(with_admin("reader", "root")).await;
        for (key, status) in [
            (None, 401),
            (Some("wrong"), 401),
            (Some("reader"), 403),
            (Some("root"), 200),
        ] {
            let response = http_test::call_service(&keyed, call(key)).await;
            assert_eq!(response.status(), status, "{key:?}");
            if status == 403 {
                let body: serde_json::Value = http_test::read_body_json(response).await;
                assert_eq!(body["status"], 403);
                assert_eq!(body["error"], "Forbidden");
                assert_eq!(body["path"], "/admin/x");
            } else if status == 200 {
                let body = http_test::read_body(response).await;
                assert_eq!(body, fingerprint("root").as_bytes());
            }
        }
        let open = app(ApiKeys::default()).await;
        let response = http_test::call_service(&open, call(Some("anything"))).await;
        assert_eq!(response.status(), 200);
        assert_eq!(http_test::read_body(response).await, ANONYMOUS.as_bytes());
    }

    #[test]
    fn a_key_is_read_from_every_form_the_agents_send() {
        use actix_web::http::header::{HeaderName, HeaderValue};
        let read = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    HeaderValue::from_str(value).expect("value"),
                );
            }
            presented_key(&headers).map(|k| k.into_owned())
        };
        let basic = |userpass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(userpass)
            )
        };
        assert_eq!(read(&[("x-api-key", " k1 ")]).as_deref(), Some("k1"));
        assert_eq!(
            read(&[("authorization", "Bearer k2")]).as_deref(),
            Some("k2")
        );
        assert_eq!(
            read(&[("authorization", "bearer k2")]).as_deref(),
            Some("k2")
        );
        assert_eq!(
            read(&[("authorization", "ApiKey k3")]).as_deref(),
            Some("k3")
        );
        assert_eq!(
            read(&[("authorization", &basic("elastic:k4:with-colon"))]).as_deref(),
            Some("k4:with-colon"),
            "the password is everything after the first colon"
        );
        assert_eq!(
            read(&[("authorization", &basic("tenant:"))]).as_deref(),
            Some("")
        );
        // X-API-Key wins over Authorization.
        assert_eq!(
            read(&[("x-api-key", "k1"), ("authorization", "Bearer k2")]).as_deref(),
            Some("k1")
        );
        for refused in [
            "Basic !!!not-base64",
            "Basic dXNlcm9ubHk=", // "useronly": no password
            "Digest k5",
            "k6",
        ] {
            assert_eq!(read(&[("authorization", refused)]), None, "{refused}");
        }
        assert_eq!(read(&[]), None);
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
            admin_api_keys: Some("rootsecret".parse().expect("infallible")),
            ..AuthSettings::default()
        };
        assert!(!format!("{settings:?}").contains("rootsecret"));
        assert!(!format!("{settings:?}").contains("topsecret"));
    }

    #[test]
    fn keys_file_with_comments() {
        let path = std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::new_v4()));
        std::fs::write(&path, "# team a\nkey-one\n\nkey-two # ci\n").expect("write");
        let keys = ApiKeys::from_settings(&AuthSettings {
            api_keys_file: Some(path.clone()),
            ..AuthSettings::default()
        })
        .expect("keys");
        assert!(keys.accepts(b"key-one") && keys.accepts(b"key-two"));
        assert!(!keys.accepts(b"# team a"));
        let _ = std::fs::remove_file(path);
        assert!(ApiKeys::from_settings(&AuthSettings {
            api_keys_file: Some("/nonexistent/keys".into()),
            ..AuthSettings::default()
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
