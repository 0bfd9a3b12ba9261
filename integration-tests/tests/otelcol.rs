//! The OpenTelemetry Collector itself (#33), built from its Go modules by ocb, the
//! official builder (`integration-tests/agents/otelcol-builder.yaml`, built by
//! `./setup.sh test`), running the config README publishes
//! (`integration-tests/agents/otelcol.yaml`: `file_log` → `batch` → `otlp_http`) on a
//! JSON-lines file, into an in-process producer (API keys on) and consumer on a topic
//! of the test's own:
//! - restarted with no storage extension, the Collector reads the whole file again and
//!   sends every record again; each line is still stored once;
//! - answered 503 (by a proxy in front of the producer: some requests refused before
//!   they reach us, some refused after we stored them), it retries until every record
//!   is stored, once.

#[path = "api/helpers.rs"]
mod helpers;
mod real_agents;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use helpers::{create_topic, eventually, spawn_consumer, spawn_producer, unique, Running};
use real_agents::{assert_each_line_once, protocol_events_sent, stored};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The API key the tests' producers require.
const KEY: &str = "otelcol-test-key";
/// Lines in each test's file.
const LINES: usize = 20_000;

/// The Collector ocb built: `OTELCOL_BIN`, else where `./setup.sh test` builds it.
fn collector_binary() -> PathBuf {
    let binary = std::env::var_os("OTELCOL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/logpipeline/otelcol/build/otelcol-logpipeline")
        });
    assert!(
        binary.exists(),
        "{} is missing: `./setup.sh test` builds it with ocb from \
         integration-tests/agents/otelcol-builder.yaml (or set OTELCOL_BIN)",
        binary.display()
    );
    binary
}

/// A producer (keys on) and a consumer on a topic of the test's own.
async fn pipeline() -> (Running, Running) {
    let topic = unique("otelcol");
    let dlq = unique("otelcol-dlq");
    create_topic(&topic, 3).await;
    create_topic(&dlq, 1).await;
    let producer_topic = topic.clone();
    let producer = spawn_producer(move |s| {
        s.kafka.topic = producer_topic;
        s.auth.api_keys = Some(KEY.parse().expect("infallible"));
    })
    .await;
    let consumer = spawn_consumer(&topic, &dlq, &unique("otelcol-group")).await;
    (producer, consumer)
}

/// A scratch directory with a file of [`LINES`] JSON lines, each with its own time.
fn file_of_lines(prefix: &str) -> (PathBuf, PathBuf, Vec<String>) {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("app.log");
    let start = chrono::Utc::now() - chrono::Duration::minutes(5);
    let messages: Vec<String> = (0..LINES)
        .map(|i| format!("order {i:06} shipped to warehouse {}", i % 13))
        .collect();
    let lines: Vec<String> = messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let time = start + chrono::Duration::microseconds(i as i64 * 10);
            serde_json::json!({
                "time": time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "info",
                "msg": message,
            })
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the file");
    (dir, file, messages)
}

/// The Collector with the published config, until [`Collector::stop`] (SIGTERM, then
/// waited for); killed if the test fails first.
struct Collector(tokio::process::Child);

impl Collector {
    fn start(file: &Path, service: &str, producer_url: &str, dir: &Path) -> Collector {
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/otelcol.yaml");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("otelcol.log"))
            .expect("log file");
        let child = tokio::process::Command::new(collector_binary())
            .arg("--config")
            .arg(config)
            .env("LOG_FILE", file)
            .env("SERVICE_NAME", service)
            .env("PRODUCER_URL", producer_url)
            .env("PRODUCER_API_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the Collector starts");
        Collector(child)
    }

    async fn stop(mut self) {
        real_agents::stop(&mut self.0, Duration::from_secs(15)).await;
    }
}

#[tokio::test]
async fn the_collector_reading_a_file_again_after_a_restart_stores_each_line_once() {
    let (producer, _consumer) = pipeline().await;
    let (dir, file, messages) = file_of_lines("otelcol-reread");
    let service = unique("otelcol-reread");
    let url = format!("{}/producer", producer.base);

    let collector = Collector::start(&file, &service, &url, &dir);
    let rows = stored(&service, LINES, Duration::from_secs(120)).await;
    assert_each_line_once(&rows, &messages);
    collector.stop().await;

    // No storage extension (the Collector's documented default): it starts again
    // from the first line and sends every record a second time.
    let sent_before = protocol_events_sent(&producer, "otlp").await;
    let collector = Collector::start(&file, &service, &url, &dir);
    eventually(
        "the Collector to send the file again",
        Duration::from_secs(120),
        || async {
            (protocol_events_sent(&producer, "otlp").await >= sent_before + LINES as f64)
                .then_some(())
        },
    )
    .await;
    let rows = stored(&service, LINES, Duration::from_secs(120)).await;
    assert_each_line_once(&rows, &messages);
    collector.stop().await;
    producer.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// In front of the producer: of every three OTLP requests, the first is answered 503
/// after the producer stored it (the answer lost on the way back), the second 503
/// without reaching the producer, the third passed through.
struct FlakyProxy {
    producer: String,
    requests: AtomicUsize,
    client: reqwest::Client,
}

async fn flaky(req: HttpRequest, body: web::Bytes, proxy: web::Data<FlakyProxy>) -> HttpResponse {
    let n = proxy.requests.fetch_add(1, Ordering::SeqCst);
    let unavailable = || {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .finish()
    };
    if n % 3 == 1 {
        return unavailable();
    }
    let mut forward = proxy
        .client
        .post(format!("{}{}", proxy.producer, req.path()))
        .body(body.to_vec());
    // (actix-web has inflated the gzip body already: it goes on as it now is.)
    for name in ["content-type", "x-api-key"] {
        if let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.send().await.expect("the producer answers");
    if n.is_multiple_of(3) {
        return unavailable();
    }
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf")
        .to_owned();
    let bytes = answer.bytes().await.expect("the producer's body");
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .content_type(content_type)
        .body(bytes)
}

#[tokio::test]
async fn a_503_is_retried_by_the_collector_and_nothing_is_lost_or_doubled() {
    let (producer, _consumer) = pipeline().await;
    let (dir, file, messages) = file_of_lines("otelcol-503");
    let service = unique("otelcol-503");
    let proxy = web::Data::new(FlakyProxy {
        producer: producer.base.clone(),
        requests: AtomicUsize::new(0),
        client: reqwest::Client::new(),
    });
    let shared = proxy.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .default_service(web::to(flaky))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind the proxy");
    let address = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);

    let collector = Collector::start(&file, &service, &format!("http://{address}/producer"), &dir);
    let rows = stored(&service, LINES, Duration::from_secs(120)).await;
    assert_each_line_once(&rows, &messages);
    let requests = proxy.requests.load(Ordering::SeqCst);
    assert!(
        requests >= 3,
        "the Collector met both kinds of 503: {requests} requests"
    );
    collector.stop().await;
    handle.stop(true).await;
    producer.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// README shows the config these tests run, byte for byte.
#[test]
fn the_readme_shows_the_config_the_tests_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).expect("README");
    let config = std::fs::read_to_string(root.join("agents/otelcol.yaml")).expect("config");
    assert!(
        readme.contains(&format!("```yaml\n{config}```")),
        "README shows otelcol.yaml as it is"
    );
}
