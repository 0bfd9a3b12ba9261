//! The shipper's settings: flags, each with an environment variable, over an optional
//! TOML config file whose keys are the flags' long names.
//!
//! Precedence, highest first: command-line flag, environment variable, config file,
//! default. The config file is applied by giving each of its keys to the flag's
//! environment variable when that variable is not set, so clap's own precedence
//! (flag over environment over default) does the rest and `--help` stays the one list.

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use log_common::settings::Secret;
use std::path::{Path, PathBuf};

/// log-shipper: follows log files and ships their lines to the producer's `/bulk`.
///
/// At least once, with an id derived from where each line was read (host, file identity,
/// byte offset), so the pipeline's id dedup stores every line exactly once. Every option
/// can be given as a flag, through the environment variable shown, or as a key of the
/// config file (`--config`) named like the flag without its dashes (`producer-url = "…"`).
#[derive(Parser, Debug, Clone)]
#[command(name = "log-shipper", version)]
pub struct Settings {
    /// TOML file whose keys are flag names (`path = ["/var/log/app/*.log"]`,
    /// `start-at = "beginning"`); flags and environment variables override it.
    #[arg(long = "config", env = "SHIPPER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Files to follow: a glob (`/var/log/app/*.log`); repeat the flag for more. In the
    /// environment and the config file, several globs are separated by commas.
    #[arg(
        long = "path",
        value_name = "GLOB",
        env = "SHIPPER_PATHS",
        value_delimiter = ',',
        required = true
    )]
    pub paths: Vec<String>,
    /// Where the checkpoints live (one small JSON file, replaced atomically).
    #[arg(
        long = "state-dir",
        env = "SHIPPER_STATE_DIR",
        default_value = "./shipper-state"
    )]
    pub state_dir: PathBuf,
    /// The producer's base URL; events go to `<url>/producer/api/logs/bulk`.
    #[arg(
        long = "producer-url",
        env = "SHIPPER_PRODUCER_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub producer_url: String,
    /// Where to start in a file found at start-up that has no checkpoint. Files that
    /// appear later (a rotation's new file) are always read from their beginning.
    #[arg(long = "start-at", env = "SHIPPER_START_AT", value_enum, default_value_t = StartAt::End)]
    pub start_at: StartAt,
    /// The `source` of lines that carry none; default: the file's stem (`app` for
    /// `/var/log/app.log`).
    #[arg(long = "source", env = "SHIPPER_SOURCE")]
    pub source: Option<String>,
    /// The host name in every event id (and in `metadata.host`); default: this machine's.
    #[arg(long = "host", env = "SHIPPER_HOST")]
    pub host: Option<String>,
    /// Sent as `X-API-Key` when the producer requires API keys.
    #[arg(long = "api-key", env = "SHIPPER_API_KEY")]
    pub api_key: Option<Secret>,
    /// Body compression: zstd, gzip or none.
    #[arg(long = "compression", env = "SHIPPER_COMPRESSION", value_enum, default_value_t = Compression::Zstd)]
    pub compression: Compression,
    /// Most events in one request (the producer takes 10,000 at most).
    #[arg(long = "batch-max-events", env = "SHIPPER_BATCH_MAX_EVENTS", default_value_t = 5000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_max_events: u32,
    /// Most uncompressed bytes in one request, in KiB (the producer takes 16 MiB).
    #[arg(long = "batch-max-kib", env = "SHIPPER_BATCH_MAX_KIB", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(256..=15_360))]
    pub batch_max_kib: u32,
    /// A batch is sent when it is this old even if not full.
    #[arg(
        long = "batch-wait-ms",
        env = "SHIPPER_BATCH_WAIT_MS",
        default_value_t = 200
    )]
    pub batch_wait_ms: u64,
    /// Batches read ahead of the one being sent. Reading pauses beyond this, so memory
    /// stays bounded while the producer is away.
    #[arg(long = "max-pending-batches", env = "SHIPPER_MAX_PENDING_BATCHES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_pending_batches: u32,
    /// Requests to the producer in flight at once. Their answers are applied in the
    /// order the batches were read, so checkpoints only move over acknowledged lines.
    #[arg(long = "max-inflight-requests", env = "SHIPPER_MAX_INFLIGHT_REQUESTS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_inflight_requests: u32,
    /// A multi-line event (stack trace) is complete when its next line starts a new
    /// event, or when the file has been quiet this long.
    #[arg(
        long = "multiline-timeout-ms",
        env = "SHIPPER_MULTILINE_TIMEOUT_MS",
        default_value_t = 300
    )]
    pub multiline_timeout_ms: u64,
    /// How often files are checked without a file-system notification (and the only
    /// way when `notify` cannot watch, or with `--watch poll`).
    #[arg(
        long = "poll-interval-ms",
        env = "SHIPPER_POLL_INTERVAL_MS",
        default_value_t = 250
    )]
    pub poll_interval_ms: u64,
    /// How often the globs are expanded again to find new and rotated files.
    #[arg(
        long = "scan-interval-ms",
        env = "SHIPPER_SCAN_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub scan_interval_ms: u64,
    /// notify: inotify wakes the shipper at once, polling as a fallback; poll: polling only.
    #[arg(long = "watch", env = "SHIPPER_WATCH", value_enum, default_value_t = Watch::Notify)]
    pub watch: Watch,
    /// A regex with named groups for plain-text lines: `level` (required), and optional
    /// `timestamp`, `message`, `source`. Lines it does not match fall back to keywords.
    #[arg(long = "level-regex", env = "SHIPPER_LEVEL_REGEX")]
    pub level_regex: Option<String>,
    /// Port of the Prometheus endpoint on 127.0.0.1 (`/metrics`); 0 = off.
    #[arg(
        long = "metrics-port",
        env = "SHIPPER_METRICS_PORT",
        default_value_t = 0
    )]
    pub metrics_port: u16,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Notify,
    Poll,
}

impl Settings {
    /// Reads the command line and the environment, with the config file (named by
    /// `--config` or `SHIPPER_CONFIG`) under both. Must run before any other thread
    /// starts, since it may set environment variables.
    pub fn load() -> anyhow::Result<Settings> {
        let args: Vec<String> = std::env::args().collect();
        if let Some(file) = config_file_named(&args) {
            for (var, value) in config_as_env(&file)? {
                if std::env::var_os(&var).is_none() {
                    std::env::set_var(&var, value);
                }
            }
        }
        let matches = Settings::command().get_matches_from(args);
        Ok(Settings::from_arg_matches(&matches)?)
    }

    /// The source for a file's lines that carry none.
    pub fn source_for(&self, path: &Path) -> String {
        self.source.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| "log-shipper".to_owned())
        })
    }
}

fn config_file_named(args: &[String]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os("SHIPPER_CONFIG").map(PathBuf::from)
}

/// The config file's keys as (environment variable, value): each key must be a flag's
/// long name; arrays become comma-separated lists.
pub fn config_as_env(file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the config file {}", file.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing the config file {} (TOML)", file.display()))?;
    let command = Settings::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
        else {
            bail!(
                "config file {}: unknown key `{key}` (keys are the flags' long names, see --help)",
                file.display()
            );
        };
        let var = arg
            .get_env()
            .and_then(|v| v.to_str())
            .context("every flag has an environment variable")?
            .to_owned();
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    other => bail!(
                        "config file {}: `{key}` holds {other}, expected strings",
                        file.display()
                    ),
                })
                .collect::<anyhow::Result<Vec<_>>>()?
                .join(","),
            other => bail!(
                "config file {}: `{key}` = {other} is not a flag value",
                file.display()
            ),
        };
        out.push((var, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_definition_is_consistent_and_the_documented_defaults_hold() {
        Settings::command().debug_assert();
        let s = Settings::try_parse_from(["log-shipper", "--path", "/tmp/*.log"]).expect("parse");
        assert_eq!(s.producer_url, "http://127.0.0.1:8081");
        assert_eq!(s.start_at, StartAt::End);
        assert_eq!(s.paths, vec!["/tmp/*.log"]);
        assert_eq!(s.source_for(Path::new("/var/log/app.log")), "app");
    }

    #[test]
    fn the_path_flag_repeats() {
        let s = Settings::try_parse_from(["log-shipper", "--path", "a/*.log", "--path", "b.log"])
            .expect("parse");
        assert_eq!(s.paths, vec!["a/*.log", "b.log"]);
    }

    #[test]
    fn config_keys_map_to_the_flags_environment_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("shipper.toml");
        std::fs::write(
            &file,
            "path = [\"/a/*.log\", \"/b.log\"]\nstart-at = \"beginning\"\nbatch-max-events = 100\n",
        )
        .expect("write");
        let mut env = config_as_env(&file).expect("config");
        env.sort();
        assert_eq!(
            env,
            vec![
                ("SHIPPER_BATCH_MAX_EVENTS".to_owned(), "100".to_owned()),
                ("SHIPPER_PATHS".to_owned(), "/a/*.log,/b.log".to_owned()),
                ("SHIPPER_START_AT".to_owned(), "beginning".to_owned()),
            ]
        );
        // Embedded when the test is built, not read from the source tree when it runs:
        // a test binary reused from a build of another checkout (a shared target
        // directory) would look for the example there.
        let example = dir.path().join("shipper.example.toml");
        std::fs::write(&example, include_str!("../shipper.example.toml")).expect("write");
        config_as_env(&example).expect("the example config file is valid");
        std::fs::write(&file, "pth = \"x\"\n").expect("write");
        let error = config_as_env(&file).expect_err("unknown key").to_string();
        assert!(error.contains("unknown key `pth`"), "{error}");
    }
}
