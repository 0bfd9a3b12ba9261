//! The gateway's cache on port 0 against the real Redis and this binary's own
//! database: single flight, and a cache turned off on purpose.

use crate::helpers::{db, eventually, get_json, metrics_text, spawn_gateway, unique, TableLock};
use diesel::prelude::*;
use std::time::Duration;

/// The value of one sample line of a Prometheus text, 0 if absent.
fn sample(metrics: &str, line_start: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Backends of this test database waiting for a lock (the held table lock).
fn queries_waiting_for_the_lock(conn: &mut PgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .get_result::<Waiting>(conn)
    .expect("pg_stat_activity")
    .n
}

/// Eight identical uncached queries at once reach PostgreSQL once: the first runs,
/// the others wait for its answer. A lock on the table holds the first query until
/// every request has missed Redis, so all eight are in flight together.
#[tokio::test]
async fn concurrent_misses_on_one_key_run_the_query_once() {
    const REQUESTS: usize = 8;
    let app = spawn_gateway(|_| {}).await;
    let metrics_url = format!("{}/gateway/actuator/prometheus", app.base);
    let url = format!(
        "{}/gateway/api/query/logs?source={}",
        app.base,
        unique("single-flight")
    );
    let misses_before = sample(
        &metrics_text(&metrics_url).await,
        "cache_gets_total{result=\"miss\"} ",
    );

    let lock = TableLock::hold();

    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| tokio::spawn(get_json(url.clone())))
        .collect();
    // Every request has missed Redis, and the load is waiting for the lock (its page
    // and its count: two statements).
    eventually(
        "all requests to miss Redis",
        Duration::from_secs(20),
        || {
            let metrics_url = metrics_url.clone();
            async move {
                let misses = sample(
                    &metrics_text(&metrics_url).await,
                    "cache_gets_total{result=\"miss\"} ",
                );
                (misses - misses_before >= REQUESTS as f64).then_some(())
            }
        },
    )
    .await;
    let mut watcher = db();
    eventually(
        "the query to wait for the lock",
        Duration::from_secs(20),
        || {
            let waiting = queries_waiting_for_the_lock(&mut watcher);
            async move { (waiting >= 1).then_some(()) }
        },
    )
    .await;
    drop(lock);

    for request in requests {
        let (status, page) = request.await.expect("request task");
        assert_eq!(status, 200, "{page}");
    }
    let metrics = metrics_text(&metrics_url).await;
    let from_db = sample(
        &metrics,
        "log_query_duration_seconds_count{endpoint=\"logs\",source=\"db\"} ",
    );
    let shared = sample(
        &metrics,
        "log_query_duration_seconds_count{endpoint=\"logs\",source=\"cache\"} ",
    );
    assert_eq!((from_db, shared), (1.0, (REQUESTS - 1) as f64), "{metrics}");
    app.stop().await;
}

/// `CACHE_ENABLED=false` is a choice, not a fault: ready, not degraded.
#[tokio::test]
async fn a_gateway_with_its_cache_turned_off_is_ready_and_not_degraded() {
    let app = spawn_gateway(|s| s.cache.enabled = false).await;
    let (status, health) = get_json(format!("{}/gateway/actuator/health", app.base)).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "UP", "{health}");
    assert_eq!(
        health["components"]["redis"]["status"], "DISABLED",
        "{health}"
    );
    let (status, page) = get_json(format!(
        "{}/gateway/api/query/logs?source={}",
        app.base,
        unique("no-cache")
    ))
    .await;
    assert_eq!(status, 200, "answers from PostgreSQL: {page}");
    app.stop().await;
}

/// Stale while revalidate: within the first half of its TTL an entry is fresh; in the
/// second half it is still answered at once, as it was, and reloaded in the
/// background, so the next read has the new event without waiting for PostgreSQL.
#[tokio::test]
async fn an_entry_past_its_fresh_half_is_answered_at_once_and_reloaded_behind() {
    // A window that ends now: cached 4 s, fresh for 2.
    let app = spawn_gateway(|s| s.cache.ttl_recent_secs = 4).await;
    let metrics_url = format!("{}/gateway/actuator/prometheus", app.base);
    let source = unique("stale-while-revalidate");
    let url = format!("{}/gateway/api/query/logs?source={source}", app.base);
    let event = |n: i64| {
        crate::helpers::new_row(
            "INFO",
            format!("event {n}"),
            &source,
            chrono::Utc::now() - chrono::Duration::seconds(30 + n),
            None,
            None,
        )
    };
    assert_eq!(crate::helpers::store_rows(&[event(1)]), 1);
    let (_, first) = get_json(&url).await;
    assert_eq!(first["totalElements"], 1, "{first}");
    assert_eq!(crate::helpers::store_rows(&[event(2)]), 1);
    let (_, fresh) = get_json(&url).await;
    assert_eq!(fresh["totalElements"], 1, "fresh: from the cache");

    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let (_, stale) = get_json(&url).await;
    assert_eq!(
        stale["totalElements"], 1,
        "past the fresh half: as it was, at once"
    );
    let reloaded = eventually("the background reload", Duration::from_secs(10), || {
        let metrics_url = metrics_url.clone();
        async move {
            let metrics = metrics_text(&metrics_url).await;
            (sample(&metrics, "cache_reloads_total{result=\"ok\"} ") >= 1.0).then_some(metrics)
        }
    })
    .await;
    assert_eq!(
        sample(&reloaded, "cache_gets_total{result=\"stale\"} "),
        1.0,
        "{reloaded}"
    );
    let (_, renewed) = get_json(&url).await;
    assert_eq!(
        renewed["totalElements"], 2,
        "the reloaded answer: {renewed}"
    );
    let metrics = metrics_text(&metrics_url).await;
    assert_eq!(
        sample(
            &metrics,
            "log_query_duration_seconds_count{endpoint=\"logs\",source=\"db\"} "
        ),
        1.0,
        "only the first read waited for PostgreSQL: {metrics}"
    );
    app.stop().await;
}
