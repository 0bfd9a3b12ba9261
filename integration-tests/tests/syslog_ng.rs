//! syslog-ng as users run it (#33): Debian's syslog-ng 3.38 (unpacked by
//! `./setup.sh test`, since its packages conflict with rsyslog's) in the foreground with
//! the config README publishes (`integration-tests/agents/syslog-ng.conf`), reading a
//! file and sending it with `elasticsearch-http()` to our Elasticsearch bulk API, into
//! an in-process producer and consumer on a topic of the test's own. The file is larger
//! than the destination's queue: without flow control syslog-ng drops what overflows
//! it (#33 saw up to 9% lost); with the published config every line is stored once.

#[path = "api/helpers.rs"]
mod helpers;
mod real_agents;

use helpers::{create_topic, spawn_consumer, spawn_producer, unique, Running};
use real_agents::{assert_each_line_once, stored};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Lines in the file: more than the destination queue's 20,000.
const LINES: usize = 50_000;

/// Where `./setup.sh test` unpacked syslog-ng: `SYSLOG_NG_ROOT`, else its default.
fn syslog_ng_root() -> PathBuf {
    let root = std::env::var_os("SYSLOG_NG_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/logpipeline/syslog-ng/root")
        });
    assert!(
        root.join("usr/sbin/syslog-ng").exists(),
        "{} holds no syslog-ng: `./setup.sh test` unpacks it (or set SYSLOG_NG_ROOT)",
        root.display()
    );
    root
}

async fn pipeline() -> (Running, Running) {
    let topic = unique("syslog-ng");
    let dlq = unique("syslog-ng-dlq");
    create_topic(&topic, 3).await;
    create_topic(&dlq, 1).await;
    let producer_topic = topic.clone();
    let producer = spawn_producer(move |s| s.kafka.topic = producer_topic).await;
    let consumer = spawn_consumer(&topic, &dlq, &unique("syslog-ng-group")).await;
    (producer, consumer)
}

fn published_config() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("agents/syslog-ng.conf"))
        .expect("the published config")
}

#[tokio::test]
async fn syslog_ng_ships_a_file_larger_than_its_queue_through_the_bulk_api_every_line_once() {
    let root = syslog_ng_root();
    let (producer, _consumer) = pipeline().await;
    let dir = std::env::temp_dir().join(unique("syslog-ng"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("app.log");
    let lines: Vec<String> = (0..LINES)
        .map(|i| format!("payment {i:06} settled in {} ms", i % 400))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the file");
    let program = unique("sng");

    let scl = root.join("usr/share/syslog-ng/include/scl/elasticsearch/elastic-http.conf");
    let config = published_config()
        .replace(
            "@include \"scl.conf\"",
            &format!("@include \"{}\"", scl.display()),
        )
        .replace("@FILE@", &file.display().to_string())
        .replace("@PROGRAM@", &program)
        .replace("@ES_URL@", &format!("{}/producer/es", producer.base));
    let config_path = dir.join("syslog-ng.conf");
    std::fs::write(&config_path, config).expect("write the config");
    let modules = root.join("usr/lib/syslog-ng/3.38");
    let mut syslog_ng = tokio::process::Command::new(root.join("usr/sbin/syslog-ng"))
        .env("LD_LIBRARY_PATH", root.join("usr/lib/syslog-ng"))
        .arg("-F")
        .arg("--no-caps")
        .arg("-f")
        .arg(&config_path)
        .arg(format!("--module-path={}", modules.display()))
        .arg("-R")
        .arg(dir.join("syslog-ng.persist"))
        .arg("-p")
        .arg(dir.join("syslog-ng.pid"))
        .arg("-c")
        .arg(dir.join("syslog-ng.ctl"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("syslog-ng.err")).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("syslog-ng starts");

    let rows = stored(&program, LINES, Duration::from_secs(180)).await;
    assert_each_line_once(&rows, &lines);

    real_agents::stop(&mut syslog_ng, Duration::from_secs(10)).await;
    producer.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// README shows the config this test runs, byte for byte.
#[test]
fn the_readme_shows_the_config_the_test_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    assert!(
        readme.contains(&format!("```\n{}```", published_config())),
        "README shows syslog-ng.conf as it is"
    );
}
