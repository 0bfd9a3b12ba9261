//! The syslog listeners (#33) driven by a real sender, util-linux `logger` (Debian's
//! own, in every install): RFC 5424 and RFC 3164, over TCP (line-feed and octet-counted
//! frames) and UDP, into an in-process producer and consumer on a topic of the test's
//! own, with rows in this binary's test database. Bad frames are written by hand, since
//! `logger` sends none.

#[path = "api/helpers.rs"]
mod helpers;

use diesel::prelude::*;
use helpers::{
    create_topic, db, eventually, metrics_text, spawn_consumer, spawn_producer_listening, unique,
    Running,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

struct Syslog {
    producer: Running,
    _consumer: Running,
    tcp: SocketAddr,
    udp: SocketAddr,
}

async fn syslog() -> Syslog {
    let topic = unique("syslog");
    let dlq = unique("syslog-dlq");
    create_topic(&topic, 2).await;
    create_topic(&dlq, 1).await;
    let producer_topic = topic.clone();
    let (producer, (tcp, udp)) = spawn_producer_listening(move |s| {
        s.kafka.topic = producer_topic;
        s.syslog.tcp_addr = Some("127.0.0.1:0".into());
        s.syslog.udp_addr = Some("127.0.0.1:0".into());
    })
    .await;
    let consumer = spawn_consumer(&topic, &dlq, &unique("syslog-group")).await;
    Syslog {
        producer,
        _consumer: consumer,
        tcp: tcp.expect("TCP listener on"),
        udp: udp.expect("UDP listener on"),
    }
}

/// Runs `logger` with `args`, to `address` over `transport` (`--tcp` or `--udp`).
async fn logger(address: SocketAddr, transport: &str, args: &[&str]) {
    let status = tokio::process::Command::new("logger")
        .args(["--server", &address.ip().to_string()])
        .args(["--port", &address.port().to_string(), transport])
        .args(args)
        .status()
        .await
        .expect("logger runs (util-linux, in every Debian)");
    assert!(status.success(), "logger {args:?}: {status}");
}

#[derive(QueryableByName, Debug)]
struct Stored {
    #[diesel(sql_type = diesel::sql_types::Text)]
    level: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    message: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    metadata: Option<String>,
}

/// The rows of `source`, once there are `expected` of them.
async fn stored(source: &str, expected: usize) -> Vec<Stored> {
    let source = source.to_owned();
    eventually(
        &format!("{expected} rows of {source}"),
        Duration::from_secs(60),
        || {
            let source = source.clone();
            async move {
                let rows = tokio::task::spawn_blocking(move || {
                    diesel::sql_query(
                        "SELECT level::text AS level, message, metadata::text AS metadata \
                         FROM log_events WHERE source = $1 ORDER BY message",
                    )
                    .bind::<diesel::sql_types::Text, _>(source)
                    .load::<Stored>(&mut db())
                    .expect("rows")
                })
                .await
                .expect("query task");
                (rows.len() >= expected).then_some(rows)
            }
        },
    )
    .await
}

fn metadata(row: &Stored) -> Value {
    serde_json::from_str(row.metadata.as_deref().expect("metadata")).expect("JSON")
}

/// The count of one outcome of `log_syslog_messages_total`.
async fn syslog_count(producer: &Running, transport: &str, outcome: &str) -> f64 {
    let text = metrics_text(&format!("{}/producer/actuator/prometheus", producer.base)).await;
    let labels = [
        format!("outcome=\"{outcome}\""),
        format!("transport=\"{transport}\""),
    ];
    text.lines()
        .filter(|line| line.starts_with("log_syslog_messages_total{"))
        .find(|line| labels.iter().all(|l| line.contains(l.as_str())))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {labels:?} in\n{text}"))
}

#[tokio::test]
async fn logger_over_tcp_and_udp_in_both_formats_stores_every_field() {
    let s = syslog().await;
    let tag = unique("sl");
    let (rfc5424, rfc3164, counted, udp) = (
        format!("{tag}-5424"),
        format!("{tag}-3164"),
        format!("{tag}-oc"),
        format!("{tag}-udp"),
    );
    logger(
        s.tcp,
        "--tcp",
        &[
            "--rfc5424",
            "--tag",
            &rfc5424,
            "--priority",
            "local0.err",
            "--msgid",
            "LOGIN",
            "--sd-id",
            "origin@32473",
            "--sd-param",
            "ip=\"10.0.0.1\"",
            "disk /dev/sda1 at 91%",
        ],
    )
    .await;
    logger(
        s.tcp,
        "--tcp",
        &[
            "--rfc3164",
            "--tag",
            &rfc3164,
            "--priority",
            "user.warning",
            "GET /health 503",
        ],
    )
    .await;
    logger(
        s.tcp,
        "--tcp",
        &[
            "--octet-count",
            "--tag",
            &counted,
            "--priority",
            "daemon.debug",
            "counted frame",
        ],
    )
    .await;
    logger(
        s.udp,
        "--udp",
        &["--tag", &udp, "--priority", "local3.crit", "link eth0 down"],
    )
    .await;

    let row = &stored(&rfc5424, 1).await[0];
    assert_eq!(
        (row.level.as_str(), row.message.as_str()),
        ("ERROR", "disk /dev/sda1 at 91%")
    );
    let meta = metadata(row);
    assert_eq!(meta["facility"], "local0");
    assert_eq!(meta["msgid"], "LOGIN");
    assert_eq!(meta["structuredData"]["origin@32473"]["ip"], "10.0.0.1");
    assert!(meta["hostname"].is_string(), "{meta}");

    let row = &stored(&rfc3164, 1).await[0];
    assert_eq!(
        (row.level.as_str(), row.message.as_str()),
        ("WARN", "GET /health 503")
    );
    assert_eq!(metadata(row)["facility"], "user");

    let row = &stored(&counted, 1).await[0];
    assert_eq!(
        (row.level.as_str(), row.message.as_str()),
        ("DEBUG", "counted frame")
    );

    let row = &stored(&udp, 1).await[0];
    assert_eq!(
        (row.level.as_str(), row.message.as_str()),
        ("FATAL", "link eth0 down")
    );
    assert_eq!(metadata(row)["facility"], "local3");

    assert!(syslog_count(&s.producer, "tcp", "accepted").await >= 3.0);
    assert!(syslog_count(&s.producer, "udp", "accepted").await >= 1.0);
    // And in the ingest metric by protocol, beside the HTTP routes (a Grafana panel).
    let text = metrics_text(&format!("{}/producer/actuator/prometheus", s.producer.base)).await;
    for (protocol, at_least) in [("syslog_tcp", 3.0), ("syslog_udp", 1.0), ("bulk", 0.0)] {
        let series = format!("log_ingestion_protocol_events_total{{protocol=\"{protocol}\"}} ");
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        assert!(n >= at_least, "{series}{n}");
    }
}

/// A file of lines through one TCP connection (`logger --file`): every line stored
/// once, in batches.
#[tokio::test]
async fn a_file_of_lines_over_one_connection_is_stored_line_for_line() {
    let s = syslog().await;
    let tag = unique("sl-file");
    let dir = std::env::temp_dir().join(unique("syslog-file"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("lines.log");
    let lines: Vec<String> = (0..3_000)
        .map(|i| format!("line {i:05} of the file"))
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write the file");
    logger(
        s.tcp,
        "--tcp",
        &[
            "--octet-count",
            "--tag",
            &tag,
            "--file",
            file.to_str().expect("UTF-8 path"),
        ],
    )
    .await;
    let rows = stored(&tag, lines.len()).await;
    let messages: Vec<&str> = rows.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        messages,
        lines.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// What `logger` never sends: a line that is not syslog, a frame over 64 KiB, a bad
/// octet count. Each is counted and skipped, and the same connection goes on to store
/// the good messages after it.
#[tokio::test]
async fn bad_frames_are_counted_and_skipped_and_the_connection_lives_on() {
    let s = syslog().await;
    let source = unique("sl-bad");
    let malformed_before = syslog_count(&s.producer, "tcp", "malformed").await;
    let oversized_before = syslog_count(&s.producer, "tcp", "oversized").await;
    let mut stream = tokio::net::TcpStream::connect(s.tcp)
        .await
        .expect("connect");
    let mut bytes = b"this is not syslog\n".to_vec();
    bytes.extend(format!("<13>1 - h {source} - - - first\n").into_bytes());
    bytes.extend(vec![b'x'; 70 * 1024]);
    bytes.extend(b"\n12x <13>bad count\n");
    let good = format!("<13>1 - h {source} - - - second");
    bytes.extend(format!("{} {good}", good.len()).into_bytes());
    stream.write_all(&bytes).await.expect("write");
    stream.flush().await.expect("flush");

    let rows = stored(&source, 2).await;
    let messages: Vec<&str> = rows.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["first", "second"]);
    eventually(
        "the bad frames counted",
        Duration::from_secs(10),
        || async {
            let malformed = syslog_count(&s.producer, "tcp", "malformed").await - malformed_before;
            let oversized = syslog_count(&s.producer, "tcp", "oversized").await - oversized_before;
            (malformed == 2.0 && oversized == 1.0).then_some(())
        },
    )
    .await;

    // UDP: a datagram that is not syslog is counted; the next one is stored.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket.send_to(b"garbage", s.udp).await.expect("send");
    let udp_good = format!("<14>1 - h {source}-udp - - - over udp");
    socket
        .send_to(udp_good.as_bytes(), s.udp)
        .await
        .expect("send");
    assert_eq!(
        stored(&format!("{source}-udp"), 1).await[0].message,
        "over udp"
    );
    assert!(syslog_count(&s.producer, "udp", "malformed").await >= 1.0);
}
