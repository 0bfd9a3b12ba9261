//! Settings pieces shared by the services, read from the contract's environment
//! variables through `clap` (so `--help` lists every variable and its default, and a
//! malformed value stops the start with the variable's name).

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::str::FromStr;

/// A secret: parsed like a string, printed as `****`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"****\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Where the HTTP server listens.
#[derive(clap::Args, Debug, Clone)]
pub struct HttpSettings {
    /// Address to bind; loopback by default so nothing is exposed by accident.
    #[arg(long = "bind-host", env = "BIND_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (tests use that).
    #[arg(long = "port", env = "SERVER_PORT")]
    pub port: Option<u16>,
    /// Worker threads for the HTTP server; 0 means one per core.
    #[arg(long = "http-workers", env = "HTTP_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Open connections served at once, all workers together (shared out over them,
    /// rounded up). Each costs up to a few hundred KiB of read buffer while its body
    /// streams in, so this bounds memory under a flood of connections; past it, new
    /// connections wait in the kernel's accept queue until one closes.
    #[arg(
        long = "http-max-connections",
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = 512
    )]
    pub max_connections: usize,
    /// Connections the kernel completes and holds until the server accepts them (capped
    /// by `net.core.somaxconn`). Past it, new connections are dropped or reset, so it
    /// is well above `HTTP_MAX_CONNECTIONS`: a flood waits instead of failing.
    #[arg(
        long = "http-listen-backlog",
        env = "HTTP_LISTEN_BACKLOG",
        default_value_t = 2048
    )]
    pub listen_backlog: u32,
}

impl HttpSettings {
    pub fn address(&self, default_port: u16) -> String {
        format!("{}:{}", self.host, self.port.unwrap_or(default_port))
    }

    /// The listening socket, with `listen_backlog`: `std::net::TcpListener::bind` always
    /// asks for 128, which a flood of connections overflows (SYN cookies, then resets).
    /// Like std, it tries each address the host resolves to until one binds.
    pub fn listen(&self, default_port: u16) -> anyhow::Result<TcpListener> {
        let address = self.address(default_port);
        let backlog = i32::try_from(self.listen_backlog).unwrap_or(i32::MAX);
        let bind = |socket_address: SocketAddr| -> std::io::Result<TcpListener> {
            let socket = Socket::new(
                Domain::for_address(socket_address),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            // As std does: a restarted service can bind while old connections linger.
            socket.set_reuse_address(true)?;
            socket.bind(&socket_address.into())?;
            socket.listen(backlog)?;
            Ok(socket.into())
        };
        let mut last_error = None;
        for socket_address in address
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {address}"))?
        {
            match bind(socket_address) {
                Ok(listener) => return Ok(listener),
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(e) => anyhow::Error::new(e).context(format!("cannot bind {address}")),
            None => anyhow::anyhow!("cannot bind {address}: it resolves to no address"),
        })
    }

    /// `workers`, or one per core when it is 0, counted as actix counts its default.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get().min(512)),
            n => n,
        }
    }

    /// actix caps connections per worker and the setting is for the whole server, so
    /// it is shared out rounded up: at least one per worker.
    pub fn max_connections_per_worker(&self) -> usize {
        self.max_connections.div_ceil(self.worker_count()).max(1)
    }
}

/// PostgreSQL connection settings, in the seed's variable names.
#[derive(clap::Args, Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://host:port/db` or the seed's `jdbc:postgresql://host:port/db`.
    #[arg(
        long = "postgres-url",
        env = "POSTGRES_URL",
        default_value = "postgres://127.0.0.1:5432/logprocessor"
    )]
    pub url: String,
    #[arg(
        long = "postgres-username",
        env = "POSTGRES_USERNAME",
        default_value = "loguser"
    )]
    pub username: String,
    #[arg(
        long = "postgres-password",
        env = "POSTGRES_PASSWORD",
        default_value = "logpass",
        hide_env_values = true
    )]
    pub password: Secret,
    /// Most connections the service's pool opens.
    #[arg(
        long = "postgres-pool-size",
        env = "POSTGRES_POOL_SIZE",
        default_value_t = 10
    )]
    pub pool_size: u32,
    /// How long a request waits for a pool connection before it fails.
    #[arg(
        long = "postgres-connect-timeout-ms",
        env = "POSTGRES_CONNECT_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub connect_timeout_ms: u64,
}

impl PostgresSettings {
    /// A libpq URL with the credentials in it. Credentials already in `POSTGRES_URL`
    /// win over the separate variables.
    pub fn connection_url(&self) -> anyhow::Result<String> {
        to_libpq_url(&self.url, &self.username, self.password.expose())
    }
}

fn to_libpq_url(url: &str, username: &str, password: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("jdbc:postgresql://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| {
            anyhow::anyhow!("POSTGRES_URL must start with postgres://, postgresql:// or jdbc:postgresql://, got '{url}'")
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        anyhow::bail!("POSTGRES_URL has no host: '{url}'");
    }
    if rest.contains('@') {
        return Ok(format!("postgres://{rest}"));
    }
    Ok(format!(
        "postgres://{}:{}@{rest}",
        percent_encode(username),
        percent_encode(password)
    ))
}

/// Enough URL encoding for user names and passwords in a libpq URL.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Kafka connection settings, in the seed's variable names.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaSettings {
    #[arg(
        long = "kafka-bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap_servers: String,
    #[arg(
        long = "kafka-topic",
        env = "KAFKA_TOPIC",
        default_value = "log-events"
    )]
    pub topic: String,
    /// The topic of FATAL and ERROR events, read ahead of `KAFKA_TOPIC`'s backlog.
    #[arg(
        long = "kafka-priority-topic",
        env = "KAFKA_PRIORITY_TOPIC",
        default_value = "log-events-priority"
    )]
    pub priority_topic: String,
    /// Where messages that can never be stored go, with headers saying why.
    #[arg(
        long = "kafka-dlq-topic",
        env = "KAFKA_DLQ_TOPIC",
        default_value = "log-events-dlq"
    )]
    pub dlq_topic: String,
}

impl KafkaSettings {
    /// The topic a lane travels on.
    pub fn topic_of(&self, lane: crate::domain::Lane) -> &str {
        match lane {
            crate::domain::Lane::Normal => &self.topic,
            crate::domain::Lane::Priority => &self.priority_topic,
        }
    }
}

/// `PROMETHEUS_ENABLED` (the seed's name): when false, `/actuator/prometheus` is not served.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsSettings {
    #[arg(long = "prometheus-enabled", env = "PROMETHEUS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub prometheus_enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jdbc_and_plain_urls_become_libpq_urls() {
        assert_eq!(
            to_libpq_url(
                "jdbc:postgresql://localhost:5432/logprocessor",
                "loguser",
                "logpass"
            )
            .expect("ok"),
            "postgres://loguser:logpass@localhost:5432/logprocessor"
        );
        assert_eq!(
            to_libpq_url("postgres://db:5432/x?sslmode=disable", "u", "p@ss word").expect("ok"),
            "postgres://u:p%40ss%20word@db:5432/x?sslmode=disable"
        );
        assert_eq!(
            to_libpq_url("postgresql://a:b@db/x", "ignored", "ignored").expect("ok"),
            "postgres://a:b@db/x"
        );
    }

    #[test]
    fn bad_urls_name_the_variable() {
        let err = to_libpq_url("mysql://db/x", "u", "p").expect_err("bad scheme");
        assert!(err.to_string().contains("POSTGRES_URL"));
        assert!(to_libpq_url("postgres:///x", "u", "p").is_err());
    }

    fn http(workers: usize, max_connections: usize) -> HttpSettings {
        HttpSettings {
            host: "127.0.0.1".into(),
            port: None,
            workers,
            max_connections,
            listen_backlog: 2048,
        }
    }

    #[test]
    fn the_connection_cap_is_shared_out_over_the_workers() {
        assert_eq!(http(2, 512).max_connections_per_worker(), 256);
        assert_eq!(http(2, 513).max_connections_per_worker(), 257);
        assert_eq!(http(4, 1).max_connections_per_worker(), 1);
        assert_eq!(http(1, 0).max_connections_per_worker(), 1);
        assert!(http(0, 512).worker_count() >= 1);
    }

    /// The kernel's own account (`ss`, from iproute2, which setup installs): for a
    /// listening socket Send-Q is its backlog. `std`'s bind would show 128.
    #[test]
    fn the_listener_gets_the_configured_backlog() {
        let settings = HttpSettings {
            port: Some(0),
            listen_backlog: 1000,
            ..http(1, 1)
        };
        let listener = settings.listen(0).expect("bind");
        let port = listener.local_addr().expect("bound").port();
        let ss = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss runs");
        let line = String::from_utf8_lossy(&ss.stdout).into_owned();
        let backlog: Option<u32> = line.split_whitespace().nth(2).and_then(|q| q.parse().ok());
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(4096);
        assert_eq!(backlog, Some(1000.min(somaxconn)), "ss said: {line}");
    }

    #[test]
    fn a_host_name_binds_to_one_of_its_addresses() {
        let settings = HttpSettings {
            host: "localhost".into(),
            port: Some(0),
            ..http(1, 1)
        };
        let listener = settings.listen(0).expect("bind localhost");
        assert!(listener.local_addr().expect("bound").ip().is_loopback());
    }

    #[test]
    fn secrets_never_print() {
        let secret: Secret = "hunter2".parse().expect("infallible");
        assert_eq!(format!("{secret} {secret:?}"), "**** \"****\"");
        assert_eq!(secret.expose(), "hunter2");
    }
}
