//! Optional API keys. When `API_KEYS` (comma-separated) or `API_KEYS_FILE` (one key a
//! line, `#` comments) is set, ingest and query endpoints require `X-API-Key: <key>`
//! or `Authorization: Bearer <key>`; health, metrics and the API docs stay open. When
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

/// Middleware (via `from_fn`) for the ingest and query scopes: 401 without a valid key
/// when keys are configured. Liveness (`…/health`) stays open for probes.
pub async fn require_api_key(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let keys = req.app_data::<web::Data<ApiKeys>>().cloned();
    if let Some(keys) = keys.filter(|k| k.enabled()) {
        if !req.path().ends_with("/health") {
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
}
