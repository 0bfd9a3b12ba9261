//! The producer's settings, read once at start from the environment (or flags).

use clap::Parser;
use log_common::auth::AuthSettings;
use log_common::settings::{HttpSettings, KafkaSettings, MetricsSettings};

/// log-producer: validates log events and publishes them to Kafka.
///
/// Every option can be given as a flag or through the environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "log-producer", version)]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub producer: ProducerTuning,
    #[command(flatten)]
    pub admission: AdmissionSettings,
    #[command(flatten)]
    pub rate_limit: RateLimitSettings,
    #[command(flatten)]
    pub breaker: BreakerSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub metrics: MetricsSettings,
    #[command(flatten)]
    pub syslog: SyslogSettings,
}

/// The syslog listeners (`crate::syslog`); each is off unless given an address.
#[derive(clap::Args, Debug, Clone)]
pub struct SyslogSettings {
    /// Address of the syslog TCP listener (`127.0.0.1:6514`; port 0 picks one):
    /// RFC 5424 or RFC 3164 messages, octet-counted or one a line.
    #[arg(long = "syslog-tcp-addr", env = "SYSLOG_TCP_ADDR")]
    pub tcp_addr: Option<String>,
    /// Address of the syslog UDP listener (`127.0.0.1:5514`): one message a datagram.
    #[arg(long = "syslog-udp-addr", env = "SYSLOG_UDP_ADDR")]
    pub udp_addr: Option<String>,
}

impl Settings {
    pub const DEFAULT_PORT: u16 = 8081;

    /// Defaults only: what tests start from.
    pub fn defaults() -> Self {
        Settings::parse_from(["log-producer"])
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ProducerTuning {
    /// How long librdkafka waits to fill a batch; a few ms buys much throughput.
    #[arg(long = "kafka-linger-ms", env = "KAFKA_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u32,
    /// Upper bound on waiting for Kafka's acknowledgement; past it the event is
    /// reported as failed, so no request can hang on a dead broker.
    #[arg(
        long = "kafka-delivery-timeout-ms",
        env = "KAFKA_DELIVERY_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub delivery_timeout_ms: u32,
    /// lz4, zstd, gzip, snappy or none.
    #[arg(
        long = "kafka-compression",
        env = "KAFKA_COMPRESSION",
        default_value = "lz4"
    )]
    pub compression: String,
    /// Most messages queued in the producer before sends are refused (bounded memory).
    #[arg(
        long = "kafka-queue-max-messages",
        env = "KAFKA_QUEUE_MAX_MESSAGES",
        default_value_t = 500_000
    )]
    pub queue_max_messages: u32,
}

/// The producer-wide bound on request bytes (see `admission`).
#[derive(clap::Args, Debug, Clone)]
pub struct AdmissionSettings {
    /// Request bytes the producer holds at once, in MiB (bodies being read, parsed or
    /// waiting for Kafka): a flood costs bounded memory. A body of unknown or
    /// compressed size counts as the 16 MiB maximum.
    #[arg(
        long = "ingest-max-inflight-mib",
        env = "INGEST_MAX_INFLIGHT_MIB",
        default_value_t = 32
    )]
    pub max_inflight_mib: u32,
    /// How long a request that does not fit waits for room (in arrival order) before
    /// it gets 503 + Retry-After. Short bursts queue instead of failing; a flood is
    /// still refused within this time. 0 = refuse at once.
    #[arg(
        long = "ingest-admission-wait-ms",
        env = "INGEST_ADMISSION_WAIT_MS",
        default_value_t = 1000
    )]
    pub wait_ms: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RateLimitSettings {
    /// Sustained events per second allowed to one client (API key, else IP).
    #[arg(
        long = "rate-limit-per-second",
        env = "RATE_LIMIT_EVENTS_PER_SECOND",
        default_value_t = 200_000
    )]
    pub events_per_second: u32,
    /// Events one client may send at once above the sustained rate. At least the
    /// largest batch (10,000), or such a batch could never pass.
    #[arg(
        long = "rate-limit-burst",
        env = "RATE_LIMIT_BURST",
        default_value_t = 400_000
    )]
    pub burst: u32,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive failed deliveries that open the Kafka circuit breaker.
    #[arg(
        long = "breaker-failure-threshold",
        env = "BREAKER_FAILURE_THRESHOLD",
        default_value_t = 5
    )]
    pub failure_threshold: u32,
    /// First open period; doubles on every failed probe up to `BREAKER_MAX_OPEN_MS`.
    #[arg(
        long = "breaker-open-ms",
        env = "BREAKER_OPEN_MS",
        default_value_t = 2000
    )]
    pub open_ms: u64,
    #[arg(
        long = "breaker-max-open-ms",
        env = "BREAKER_MAX_OPEN_MS",
        default_value_t = 30_000
    )]
    pub max_open_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn settings_definition_is_consistent_and_defaults_parse() {
        Settings::command().debug_assert();
        Settings::try_parse_from(["log-producer"]).expect("defaults parse");
    }
}
