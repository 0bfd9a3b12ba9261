//! The priority-lane benchmark (#15), against the stack `./setup.sh` started:
//!
//! 1. stops the consumer (`./setup.sh stop consumer`);
//! 2. writes `--backlog` INFO events (1,000,000) straight onto the normal topic;
//! 3. sends one ERROR through the producer's `/ingest`, as a client would;
//! 4. starts the consumer and asks the gateway every 50 ms whether the ERROR is
//!    queryable (each ask a different `endTime`, so the Redis cache never answers);
//! 5. at that moment, counts the INFO events stored: the rest is the normal lag;
//! 6. follows the backlog until it has drained (or `--max-seconds`), with progress.
//!
//! Targets 127.0.0.1 only.
//!   ./load-test/priority-lane.sh [--backlog 1000000]

use anyhow::{ensure, Context};
use clap::Parser;
use diesel::prelude::*;
use log_common::settings::PostgresSettings;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "priority-lane")]
struct Args {
    /// INFO events queued on the normal topic before the ERROR.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: usize,
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    #[arg(long, default_value = "log-events")]
    topic: String,
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    producer_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    gateway_url: String,
    /// How long to follow the drain after the ERROR was found.
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    #[command(flatten)]
    postgres: PostgresSettings,
}

fn setup(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("./setup.sh").args(args).status()?;
    ensure!(status.success(), "./setup.sh {args:?} failed");
    Ok(())
}

fn stored_info(conn: &mut PgConnection, source: &str) -> anyhow::Result<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM log_events WHERE source = $1 AND level = 'INFO'",
    )
    .bind::<diesel::sql_types::Text, _>(source)
    .get_result(conn)?;
    Ok(count.n)
}

async fn fill(args: &Args, source: &str) -> anyhow::Result<f64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "200000")
        .create()?;
    let started = Instant::now();
    let mut sent = 0;
    while sent < args.backlog {
        let chunk = (args.backlog - sent).min(50_000);
        let now = chrono::Utc::now();
        let deliveries: Vec<_> = (sent..sent + chunk)
            .map(|i| {
                let event = json!({"id": uuid::Uuid::now_v7(), "level": "INFO",
                    "message": format!("backlog event {i}"), "source": source, "timestamp": now});
                producer
                    .send_result(FutureRecord::<(), _>::to(&args.topic).payload(&event.to_string()))
                    .map_err(|(e, _)| anyhow::anyhow!("cannot queue: {e}"))
            })
            .collect::<Result<_, _>>()?;
        for delivery in deliveries {
            delivery
                .await
                .context("producer gone")?
                .map_err(|(e, _)| anyhow::anyhow!("not delivered: {e}"))?;
        }
        sent += chunk;
        if sent % 200_000 == 0 || sent == args.backlog {
            println!("  filled {sent:>9} INFO events onto {}", args.topic);
        }
    }
    Ok(args.backlog as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for url in [&args.producer_url, &args.gateway_url] {
        ensure!(
            url.starts_with("http://127.0.0.1:"),
            "targets 127.0.0.1 only: {url}"
        );
    }
    ensure!(
        args.kafka.starts_with("127.0.0.1:"),
        "targets 127.0.0.1 only"
    );
    let source = format!(
        "priority-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut conn = PgConnection::establish(&args.postgres.connection_url()?)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;

    println!("1. stopping the consumer");
    setup(&["stop", "consumer"])?;
    println!(
        "2. {} INFO events onto {} (source {source})",
        args.backlog, args.topic
    );
    let fill_rate = fill(&args, &source).await?;
    println!("   fill: {fill_rate:.0} events/s");

    println!("3. one ERROR through the producer");
    let answer: Value = http
        .post(format!("{}/producer/api/logs/ingest", args.producer_url))
        .json(&json!({"level": "ERROR", "message": "the needle behind the backlog", "source": source}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let error_id = answer["logId"].as_str().context("logId")?.to_owned();

    println!("4. starting the consumer; asking the gateway every 50 ms");
    let started = Instant::now();
    let mut start = Command::new("./setup.sh")
        .args(["start", "consumer"])
        .spawn()?;
    let found_after = loop {
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the ERROR was not queryable within 120 s"
        );
        // A different endTime each time: a new cache key, so PostgreSQL answers.
        let end = chrono::Utc::now()
            + chrono::Duration::milliseconds(started.elapsed().as_millis() as i64 + 3_600_000);
        let url = format!(
            "{}/gateway/api/query/logs?level=ERROR&source={source}&size=1&endTime={}",
            args.gateway_url,
            end.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        if let Ok(response) = http.get(&url).send().await {
            if let Ok(page) = response.json::<Value>().await {
                let found = page["content"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|e| e["id"] == error_id.as_str()));
                if found {
                    break started.elapsed();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let info_then = stored_info(&mut conn, &source)?;
    let lag_then = args.backlog as i64 - info_then;
    println!(
        "   ERROR queryable {:.2} s after the consumer start; INFO stored then {info_then}, INFO lag {lag_then}",
        found_after.as_secs_f64()
    );
    start.wait()?;

    println!("5. following the INFO backlog");
    let drain_started = Instant::now();
    let mut stored = info_then;
    while stored < args.backlog as i64
        && drain_started.elapsed() < Duration::from_secs(args.max_seconds)
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
        stored = stored_info(&mut conn, &source)?;
        println!(
            "  [{:>4.0}s] INFO stored {stored:>9} / {}",
            started.elapsed().as_secs_f64(),
            args.backlog
        );
    }
    let total = started.elapsed().as_secs_f64();
    println!(
        "RESULT backlog={} error_queryable_s={:.2} info_lag_then={lag_then} backlog_drained={} drain_s={:.0} (from the consumer start)",
        args.backlog,
        found_after.as_secs_f64(),
        stored >= args.backlog as i64,
        total
    );
    Ok(())
}
