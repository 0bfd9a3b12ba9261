//! The consumer's settings, read once at start from the environment (or flags).

use clap::Parser;
use log_common::settings::{HttpSettings, KafkaSettings, MetricsSettings, PostgresSettings};

/// log-consumer: stores log events from Kafka in PostgreSQL, exactly once.
///
/// Every option can be given as a flag or through the environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "log-consumer", version)]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub postgres: PostgresSettings,
    #[command(flatten)]
    pub consumer: ConsumerTuning,
    #[command(flatten)]
    pub metrics: MetricsSettings,
}

impl Settings {
    pub const DEFAULT_PORT: u16 = 8082;

    /// Defaults only: what tests start from.
    pub fn defaults() -> Self {
        Settings::parse_from(["log-consumer"])
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConsumerTuning {
    #[arg(
        long = "kafka-group-id",
        env = "KAFKA_GROUP_ID",
        default_value = "log-consumer-group"
    )]
    pub group_id: String,
    /// Parallel writers, each with its own connection and a disjoint share of this
    /// instance's partitions. 0: one per core.
    #[arg(
        long = "consumer-writers",
        env = "CONSUMER_WRITERS",
        default_value_t = 0
    )]
    pub writers: usize,
    /// A batch is written when it holds this many records…
    #[arg(
        long = "batch-max-records",
        env = "CONSUMER_BATCH_MAX_RECORDS",
        default_value_t = 5000
    )]
    pub batch_max_records: usize,
    /// …or when this long has passed since its first record.
    #[arg(
        long = "batch-max-wait-ms",
        env = "CONSUMER_BATCH_MAX_WAIT_MS",
        default_value_t = 100
    )]
    pub batch_max_wait_ms: u64,
    /// First wait after a failed write; doubles (with jitter) up to the max.
    #[arg(
        long = "retry-initial-ms",
        env = "CONSUMER_RETRY_INITIAL_MS",
        default_value_t = 200
    )]
    pub retry_initial_ms: u64,
    #[arg(
        long = "retry-max-ms",
        env = "CONSUMER_RETRY_MAX_MS",
        default_value_t = 10_000
    )]
    pub retry_max_ms: u64,
    /// How rows are written: `unnest` (one array per column) or `values` (one bind
    /// parameter per column per row). See BENCHMARKS.md for the measured difference.
    #[arg(
        long = "insert-mode",
        env = "CONSUMER_INSERT_MODE",
        value_enum,
        default_value = "unnest"
    )]
    pub insert_mode: log_store::InsertMode,
    /// Events whose `timestamp` is older than this many days are deleted (hourly, in
    /// small slices). 0 keeps everything.
    #[arg(long = "retention-days", env = "RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
    /// Kafka session timeout: how soon a killed consumer's partitions move on.
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u32,
}

impl ConsumerTuning {
    /// `CONSUMER_WRITERS`, with 0 read as the number of cores.
    pub fn writer_count(&self) -> usize {
        match self.writers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn settings_definition_is_consistent_and_defaults_parse() {
        Settings::command().debug_assert();
        Settings::try_parse_from(["log-consumer"]).expect("defaults parse");
    }
}
