//! log-shipper: follows log files and ships their lines to the producer's `/bulk`.
//!
//! At least once, with ids derived from where each line was read, so the pipeline's id
//! dedup stores each line exactly once (README, "Ship your files").
//!
//! # Layout
//! - [`settings`]: flags, environment variables and the TOML config file.
//! - [`startup`]: [`startup::Application`]: wires the parts, runs until shutdown.
//! - [`reader`]: globs, rotation, reading lines in bounded memory, batching (a thread).
//! - [`multiline`]: joins stack traces (Java, Python) into one event.
//! - [`parse`]: JSON lines and plain text to valid [`log_common::event::LogEvent`]s.
//! - [`identity`]: file identity (device, inode, fingerprint) and the event ids.
//! - [`sender`]: compression, the HTTP request, retries, then the checkpoints.
//! - [`checkpoint`]: the checkpoint file, replaced atomically.
//! - [`watch`]: `notify` wake-ups, with polling as the fallback.
//! - [`metrics`]: Prometheus counters and the endpoint serving them.

pub mod checkpoint;
pub mod identity;
pub mod metrics;
pub mod multiline;
pub mod parse;
pub mod reader;
pub mod sender;
pub mod settings;
pub mod startup;
pub mod watch;
