//! log-producer: REST ingest of log events into Kafka.
//!
//! # Layout
//! - [`settings`]: every environment variable the service reads, in one struct.
//! - [`startup`]: [`startup::Application`] binds the listener, wires the app, runs it
//!   until shutdown, then flushes the Kafka queue.
//! - [`routes`]: the HTTP handlers (`ingest`, `batch`, `bulk`, health) and OpenAPI.
//! - [`publisher`]: the Kafka producer behind a circuit breaker; one event or many,
//!   each answered only after Kafka's acknowledgement.
//! - [`rate_limit`]: per-client (API key, else IP) limits counted in events.
//! - [`syslog`]: the syslog listeners (TCP and UDP; RFC 5424 and RFC 3164), whose
//!   messages take the agents' path into Kafka.
//! - [`admission`]: the bound on request bytes held at once, for all clients together.
//! - [`metrics`]: the service's Prometheus metrics.

pub mod admission;
pub mod metrics;
pub mod publisher;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod syslog;
