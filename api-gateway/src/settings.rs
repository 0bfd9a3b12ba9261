//! The gateway's settings, read once at start from the environment (or flags).

use clap::Parser;
use log_common::auth::AuthSettings;
use log_common::settings::{HttpSettings, MetricsSettings, PostgresSettings};
use log_store::queries::TailTopics;

/// api-gateway: time-range, filter, full-text search and stats queries over the
/// stored log events, cached in Redis.
///
/// Every option can be given as a flag or through the environment variable shown.
#[derive(Parser, Debug, Clone)]
#[command(name = "api-gateway", version)]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub postgres: PostgresSettings,
    #[command(flatten)]
    pub limits: QueryLimits,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub cache: CacheSettings,
    #[command(flatten)]
    pub tail: TailSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    #[command(flatten)]
    pub replay: ReplaySettings,
    #[command(flatten)]
    pub metrics: MetricsSettings,
}

impl Settings {
    pub const DEFAULT_PORT: u16 = 8080;

    /// Defaults only: what tests start from.
    pub fn defaults() -> Self {
        Settings::parse_from(["api-gateway"])
    }
}

/// How long each class of query may run (PostgreSQL `statement_timeout`, per
/// statement). Past it PostgreSQL cancels the statement, the request gets a 503 naming
/// the limit, and the connection and worker are free again at once.
#[derive(clap::Args, Debug, Clone)]
pub struct QueryLimits {
    /// One event by id, a correlation or trace id's events, the health probe.
    #[arg(
        long = "query-timeout-lookup-ms",
        env = "QUERY_TIMEOUT_LOOKUP_MS",
        default_value_t = 1_000
    )]
    pub lookup_ms: u64,
    /// A page of `/logs` by time, level and source, with its exact total.
    #[arg(
        long = "query-timeout-page-ms",
        env = "QUERY_TIMEOUT_PAGE_MS",
        default_value_t = 2_000
    )]
    pub page_ms: u64,
    /// Anything with full text: `/search`, `/histogram?query=`.
    #[arg(
        long = "query-timeout-search-ms",
        env = "QUERY_TIMEOUT_SEARCH_MS",
        default_value_t = 5_000
    )]
    pub search_ms: u64,
    /// `/stats` and `/histogram` from the rollups.
    #[arg(
        long = "query-timeout-aggregate-ms",
        env = "QUERY_TIMEOUT_AGGREGATE_MS",
        default_value_t = 5_000
    )]
    pub aggregate_ms: u64,
    /// Longest a full-text page may walk newest first checking each row; past it the
    /// full-text index finds every match instead (rare words). 0: always the index.
    /// The walk finds a page of a common word in milliseconds, and of a word that is
    /// common only in older rows in a few hundred; a word no row has takes the budget
    /// and then a few milliseconds from the index.
    #[arg(
        long = "search-walk-budget-ms",
        env = "SEARCH_WALK_BUDGET_MS",
        default_value_t = 300
    )]
    pub search_walk_budget_ms: u64,
    /// Longest the count behind a full-text, correlation or trace id total may run; past it
    /// the total is the planner's estimate (`totalElementsExact: false`).
    #[arg(
        long = "count-budget-ms",
        env = "COUNT_BUDGET_MS",
        default_value_t = 50
    )]
    pub count_budget_ms: u64,
}

impl TailSettings {
    pub fn topics(&self) -> TailTopics {
        TailTopics {
            normal: self.topic.clone(),
            priority: self.priority_topic.clone(),
        }
    }
}

/// The live tail (`/tail`, Server-Sent Events): which stream it follows, how often it
/// looks for new rows, and what a client may cost.
#[derive(clap::Args, Debug, Clone)]
pub struct TailSettings {
    /// The topic whose stored offsets the tail follows (the consumer's `KAFKA_TOPIC`).
    #[arg(long = "tail-topic", env = "KAFKA_TOPIC", default_value = "log-events")]
    pub topic: String,
    /// The priority topic, followed alongside (the consumer's `KAFKA_PRIORITY_TOPIC`).
    #[arg(
        long = "tail-priority-topic",
        env = "KAFKA_PRIORITY_TOPIC",
        default_value = "log-events-priority"
    )]
    pub priority_topic: String,
    /// The consumer group whose stored offsets the tail follows (the consumer's
    /// `KAFKA_GROUP_ID`).
    #[arg(
        long = "tail-group-id",
        env = "KAFKA_GROUP_ID",
        default_value = "log-consumer-group"
    )]
    pub group_id: String,
    /// Tail streams one gateway process serves at once; past it, 503.
    #[arg(
        long = "tail-max-clients",
        env = "TAIL_MAX_CLIENTS",
        default_value_t = 64
    )]
    pub max_clients: usize,
    /// How often each stream looks for new rows: the most a stored event waits
    /// before it is sent.
    #[arg(long = "tail-poll-ms", env = "TAIL_POLL_MS", default_value_t = 250)]
    pub poll_ms: u64,
    /// A comment line at least this often, so proxies keep an idle stream open.
    #[arg(
        long = "tail-heartbeat-secs",
        env = "TAIL_HEARTBEAT_SECS",
        default_value_t = 15
    )]
    pub heartbeat_secs: u64,
    /// Events one poll reads per partition (1..=10000); more are read by the next
    /// poll at once. A poll also stops after examining 100 times as many rows that do
    /// not match, so a narrow filter resuming from far back moves on in steps.
    #[arg(long = "tail-batch", env = "TAIL_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
    /// How long a client may leave a poll's events unread (its buffer full) before
    /// it is dropped. It can reconnect with `Last-Event-ID` and lose nothing.
    #[arg(
        long = "tail-slow-client-ms",
        env = "TAIL_SLOW_CLIENT_MS",
        default_value_t = 5_000
    )]
    pub slow_client_ms: u64,
}

/// Where the admin endpoints send a replayed dead letter.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplaySettings {
    /// Base URL of the producer whose `/producer/api/logs/ingest` validates and
    /// publishes replayed dead letters (the caller's API key goes along).
    #[arg(
        long = "producer-url",
        env = "PRODUCER_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub producer_url: String,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RedisSettings {
    #[arg(
        id = "redis_host",
        long = "redis-host",
        env = "REDIS_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,
    #[arg(
        id = "redis_port",
        long = "redis-port",
        env = "REDIS_PORT",
        default_value_t = 6379
    )]
    pub port: u16,
    /// Longest wait for one Redis command; past it the answer comes from PostgreSQL.
    #[arg(
        long = "redis-timeout-ms",
        env = "REDIS_TIMEOUT_MS",
        default_value_t = 100
    )]
    pub timeout_ms: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CacheSettings {
    /// TTL of a query whose window reaches into the last `CACHE_RECENT_WINDOW_SECS`:
    /// new events can still arrive there, so keep it short.
    #[arg(
        long = "cache-ttl-recent-secs",
        env = "CACHE_TTL_RECENT_SECS",
        default_value_t = 5
    )]
    pub ttl_recent_secs: u64,
    /// TTL of a query over a window that closed before that: its answer is settled.
    #[arg(
        long = "cache-ttl-closed-secs",
        env = "CACHE_TTL_CLOSED_SECS",
        default_value_t = 300
    )]
    pub ttl_closed_secs: u64,
    #[arg(
        long = "cache-ttl-stats-secs",
        env = "CACHE_TTL_STATS_SECS",
        default_value_t = 30
    )]
    pub ttl_stats_secs: u64,
    /// How far back "recent" reaches (late events land within it).
    #[arg(
        long = "cache-recent-window-secs",
        env = "CACHE_RECENT_WINDOW_SECS",
        default_value_t = 300
    )]
    pub recent_window_secs: u64,
    /// Set to false to turn the cache off entirely.
    #[arg(long = "cache-enabled", env = "CACHE_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn settings_definition_is_consistent_and_defaults_parse() {
        Settings::command().debug_assert();
        let settings = Settings::try_parse_from(["api-gateway"]).expect("defaults parse");
        assert_eq!(settings.redis.port, 6379);
        assert!(Settings::try_parse_from(["api-gateway", "--tail-batch", "0"]).is_err());
    }
}
