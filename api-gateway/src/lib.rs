//! api-gateway: queries over the stored log events, cached in Redis.
//!
//! # Layout
//! - [`settings`]: every environment variable the service reads.
//! - [`startup`]: pools (PostgreSQL, Redis), the app, shutdown.
//! - [`params`]: query-string parsing and validation into typed filters; every 400
//!   names its parameter.
//! - [`repository`]: the SQL (pages, keyset cursor, capped counts, search, stats),
//!   behind a circuit breaker.
//! - [`cache`]: Redis cache-aside with bounded freshness and single-flight misses;
//!   Redis trouble degrades to PostgreSQL, never to an error.
//! - [`routes`]: the HTTP handlers and the OpenAPI document.
//! - [`metrics`]: the gateway's Prometheus metrics.

pub mod cache;
pub mod metrics;
pub mod params;
pub mod repository;
pub mod routes;
pub mod settings;
pub mod startup;
