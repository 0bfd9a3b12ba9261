//! api-gateway: queries over the stored log events, cached in Redis.
//!
//! # Layout
//! - [`settings`]: every environment variable the service reads.
//! - [`startup`]: pools (PostgreSQL, Redis), the app, shutdown.
//! - [`params`]: query-string parsing and validation into typed filters; every 400
//!   names its parameter.
//! - [`service`]: the query service: cache, PostgreSQL pool and breaker; the one
//!   place store errors become API errors. The SQL itself is the `log-store` crate's.
//! - [`api`]: the answers (pages, stats) with their OpenAPI schemas, and the stats
//!   assembly.
//! - [`cache`]: Redis cache-aside with bounded freshness and single-flight misses;
//!   Redis trouble degrades to PostgreSQL, never to an error.
//! - [`dead_letters`]: the admin side of the dead letters: the consumer's index,
//!   replays through the producer, their audit, the gauges.
//! - [`tail`]: the live tail's streams (Server-Sent Events), one polling task each.
//! - [`routes`]: the HTTP handlers, the explorer's embedded files (`ui/`) and the
//!   OpenAPI document.
//! - [`metrics`]: the gateway's Prometheus metrics.

pub mod api;
pub mod cache;
pub mod dead_letters;
pub mod metrics;
pub mod params;
pub mod routes;
pub mod service;
pub mod settings;
pub mod startup;
pub mod tail;
