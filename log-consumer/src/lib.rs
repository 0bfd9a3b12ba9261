//! log-consumer: Kafka -> PostgreSQL with exactly-once offsets.
//!
//! Each batch is one PostgreSQL transaction holding both the rows and the next
//! offset of every partition in the batch; `CONSUMER_WRITERS` writers run such
//! transactions in parallel, each for its own share of the partitions, fenced on the
//! epoch of the instance's claim of each partition. On assignment, partitions are sought to
//! those stored offsets, so a crash at any point replays exactly what was not
//! committed, and rows are keyed by event id so even a replay cannot duplicate.
//!
//! # Layout
//! - [`settings`]: every environment variable the service reads.
//! - [`startup`]: migrations, the Kafka consumer, the pipeline task, the HTTP server.
//! - [`pipeline`]: the poll loop: decodes records and deals them to the writers.
//! - [`writer`]: one of `CONSUMER_WRITERS`: dead letters, then the fenced batch
//!   transaction, retried with backoff.
//! - [`rebalance`]: the consumer context that seeks assigned partitions to the
//!   offsets stored in PostgreSQL and tracks which partitions we own.
//! - [`record`]: turning a Kafka message into a row, or into a reason it is poison.
//!
//! PostgreSQL (migrations, offsets, claims, the fenced batch transaction) is the
//! `log-store` crate's [`log_store::Store`].
//! - [`dead_letter`]: the producer for `log-events-dlq`.
//! - [`http`]: `/actuator/health` and `/actuator/prometheus`.
//! - [`metrics`]: the consumer's Prometheus metrics.

pub mod dead_letter;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod rebalance;
pub mod record;
pub mod retry;
pub mod settings;
pub mod startup;
pub mod writer;
