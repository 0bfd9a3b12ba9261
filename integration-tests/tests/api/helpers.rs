//! Spawning services on port 0, talking to the real infrastructure, waiting.
//!
//! Shared by every test binary (the others include it with `#[path]`); each uses only
//! part of it.

#![allow(dead_code)]

use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const KAFKA: &str = "127.0.0.1:9092";

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

/// The stack that `./setup.sh` runs, at the addresses the services default to.
pub mod stack {
    use diesel::prelude::*;

    pub fn producer() -> String {
        format!(
            "http://127.0.0.1:{}",
            log_producer::settings::Settings::DEFAULT_PORT
        )
    }

    pub fn consumer() -> String {
        format!(
            "http://127.0.0.1:{}",
            log_consumer::settings::Settings::DEFAULT_PORT
        )
    }

    pub fn gateway() -> String {
        format!(
            "http://127.0.0.1:{}",
            api_gateway::settings::Settings::DEFAULT_PORT
        )
    }

    /// Posts `count` events of `source` at `level` to the stack producer's `/batch`
    /// (message `message(i)`), asserts the 200, and returns the answer.
    pub async fn ingest_batch(
        source: &str,
        level: &str,
        count: usize,
        message: impl Fn(usize) -> String,
    ) -> serde_json::Value {
        let events: Vec<_> = (0..count)
            .map(|i| super::event(source, level, &message(i)))
            .collect();
        let url = format!("{}/producer/api/logs/batch", producer());
        let (status, body) = super::post_json(url, &events).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The stack's own database, which may hold a user's events. Only the tests of
    /// the stack itself use it, and only to read back the events they sent (under a
    /// source name of their own): they never lock or delete anything there. (No
    /// check of the other servers first: the chaos run uses it while Redis is away.)
    pub fn db() -> PgConnection {
        let url = log_consumer::settings::Settings::defaults()
            .postgres
            .connection_url()
            .expect("default POSTGRES_URL");
        PgConnection::establish(&url).expect("connect to the stack's PostgreSQL")
    }

    /// The stack's per-minute counts of one source, summed.
    pub fn counted_events(source: &str) -> i64 {
        super::counted_events_in(&mut db(), source)
    }

    /// Rows the stack stored for one source, oldest first.
    pub fn rows_for_source(source: &str) -> Vec<super::StoredRow> {
        super::rows_for_source_in(&mut db(), source)
    }
}

/// A base URL of the stack, written as `{PRODUCER}` in `format!`.
pub struct StackUrl(fn() -> String);

impl std::fmt::Display for StackUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}

pub const PRODUCER: StackUrl = StackUrl(stack::producer);
pub const CONSUMER: StackUrl = StackUrl(stack::consumer);
pub const GATEWAY: StackUrl = StackUrl(stack::gateway);

/// This test binary's own database, created and migrated on first use: services
/// spawned in-process by the tests, and [`db`], use it, so no test reads, locks or
/// deletes a row of the database the stack writes to. Named after the process; the
/// databases of test processes that have ended are dropped by the next one.
pub fn test_database_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let url = new_database();
        let mut conn = PgConnection::establish(&url).expect("connect to the test database");
        conn.run_pending_migrations(MIGRATIONS)
            .expect("migrations on the test database");
        url
    })
}

/// A new, empty database of this test process (no migrations run), for a test that
/// must have one to itself; dropped with the others once the process has ended.
pub fn new_database() -> String {
    require_infrastructure();
    let defaults = log_consumer::settings::Settings::defaults().postgres;
    let server = defaults.connection_url().expect("default POSTGRES_URL");
    let mut admin = PgConnection::establish(&server).expect("connect to PostgreSQL");
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| drop_databases_of_ended_test_runs(&mut admin));
    let name = format!(
        "logtest_{}_{}",
        std::process::id(),
        &Uuid::new_v4().simple().to_string()[..8]
    );
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .unwrap_or_else(|e| {
            panic!("CREATE DATABASE {name} failed ({e}): ./setup.sh grants the app role CREATEDB")
        });
    with_database(&server, &name)
}

/// A new database of this test process with every migration applied.
pub fn new_migrated_database() -> String {
    let url = new_database();
    PgConnection::establish(&url)
        .expect("connect to the new database")
        .run_pending_migrations(MIGRATIONS)
        .expect("migrations");
    url
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (server, _) = url.rsplit_once('/').expect("a database in the URL");
    format!("{server}/{name}")
}

fn drop_databases_of_ended_test_runs(admin: &mut PgConnection) {
    #[derive(QueryableByName)]
    struct Database {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let databases: Vec<Database> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'logtest\\_%'")
            .load(admin)
            .expect("list test databases");
    for Database { datname } in databases {
        let pid = datname
            .split('_')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        let ended = pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        if ended {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
                .execute(admin);
        }
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

pub fn http() -> reqwest::Client {
    http_with_timeout(Duration::from_secs(30))
}

/// A client whose every request gives up after `timeout`: a hang fails the test.
pub fn http_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// Fails at once, with what to do, when the infrastructure is not up: a test that
/// hangs on a missing broker tells nobody anything.
pub fn require_infrastructure() {
    use std::net::{SocketAddr, TcpStream};
    for (name, port) in [("Kafka", 9092), ("PostgreSQL", 5432), ("Redis", 6379)] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
            panic!("{name} is not listening on 127.0.0.1:{port}: start the stack with ./setup.sh");
        }
    }
}

pub async fn create_topic(name: &str, partitions: i32) {
    if let Err(e) = try_create_topic(name, partitions).await {
        panic!("cannot create topic {name}: {e:?}");
    }
}

/// The priority topic of a test's own topic: FATAL and ERROR of a test that set its
/// own `KAFKA_TOPIC` travel there, never on the stack's `log-events-priority`.
pub fn priority_topic_of(topic: &str) -> String {
    format!("{topic}-priority")
}

/// Creates `name` unless it exists (two services of one test may both ask for it).
pub async fn ensure_topic(name: &str, partitions: i32) {
    match try_create_topic(name, partitions).await {
        Ok(()) | Err(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) => {}
        Err(e) => panic!("cannot create topic {name}: {e:?}"),
    }
}

async fn try_create_topic(
    name: &str,
    partitions: i32,
) -> Result<(), rdkafka::types::RDKafkaErrorCode> {
    require_infrastructure();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", KAFKA)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic");
    results
        .into_iter()
        .try_for_each(|result| result.map(drop).map_err(|(_, code)| code))
}

/// A test that set its own topic gets its own priority topic too (see
/// [`priority_topic_of`]), created here.
async fn own_priority_topic(kafka: &mut log_common::settings::KafkaSettings) {
    let defaults = log_consumer::settings::Settings::defaults().kafka;
    if kafka.topic != defaults.topic && kafka.priority_topic == defaults.priority_topic {
        kafka.priority_topic = priority_topic_of(&kafka.topic);
        ensure_topic(&kafka.priority_topic, 2).await;
    }
}

/// A connection to this test binary's own database (see [`test_database_url`]).
pub fn db() -> PgConnection {
    PgConnection::establish(test_database_url()).expect("connect to the test database")
}

/// Stores `rows` in the database at `url` the way the consumer does (one batch
/// transaction, rollups included, ids already stored skipped); returns how many were new.
pub fn store_rows_in(url: &str, rows: &[log_store::NewLogEvent]) -> usize {
    let mut settings = log_consumer::settings::Settings::defaults();
    settings.postgres.url = url.to_owned();
    let store = log_store::Store::new(&settings.postgres, "seed", "seed").expect("store");
    store
        .write_batch(rows, &std::collections::BTreeMap::new())
        .expect("seed batch")
}

/// [`store_rows_in`] this binary's test database.
pub fn store_rows(rows: &[log_store::NewLogEvent]) -> usize {
    store_rows_in(test_database_url(), rows)
}

/// A row as the consumer would write it; `metadata` must be a JSON object.
pub fn new_row(
    level: &str,
    message: String,
    source: &str,
    timestamp: chrono::DateTime<chrono::Utc>,
    metadata: Option<Value>,
    correlation_id: Option<String>,
) -> log_store::NewLogEvent {
    log_store::NewLogEvent {
        id: Uuid::new_v4(),
        level: level.to_owned(),
        message,
        source: source.to_owned(),
        timestamp,
        metadata: metadata.map(|m| match m {
            Value::Object(map) => log_store::JsonText::from_object(map),
            other => panic!("metadata must be an object, not {other}"),
        }),
        correlation_id,
        request_id: None,
        trace_id: None,
        lane: 0,
        kafka_partition: 0,
        kafka_offset: 0,
    }
}

#[derive(QueryableByName, Debug)]
pub struct StoredRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub level: String,
    /// The topic it was read from: 0 normal, 1 priority.
    #[diesel(sql_type = diesel::sql_types::SmallInt)]
    pub lane: i16,
}

/// Rows stored for one source in the test database, oldest first.
pub fn rows_for_source(source: &str) -> Vec<StoredRow> {
    rows_for_source_in(&mut db(), source)
}

fn rows_for_source_in(conn: &mut PgConnection, source: &str) -> Vec<StoredRow> {
    diesel::sql_query(
        "SELECT id, level::text, lane FROM log_events WHERE source = $1 ORDER BY \"timestamp\", id",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .load(conn)
    .expect("query rows")
}

/// `LOCK TABLE log_events IN ACCESS EXCLUSIVE MODE` in this binary's database, held
/// from `hold` until dropped (30 s at most): every query on the table waits meanwhile.
pub struct TableLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl TableLock {
    pub fn hold() -> TableLock {
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            db().transaction(|conn| {
                diesel::sql_query("LOCK TABLE log_events IN ACCESS EXCLUSIVE MODE")
                    .execute(conn)?;
                locked_tx.send(()).expect("signal");
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
                Ok::<_, diesel::result::Error>(())
            })
            .expect("lock transaction");
        });
        locked
            .recv_timeout(Duration::from_secs(10))
            .expect("table locked");
        TableLock {
            release: Some(release),
            holder: Some(holder),
        }
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            // The holder may have given up already; then there is nobody to tell.
            let _ = release.send(());
        }
        if let Some(holder) = self.holder.take() {
            let _ = holder.join();
        }
    }
}

/// The per-minute rollups (`log_rollup_minute`) of one source, its per-level rows summed: what the
/// histogram reads, so it must equal the rows stored.
pub fn counted_events_in(conn: &mut PgConnection, source: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT coalesce(sum(events), 0)::int8 AS n FROM log_rollup_minute WHERE source = $1 AND level <> ''",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .get_result::<Sum>(conn)
    .expect("sum of counts")
    .n
}

/// Points a service's settings at this test binary's database.
pub fn use_test_database(postgres: &mut log_common::settings::PostgresSettings) {
    postgres.url = test_database_url().to_owned();
}

/// Polls `probe` until it returns Some, or fails after `limit` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, value)
}

/// GETs `url` and returns the status and the JSON answer.
pub async fn get_json(url: impl AsRef<str>) -> (u16, Value) {
    json(http().get(url.as_ref()).send().await.expect("GET")).await
}

/// POSTs `body` as JSON and returns the status and the JSON answer.
pub async fn post_json(url: impl AsRef<str>, body: &impl serde::Serialize) -> (u16, Value) {
    json(
        http()
            .post(url.as_ref())
            .json(body)
            .send()
            .await
            .expect("POST"),
    )
    .await
}

/// A 503 in the contract's shape, whose message gives `reason`.
pub fn assert_unavailable_because(status: u16, body: &Value, reason: &str) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(reason)),
        "expected a message naming {reason:?}: {body}"
    );
}

pub fn event(source: &str, level: &str, message: &str) -> Value {
    serde_json::json!({ "level": level, "message": message, "source": source })
}

/// Runs an app's `run_until_stopped` in the background; dropping the handle stops it.
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub fn spawn<Fut>(
        port: u16,
        run: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> Fut,
    ) -> Running
    where
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(stopped));
        Running {
            base: format!("http://127.0.0.1:{port}"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful stop: drains like SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stopped cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub async fn spawn_producer(
    configure: impl FnOnce(&mut log_producer::settings::Settings),
) -> Running {
    spawn_producer_listening(configure).await.0
}

/// [`spawn_producer`], with where its syslog listeners listen (those `configure` turned
/// on: TCP, UDP).
pub async fn spawn_producer_listening(
    configure: impl FnOnce(&mut log_producer::settings::Settings),
) -> (Running, (Option<SocketAddr>, Option<SocketAddr>)) {
    require_infrastructure();
    log_common::telemetry::init_for_tests();
    let mut settings = log_producer::settings::Settings::defaults();
    settings.http.port = Some(0);
    settings.http.workers = 2;
    configure(&mut settings);
    own_priority_topic(&mut settings.kafka).await;
    let app = log_producer::startup::Application::build(settings)
        .await
        .expect("producer builds");
    let port = app.port();
    let syslog = app.syslog_addresses();
    let running = Running::spawn(port, move |stop| {
        app.run_until_stopped(async move {
            let _ = stop.await;
        })
    });
    (running, syslog)
}

pub async fn spawn_gateway(
    configure: impl FnOnce(&mut api_gateway::settings::Settings),
) -> Running {
    require_infrastructure();
    log_common::telemetry::init_for_tests();
    let mut settings = api_gateway::settings::Settings::defaults();
    use_test_database(&mut settings.postgres);
    settings.http.port = Some(0);
    settings.http.workers = 2;
    // Tests compare totals with COUNT(*): on a busy shared machine a count of a few
    // rows can still outlast the 50 ms default and become an estimate. The budget's
    // own tests set theirs.
    settings.limits.count_budget_ms = 10_000;
    configure(&mut settings);
    let defaults = api_gateway::settings::Settings::defaults().tail;
    if settings.tail.topic != defaults.topic
        && settings.tail.priority_topic == defaults.priority_topic
    {
        settings.tail.priority_topic = priority_topic_of(&settings.tail.topic);
    }
    let app = api_gateway::startup::Application::build(settings)
        .await
        .expect("gateway builds");
    let port = app.port();
    Running::spawn(port, move |stop| {
        app.run_until_stopped(async move {
            let _ = stop.await;
        })
    })
}

pub async fn spawn_consumer(topic: &str, dlq_topic: &str, group: &str) -> Running {
    spawn_consumer_with(topic, dlq_topic, group, |_| {}).await
}

pub async fn spawn_consumer_with(
    topic: &str,
    dlq_topic: &str,
    group: &str,
    configure: impl FnOnce(&mut log_consumer::settings::Settings),
) -> Running {
    require_infrastructure();
    log_common::telemetry::init_for_tests();
    let mut settings = log_consumer::settings::Settings::defaults();
    use_test_database(&mut settings.postgres);
    settings.http.port = Some(0);
    settings.kafka.topic = topic.to_owned();
    settings.kafka.dlq_topic = dlq_topic.to_owned();
    settings.consumer.group_id = group.to_owned();
    settings.consumer.batch_max_wait_ms = 50;
    configure(&mut settings);
    own_priority_topic(&mut settings.kafka).await;
    let app = log_consumer::startup::Application::build(settings)
        .await
        .expect("consumer builds");
    let port = app.port();
    Running::spawn(port, move |stop| {
        app.run_until_stopped(async move {
            let _ = stop.await;
        })
    })
}

/// Runs `./setup.sh <args>` (the stack's own controls) and returns its stdout.
pub fn setup(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../setup.sh");
    let output = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run setup.sh");
    assert!(
        output.status.success(),
        "./setup.sh {args:?} failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Stops a component of the stack and starts it again when dropped, so a failing
/// assertion never leaves the stack without it.
pub struct Outage(&'static str);

impl Outage {
    pub fn begin(component: &'static str) -> Outage {
        setup(&["stop", component]);
        Outage(component)
    }

    /// Ends the outage now (same as dropping it).
    pub fn end(self) {}
}

impl Drop for Outage {
    fn drop(&mut self) {
        setup(&["start", self.0]);
    }
}

/// The Prometheus text a service exposes at `url`.
pub async fn metrics_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// A release binary of the workspace beside the running test's own
/// (`target/release/deps/…`), for tests that run a service as a process of its own.
pub fn release_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .expect("target dir");
    assert!(
        binary.exists(),
        "{} not found: build it with ./setup.sh up (cargo build --release --workspace --bins)",
        binary.display()
    );
    binary
}
