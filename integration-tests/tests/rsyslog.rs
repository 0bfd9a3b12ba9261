//! rsyslog, Debian's own syslog daemon, as users run it (#33): `rsyslogd` in the
//! foreground with the configs README publishes (`integration-tests/agents/rsyslog-*.conf`,
//! their `@…@` values filled in), reading a file through `imfile` and sending it on
//! with `omfwd` (TCP syslog, octet-counted) and with `omelasticsearch` (our
//! Elasticsearch bulk API), into an in-process producer and consumer on a topic of the
//! test's own. The file is larger than the action's queue, so rsyslog's own flow
//! control is in play; every line must be stored once.

#[path = "api/helpers.rs"]
mod helpers;
mod real_agents;

use helpers::{
    create_topic, eventually, spawn_consumer, spawn_producer_listening, unique, Running,
};
use real_agents::{assert_each_line_once, protocol_events_sent, stored};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Lines in the file each test ships: more than the action queue's 10,000.
const LINES: usize = 25_000;

/// A producer (syslog over TCP on) and a consumer on a topic of the test's own.
struct Pipeline {
    producer: Running,
    _consumer: Running,
    syslog_tcp: std::net::SocketAddr,
}

async fn pipeline() -> Pipeline {
    let topic = unique("rsyslog");
    let dlq = unique("rsyslog-dlq");
    create_topic(&topic, 2).await;
    create_topic(&dlq, 1).await;
    let producer_topic = topic.clone();
    let (producer, (tcp, _)) = spawn_producer_listening(move |s| {
        s.kafka.topic = producer_topic;
        s.syslog.tcp_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let consumer = spawn_consumer(&topic, &dlq, &unique("rsyslog-group")).await;
    Pipeline {
        producer,
        _consumer: consumer,
        syslog_tcp: tcp.expect("TCP listener on"),
    }
}

/// Debian's `rsyslogd`, in `/usr/sbin`, which a non-login shell's PATH may lack.
fn rsyslogd() -> &'static str {
    const DEBIAN: &str = "/usr/sbin/rsyslogd";
    if Path::new(DEBIAN).exists() {
        DEBIAN
    } else {
        "rsyslogd"
    }
}

/// `rsyslogd -n` with one of the published configs; stopped (SIGTERM, then waited
/// for) by [`Rsyslogd::stop`], killed if the test fails first.
struct Rsyslogd {
    child: tokio::process::Child,
}

impl Rsyslogd {
    async fn start(config_name: &str, values: &[(&str, String)], dir: &Path) -> Rsyslogd {
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("agents")
                .join(config_name),
        )
        .expect("the published config");
        let config = values
            .iter()
            .fold(template, |text, (name, value)| text.replace(name, value));
        assert!(!config.contains("@WORK_DIR@") && !config.contains("@FILE@"));
        let path = dir.join("rsyslog.conf");
        std::fs::write(&path, config).expect("write the config");
        let check = tokio::process::Command::new(rsyslogd())
            .args(["-N1", "-f"])
            .arg(&path)
            .output()
            .await
            .expect("rsyslogd runs (Debian's rsyslog, installed by ./setup.sh)");
        assert!(
            check.status.success(),
            "rsyslogd -N1 refuses the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = tokio::process::Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslogd.err")).expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("rsyslogd starts");
        Rsyslogd { child }
    }

    async fn stop(mut self) {
        real_agents::stop(&mut self.child, Duration::from_secs(10)).await;
    }
}

/// A scratch directory with a file of [`LINES`] numbered lines.
fn file_of_lines(prefix: &str) -> (PathBuf, PathBuf, Vec<String>) {
    let dir = std::env::temp_dir().join(unique(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("app.log");
    let lines: Vec<String> = (0..LINES)
        .map(|i| format!("GET /api/orders/{i:06} 200 12ms user=u{}", i % 97))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the file");
    (dir, file, lines)
}

#[tokio::test]
async fn rsyslog_omfwd_ships_a_file_over_tcp_syslog_line_for_line() {
    let p = pipeline().await;
    let (dir, file, lines) = file_of_lines("rsyslog-omfwd");
    let tag = unique("rs-fwd");
    let rsyslogd = Rsyslogd::start(
        "rsyslog-omfwd.conf",
        &[
            ("@WORK_DIR@", dir.display().to_string()),
            ("@FILE@", file.display().to_string()),
            ("@TAG@", tag.clone()),
            ("@PORT@", p.syslog_tcp.port().to_string()),
        ],
        &dir,
    )
    .await;
    let rows = stored(&tag, LINES, Duration::from_secs(120)).await;
    assert_each_line_once(&rows, &lines);
    rsyslogd.stop().await;
    p.producer.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// rsyslog read the file again from its start, as after a restart that lost imfile's
/// state: the `_id` is the file and the line's offset, so each line is stored once.
#[tokio::test]
async fn rsyslog_omelasticsearch_ships_a_file_through_the_bulk_api_each_line_once_even_read_twice()
{
    let p = pipeline().await;
    let (dir, file, lines) = file_of_lines("rsyslog-es");
    let tag = unique("rs-es");
    let values = [
        ("@WORK_DIR@", dir.display().to_string()),
        ("@FILE@", file.display().to_string()),
        ("@TAG@", tag.clone()),
        ("@ES_URL@", format!("{}/producer/es", p.producer.base)),
    ];
    let rsyslogd = Rsyslogd::start("rsyslog-omelasticsearch.conf", &values, &dir).await;
    let rows = stored(&tag, LINES, Duration::from_secs(120)).await;
    assert_each_line_once(&rows, &lines);
    rsyslogd.stop().await;

    // imfile's state files gone: the file is read again from its first line.
    let states: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("work dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("imfile-state"))
        })
        .collect();
    assert!(
        !states.is_empty(),
        "imfile kept its state in the work directory"
    );
    for state in states {
        std::fs::remove_file(state).expect("remove imfile's state");
    }
    let sent_before = protocol_events_sent(&p.producer, "es_bulk").await;
    let rsyslogd = Rsyslogd::start("rsyslog-omelasticsearch.conf", &values, &dir).await;
    eventually(
        "rsyslog to send the file again",
        Duration::from_secs(120),
        || async {
            (protocol_events_sent(&p.producer, "es_bulk").await >= sent_before + LINES as f64)
                .then_some(())
        },
    )
    .await;
    let rows = stored(&tag, LINES, Duration::from_secs(120)).await;
    assert_each_line_once(&rows, &lines);
    rsyslogd.stop().await;
    p.producer.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// README shows the configs these tests run, byte for byte.
#[test]
fn the_readme_shows_the_configs_the_tests_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).expect("README");
    for name in ["rsyslog-omfwd.conf", "rsyslog-omelasticsearch.conf"] {
        let config = std::fs::read_to_string(root.join("agents").join(name)).expect("config");
        assert!(
            readme.contains(&format!("```\n{config}```")),
            "README shows {name} as it is"
        );
    }
}
