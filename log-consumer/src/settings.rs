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
    /// A batch is written when it holds this many records (while its writer is still
    /// busy with the one before, it grows up to twice that)…
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
    /// Days kept before today (UTC). A day's partition is dropped whole once the day
    /// is more than this many days ago, and an event of such a day is dead-lettered,
    /// not stored. 0 keeps everything.
    #[arg(long = "retention-days", env = "RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u32,
    /// How events are stored: `rows`, one `log_events` row each, or `blocks`,
    /// compressed event blocks in `log_blocks` (README, "Event blocks"). The gateway
    /// reads whichever holds events, both while rows move into blocks.
    #[arg(
        long = "storage-layout",
        env = "STORAGE_LAYOUT",
        value_enum,
        default_value_t = log_store::Layout::Rows
    )]
    pub storage_layout: log_store::Layout,
    /// With the `blocks` layout: move the rows stored before into blocks in the
    /// background, oldest first, until none is left. `false` leaves them rows until
    /// retention drops their days.
    #[arg(long = "move-rows-to-blocks", env = "MOVE_ROWS_TO_BLOCKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub move_rows_to_blocks: bool,
    /// How many days (UTC, today included) an event id is remembered whatever its
    /// timestamp: a second copy with another timestamp within that time is skipped.
    /// A copy with the same timestamp is skipped for as long as the row is kept.
    #[arg(long = "id-memory-days", env = "ID_MEMORY_DAYS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub id_memory_days: u32,
    /// Days the dead-letter index (the admin endpoints' list and replay, payloads
    /// included) keeps an entry and its replay audit, counted from when the record
    /// failed; purged by the upkeep every five minutes. 0 keeps everything. Independent
    /// of the dead-letter topic's own Kafka retention.
    #[arg(
        long = "dead-letter-retention-days",
        env = "DEAD_LETTER_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub dead_letter_retention_days: u32,
    /// Kafka session timeout: how soon a killed consumer's partitions move on.
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u32,
}

impl ConsumerTuning {
    pub fn upkeep(&self) -> log_store::Upkeep {
        log_store::Upkeep {
            retention_days: self.retention_days,
            id_memory_days: self.id_memory_days,
            dead_letter_retention_days: self.dead_letter_retention_days,
        }
    }

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
