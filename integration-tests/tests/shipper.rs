//! The file shipper (#16), end to end: lines written to files, the real `log-shipper`
//! binary (the one `./setup.sh up` builds) following them, an in-process producer and
//! consumer on a topic of the test's own, rows in this binary's test database.
//!
//! The shipper is a child process, so it can be killed with SIGKILL mid-stream.

#[path = "api/helpers.rs"]
mod helpers;

use diesel::prelude::*;
use helpers::{create_topic, db, eventually, spawn_consumer, spawn_producer, unique, Running};
use log_shipper::identity::{event_id, fingerprint_of, FileKey};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const HOST: &str = "shipper-test-host";

/// A `log-shipper` process, killed (SIGKILL) when dropped.
struct Shipper {
    child: Child,
}

impl Shipper {
    fn start(dir: &Path, glob: &str, producer: &str, source: &str, extra: &[&str]) -> Shipper {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("shipper.log"))
            .expect("shipper log");
        let child = Command::new(helpers::release_binary("log-shipper"))
            .args([
                "--path",
                glob,
                "--producer-url",
                producer,
                "--source",
                source,
            ])
            .args(["--start-at", "beginning", "--host", HOST])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--batch-wait-ms", "50", "--scan-interval-ms", "200"])
            .args(extra)
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start log-shipper");
        Shipper { child }
    }

    /// SIGKILL: no drain, no last checkpoint.
    fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("status").is_none()
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A producer and a consumer of the test's own topics, storing into the test database.
async fn pipeline(
    configure: impl FnOnce(&mut log_producer::settings::Settings),
) -> (Running, Running, String) {
    let topic = unique("shipper");
    let dlq = unique("shipper-dlq");
    create_topic(&topic, 3).await;
    create_topic(&dlq, 1).await;
    let producer_topic = topic.clone();
    let producer = spawn_producer(move |s| {
        s.kafka.topic = producer_topic;
        configure(s);
    })
    .await;
    let consumer = spawn_consumer(&topic, &dlq, &unique("shipper-group")).await;
    (producer, consumer, topic)
}

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    level: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    message: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    metadata: Option<String>,
}

fn rows(source: &str) -> Vec<Row> {
    diesel::sql_query(
        "SELECT id, level::text AS level, message, metadata::text AS metadata \
         FROM log_events WHERE source = $1 ORDER BY kafka_offset",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .load(&mut db())
    .expect("rows")
}

fn count(source: &str) -> i64 {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM log_events WHERE source = $1")
        .bind::<diesel::sql_types::Text, _>(source)
        .get_result::<N>(&mut db())
        .expect("count")
        .n
}

async fn wait_for_rows(source: &str, expected: i64, limit: Duration) {
    let source = source.to_owned();
    eventually(&format!("{expected} rows of {source}"), limit, || {
        let source = source.clone();
        async move {
            let n = tokio::task::spawn_blocking(move || count(&source))
                .await
                .expect("count");
            assert!(
                n <= expected,
                "{n} rows, more than the {expected} lines written"
            );
            (n == expected).then_some(())
        }
    })
    .await;
}

/// Every line has the same length, so a line's offset in its file is known.
const LINE_LEN: usize = 48;

fn line(n: usize) -> String {
    let level = if n % 10 == 7 { "ERROR" } else { "INFO" };
    let text = format!("{level:<5} line {n:07} of the shipper test");
    let line = format!("{text:<width$}\n", width = LINE_LEN - 1);
    assert_eq!(line.len(), LINE_LEN);
    line
}

fn line_number(message: &str) -> usize {
    message
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a test line: {message}"))
}

fn note(file: &File, first: usize, segments: &mut Vec<(usize, u64, u64)>) {
    let meta = file.metadata().expect("stat");
    segments.push((first, meta.dev(), meta.ino()));
}

fn append_lines(file: &mut File, range: std::ops::Range<usize>) {
    let mut chunk = String::with_capacity(range.len() * LINE_LEN);
    for n in range {
        chunk.push_str(&line(n));
    }
    file.write_all(chunk.as_bytes()).expect("write lines");
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file")
}

/// 200,000 lines across three rotations (rename, copytruncate, rename), the shipper
/// killed with -9 twice while lines are being written: every line is stored exactly
/// once, under exactly the id derived from where it was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_line_is_stored_once_across_rotations_and_kills() {
    const TOTAL: usize = 200_000;
    const PER_FILE: usize = 50_000;
    const CHUNK: usize = 500;
    let (producer, _consumer, _topic) = pipeline(|_| {}).await;
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let live = dir.path().join("app.log");
    let source = unique("shipper-rot");
    let glob = live.display().to_string();
    let mut shipper = Shipper::start(dir.path(), &glob, &producer.base, &source, &[]);

    // The writer, at about 10,000 lines a second, rotating as it goes. The identity of
    // each segment (inode, first line) is noted to derive the expected ids.
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = written.clone();
        let live = live.clone();
        let dir = dir.path().to_owned();
        let source = source.clone();
        std::thread::spawn(move || {
            let mut segments: Vec<(usize, u64, u64)> = Vec::new(); // (first line, dev, ino)
            let mut file = open_append(&live);
            note(&file, 0, &mut segments);
            let mut n = 0;
            while n < TOTAL {
                if n > 0 && n % PER_FILE == 0 {
                    match n / PER_FILE {
                        2 => {
                            // copytruncate loses what the shipper has not read yet (the
                            // README says so): like logrotate's users, wait until it has.
                            let waiting = std::time::Instant::now();
                            while count(&source) != n as i64 {
                                assert!(
                                    waiting.elapsed() < Duration::from_secs(120),
                                    "the shipper never caught up with {n} lines before the copytruncate"
                                );
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            std::fs::copy(&live, dir.join("app.log.2.copy")).expect("copy");
                            let truncating =
                                OpenOptions::new().write(true).open(&live).expect("open");
                            truncating.set_len(0).expect("truncate");
                        }
                        _ => {
                            let rotated = dir.join(format!("app.log.{}", n / PER_FILE));
                            std::fs::rename(&live, rotated).expect("rename");
                            file = open_append(&live);
                        }
                    }
                    note(&file, n, &mut segments);
                }
                append_lines(&mut file, n..n + CHUNK);
                n += CHUNK;
                written.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
            segments
        })
    };

    // Kill -9 twice while lines are written; the second restart comes after the last
    // rename happened, so the restarted shipper finds the rotated file by its inode.
    for (kill_at, down) in [(70_000, 1_000), (145_000, 1_500)] {
        while written.load(Ordering::SeqCst) < kill_at && !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shipper.kill();
        tokio::time::sleep(Duration::from_millis(down)).await;
        shipper = Shipper::start(dir.path(), &glob, &producer.base, &source, &[]);
    }
    let segments = tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .expect("join");
    wait_for_rows(&source, TOTAL as i64, Duration::from_secs(240)).await;
    assert!(shipper.is_running());

    // The ids the lines must have: host, (device, inode, first line), offset.
    let mut expected = HashMap::new();
    for (i, &(first, dev, ino)) in segments.iter().enumerate() {
        let key = FileKey {
            dev,
            ino,
            fingerprint: fingerprint_of(line(first).as_bytes()).expect("fp"),
        };
        let end = segments.get(i + 1).map_or(TOTAL, |s| s.0);
        for n in first..end {
            expected.insert(event_id(HOST, &key, 0, ((n - first) * LINE_LEN) as u64), n);
        }
    }
    let stored = tokio::task::spawn_blocking({
        let source = source.clone();
        move || rows(&source)
    })
    .await
    .expect("rows");
    assert_eq!(stored.len(), TOTAL);
    let mut lines_seen = HashSet::new();
    for row in &stored {
        let n = line_number(&row.message);
        assert!(lines_seen.insert(n), "line {n} stored twice");
        assert_eq!(
            expected.get(&row.id),
            Some(&n),
            "line {n} has an id not derived from its position"
        );
        let level = if n % 10 == 7 { "ERROR" } else { "INFO" };
        assert_eq!(row.level, level, "line {n}");
    }
    assert_eq!(lines_seen.len(), TOTAL);
}

/// The producer away for 10 s mid-stream: the shipper retries, then resumes, and every
/// line is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shipper_waits_out_a_producer_outage() {
    const TOTAL: usize = 30_000;
    let topic = unique("shipper-outage");
    let dlq = unique("shipper-outage-dlq");
    create_topic(&topic, 3).await;
    create_topic(&dlq, 1).await;
    let producer_topic = topic.clone();
    let producer = spawn_producer(move |s| s.kafka.topic = producer_topic).await;
    let _consumer = spawn_consumer(&topic, &dlq, &unique("shipper-group")).await;
    let base = producer.base.clone();
    let port: u16 = base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let live = dir.path().join("svc.log");
    let source = unique("shipper-outage");
    let mut shipper = Shipper::start(
        dir.path(),
        &live.display().to_string(),
        &base,
        &source,
        &["--metrics-port", &metrics_port.to_string()],
    );

    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let written = written.clone();
        std::thread::spawn(move || {
            let mut file = open_append(&live);
            for start in (0..TOTAL).step_by(250) {
                append_lines(&mut file, start..start + 250);
                written.store(start + 250, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    while written.load(Ordering::SeqCst) < 8_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    producer.stop().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let retries = helpers::metrics_text(&format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    let producer_topic = topic.clone();
    let _producer = spawn_producer(move |s| {
        s.kafka.topic = producer_topic;
        s.http.port = Some(port);
    })
    .await;
    tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .expect("join");
    wait_for_rows(&source, TOTAL as i64, Duration::from_secs(120)).await;
    assert!(shipper.is_running());
    let connection_retries = retries
        .lines()
        .find(|l| l.starts_with("shipper_retries_total{reason=\"connection\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        connection_retries > 0.0,
        "no retry while the producer was away:\n{retries}"
    );
    let stored = rows(&source);
    let ids: HashSet<Uuid> = stored.iter().map(|r| r.id).collect();
    let numbers: HashSet<usize> = stored.iter().map(|r| line_number(&r.message)).collect();
    assert_eq!((ids.len(), numbers.len()), (TOTAL, TOTAL));
}

/// Java and Python stack traces each become one event, with the level of their first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_traces_are_one_event_each_with_the_right_level() {
    let (producer, _consumer, _topic) = pipeline(|_| {}).await;
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let live = dir.path().join("traces.log");
    std::fs::write(
        &live,
        "2026-11-30T10:00:00Z INFO service starting\n\
         2026-11-30T10:00:01Z ERROR [main] c.e.Api - request failed\n\
         java.lang.IllegalStateException: connection pool exhausted\n\
         \tat com.example.Pool.take(Pool.java:42)\n\
         \tat com.example.Api.handle(Api.java:17)\n\
         Caused by: java.util.concurrent.TimeoutException: 5000 ms\n\
         \tat com.example.Pool.await(Pool.java:88)\n\
         \t... 12 more\n\
         2026-11-30T10:00:02Z WARN retrying\n\
         2026-11-30T10:00:03 CRITICAL worker crashed\n\
         Traceback (most recent call last):\n\
         \x20 File \"worker.py\", line 12, in <module>\n\
         \x20   main()\n\
         \x20 File \"worker.py\", line 8, in main\n\
         \x20   1 / 0\n\
         ZeroDivisionError: division by zero\n\
         2026-11-30T10:00:04Z INFO done\n",
    )
    .expect("write");
    let source = unique("shipper-traces");
    let _shipper = Shipper::start(
        dir.path(),
        &live.display().to_string(),
        &producer.base,
        &source,
        &[],
    );
    wait_for_rows(&source, 5, Duration::from_secs(60)).await;
    let stored = rows(&source);
    let by_start = |prefix: &str| {
        stored
            .iter()
            .find(|r| r.message.starts_with(prefix))
            .unwrap_or_else(|| panic!("no event starting {prefix:?}: {stored:#?}"))
    };
    let java = by_start("2026-11-30T10:00:01Z ERROR");
    assert_eq!(java.level, "ERROR");
    assert!(java
        .message
        .contains("\njava.lang.IllegalStateException: connection pool exhausted\n"));
    assert!(java
        .message
        .contains("\nCaused by: java.util.concurrent.TimeoutException"));
    assert!(java.message.ends_with("\t... 12 more"));
    let python = by_start("2026-11-30T10:00:03 CRITICAL");
    assert_eq!(python.level, "FATAL");
    assert!(python
        .message
        .contains("\nTraceback (most recent call last):\n"));
    assert!(python
        .message
        .ends_with("ZeroDivisionError: division by zero"));
    assert_eq!(by_start("2026-11-30T10:00:00Z INFO").level, "INFO");
    assert_eq!(by_start("2026-11-30T10:00:02Z WARN").level, "WARN");
    assert_eq!(by_start("2026-11-30T10:00:04Z INFO").level, "INFO");
}

/// Invalid UTF-8 becomes U+FFFD (flagged); a 10 MiB line is cut to 32 KiB (flagged,
/// with its real size); the lines after both are shipped; the shipper keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_a_10_mib_line_have_a_bounded_outcome() {
    const BIG: usize = 10 * 1024 * 1024;
    let (producer, _consumer, _topic) = pipeline(|_| {}).await;
    let dir = tempfile::tempdir_in("/tmp").expect("tempdir");
    let live = dir.path().join("odd.log");
    let mut content = b"first line\nbad \xff\xfe bytes ERROR\n".to_vec();
    content.extend(std::iter::repeat_n(b'x', BIG));
    content.extend_from_slice(b"\nafter the long line\n");
    std::fs::write(&live, content).expect("write");
    let source = unique("shipper-odd");
    let mut shipper = Shipper::start(
        dir.path(),
        &live.display().to_string(),
        &producer.base,
        &source,
        &[],
    );
    wait_for_rows(&source, 4, Duration::from_secs(60)).await;
    let stored = rows(&source);
    let metadata = |r: &Row| -> serde_json::Value {
        serde_json::from_str(r.metadata.as_deref().unwrap_or("{}")).expect("metadata json")
    };
    let bad = stored
        .iter()
        .find(|r| r.message.starts_with("bad "))
        .expect("the invalid UTF-8 line");
    assert_eq!(bad.message, "bad \u{FFFD}\u{FFFD} bytes ERROR");
    assert_eq!(bad.level, "ERROR");
    assert_eq!(metadata(bad)["invalidUtf8"], serde_json::json!(true));
    let long = stored
        .iter()
        .find(|r| r.message.starts_with("xxx"))
        .expect("the long line");
    assert_eq!(long.message.len(), 32 * 1024);
    assert_eq!(metadata(long)["truncated"], serde_json::json!(true));
    assert_eq!(metadata(long)["originalBytes"], serde_json::json!(BIG));
    assert!(stored.iter().any(|r| r.message == "after the long line"));
    assert!(stored.iter().any(|r| r.message == "first line"));
    assert!(shipper.is_running());
}
