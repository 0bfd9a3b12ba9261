//! What the tests of the real agents (`otelcol.rs`, `rsyslog.rs`, `syslog_ng.rs`)
//! share: the rows a source got, the check that each line is stored once, the
//! producer's per-protocol count, and stopping an agent's process.

// Compiled into each of those binaries, which use different parts (as `helpers`).
#![allow(dead_code)]

use crate::helpers::{db, eventually, metrics_text, Running};
use diesel::prelude::*;
use std::time::Duration;

#[derive(QueryableByName)]
pub struct Stored {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub level: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub message: String,
}

pub fn rows_of(source: &str) -> Vec<Stored> {
    diesel::sql_query(
        "SELECT level::text AS level, message FROM log_events WHERE source = $1 ORDER BY message",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .load::<Stored>(&mut db())
    .expect("rows")
}

/// The rows of `source` once there are at least `expected` (waiting up to `within`),
/// after a pause in which a duplicate would show.
pub async fn stored(source: &str, expected: usize, within: Duration) -> Vec<Stored> {
    eventually(&format!("{expected} rows of {source}"), within, || {
        let source = source.to_owned();
        async move {
            let rows = tokio::task::spawn_blocking(move || rows_of(&source).len())
                .await
                .expect("query task");
            (rows >= expected).then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let source = source.to_owned();
    tokio::task::spawn_blocking(move || rows_of(&source))
        .await
        .expect("query task")
}

/// Every line stored once, as written, at INFO.
pub fn assert_each_line_once(rows: &[Stored], lines: &[String]) {
    let mut expected: Vec<&str> = lines.iter().map(String::as_str).collect();
    expected.sort_unstable();
    let stored: Vec<&str> = rows.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(stored.len(), expected.len(), "each line once");
    assert!(stored == expected, "the lines as written");
    assert!(rows.iter().all(|r| r.level == "INFO"));
}

/// `log_ingestion_protocol_events_total{protocol}`: what the producer handed to Kafka.
pub async fn protocol_events_sent(producer: &Running, protocol: &str) -> f64 {
    let text = metrics_text(&format!("{}/producer/actuator/prometheus", producer.base)).await;
    let label = format!("protocol=\"{protocol}\"");
    text.lines()
        .find(|line| {
            line.starts_with("log_ingestion_protocol_events_total{") && line.contains(&label)
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// SIGTERM to an agent, then waits (at most `grace`) for it to exit.
pub async fn stop(child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .arg(pid.to_string())
            .status()
            .await;
    }
    let _ = tokio::time::timeout(grace, child.wait()).await;
}
