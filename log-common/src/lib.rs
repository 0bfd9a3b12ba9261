//! What the three services share, and nothing more.
//!
//! # Layout
//! - [`domain`]: the event's fields as newtypes that can only hold valid values
//!   (id, level, source, message), each with the one `parse` serde uses too.
//! - [`event`]: the log event as users send it and as it travels through Kafka,
//!   with the contract's validation and normalisation (levels, timestamps, limits).
//! - [`auth`]: optional API keys (`API_KEYS`, `API_KEYS_FILE`) for ingest and queries,
//!   admin keys (`ADMIN_API_KEYS`, `ADMIN_API_KEYS_FILE`) for the admin scope.
//! - [`breaker`]: a circuit breaker whose state shows in metrics and health.
//! - [`error`]: the one error type at the HTTP boundary and its Spring-shaped JSON.
//! - [`http`]: middleware every service wraps its app in (request metrics, error
//!   paths) and the `/actuator/prometheus` handler.
//! - [`settings`]: typed settings pieces read from the contract's environment variables.
//! - [`telemetry`]: `tracing` subscriber setup (JSON logs when `LOG_FORMAT=json`).
//! - [`shutdown`]: a future that resolves on SIGINT or SIGTERM.

pub mod auth;
pub mod breaker;
pub mod domain;
pub mod error;
pub mod event;
pub mod http;
pub mod ids;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
