//! Connections: the cap per worker, the listen backlog behind it, keep-alive.

use super::{producer_on_own_topic, producer_on_own_topic_with};
use crate::helpers::{event, eventually, post_json, Running};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// How many connections wait in the listening socket's accept queue: taken by the kernel,
/// not yet by the server (`ss`: Recv-Q of a listening socket).
fn accept_queue(app: &Running) -> usize {
    let port = app.base.rsplit(':').next().expect("a port");
    let ss = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss runs");
    let line = String::from_utf8_lossy(&ss.stdout).into_owned();
    line.split_whitespace()
        .nth(1)
        .and_then(|queued| queued.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket on port {port}: {line}"))
}

/// Waits until exactly `count` connections wait in the accept queue.
async fn accept_queue_reaches(app: &Running, count: usize) {
    eventually(
        &format!("{count} connections in the accept queue"),
        Duration::from_secs(20),
        || {
            let queued = accept_queue(app);
            async move { (queued == count).then_some(()) }
        },
    )
    .await;
}

/// A producer with one worker taking at most `cap` connections, and its address.
async fn producer_with_connection_cap(cap: usize) -> (Running, String) {
    let (app, _topic) = producer_on_own_topic_with(|s| {
        s.http.workers = 1;
        s.http.max_connections = cap;
    })
    .await;
    let address = app.base.trim_start_matches("http://").to_owned();
    (app, address)
}

/// Connections past `HTTP_MAX_CONNECTIONS` are not served until one closes: they wait
/// in the kernel's accept queue, so a flood of connections cannot grow the producer's
/// read buffers without bound. (Without the cap the third request is answered at once.)
#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let (app, address) = producer_with_connection_cap(2).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(
            tokio::net::TcpStream::connect(&address)
                .await
                .expect("connect"),
        );
    }
    // Both are the server's once none waits in the kernel's queue.
    accept_queue_reaches(&app, 0).await;

    let url = format!("{}/producer/api/logs/ingest", app.base);
    let third = tokio::spawn(async move { post_json(&url, &event("cap", "INFO", "third")).await });
    // The third waits in the kernel's queue: the server has not even accepted it.
    accept_queue_reaches(&app, 1).await;
    assert!(
        !third.is_finished(),
        "served while both connection slots were taken"
    );

    drop(idle.pop());
    let (status, body) = third.await.expect("the third request");
    assert_eq!(status, 200, "{body}");
    drop(idle);
    app.stop().await;
}

/// A burst of connections far past `HTTP_MAX_CONNECTIONS` waits in the listen backlog
/// (`HTTP_LISTEN_BACKLOG`), and every request is answered once a slot frees up: the cap
/// delays connections, it never refuses or resets them.
#[tokio::test]
async fn a_burst_of_connections_past_the_cap_waits_in_the_backlog_and_all_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CONNECTIONS: usize = 200;
    let (app, address) = producer_with_connection_cap(1).await;
    // The only slot is taken, so every connection below waits in the backlog.
    let holder = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    accept_queue_reaches(&app, 0).await;

    let requests: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(&address).await?;
                stream
                    .write_all(
                        b"GET /producer/api/logs/health HTTP/1.1\r\nHost: x\r\n\
                          Connection: close\r\n\r\n",
                    )
                    .await?;
                let mut answer = Vec::new();
                tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
                    .await??;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned(),
                )
            })
        })
        .collect();
    // Every one of them is in the backlog before the slot frees up.
    accept_queue_reaches(&app, CONNECTIONS).await;
    drop(holder);

    let mut answers = HashMap::<String, usize>::new();
    for request in requests {
        let answer = match request.await.expect("client task") {
            Ok(status_line) => status_line,
            Err(e) => format!("no answer: {e}"),
        };
        *answers.entry(answer).or_default() += 1;
    }
    assert_eq!(
        answers.get("HTTP/1.1 200"),
        Some(&CONNECTIONS),
        "{answers:?}"
    );
    app.stop().await;
}

/// A keep-alive client at a normal pace gets an answer to every request: no reset, no
/// connection closed under it. The middle pause outlasts the server's keep-alive (5 s),
/// so the second phase also reuses connections the server closed while they were idle.
#[tokio::test]
async fn a_keep_alive_client_never_sees_a_dropped_connection() {
    let (app, _topic) = producer_on_own_topic().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let url = format!("{}/producer/api/logs/batch", app.base);
    for phase in 0..2 {
        let senders: Vec<_> = (0..4)
            .map(|sender| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    for request in 0..25 {
                        let batch: Vec<Value> = (0..100)
                            .map(|i| {
                                event(
                                    "keepalive",
                                    "INFO",
                                    &format!("{phase}/{sender}/{request}/{i}"),
                                )
                            })
                            .collect();
                        let outcome = client.post(&url).json(&batch).send().await;
                        outcomes.push(
                            outcome
                                .map(|r| r.status().as_u16())
                                .map_err(|e| format!("{e:?}")),
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    outcomes
                })
            })
            .collect();
        for sender in senders {
            for outcome in sender.await.expect("sender") {
                assert_eq!(outcome, Ok(200), "phase {phase}");
            }
        }
        if phase == 0 {
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
    }
    app.stop().await;
}
