//! The gateway on port 0 against the real PostgreSQL and Redis, over rows stored the
//! way the consumer stores them (rollups included) under a source unique to each test.

use crate::helpers::{db, get_json, http, new_row, spawn_gateway, store_rows, unique};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use std::collections::HashSet;
use uuid::Uuid;

const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];

struct Seeded {
    source: String,
    other_source: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// 120 events over two sources, four levels and the last two hours; some share a
/// timestamp (to prove the id tie-break) and some mention "database".
fn seed() -> Seeded {
    let source = unique("gw");
    let other_source = unique("gw-other");
    let base = Utc::now() - Duration::hours(2);
    let rows: Vec<_> = (0..120i64)
        .map(|i| {
            let src = if i % 3 == 0 { &other_source } else { &source };
            // Pairs share a timestamp.
            let ts = base + Duration::seconds((i / 2) * 60);
            let message = match i % 4 {
                0 => format!("Database connection failed #{i}"),
                1 => format!("user logged in #{i}"),
                2 => format!("database query slow #{i}"),
                _ => format!("cache warmed #{i}"),
            };
            let correlation = (i % 10 == 0).then(|| format!("{source}-corr"));
            let mut row = new_row(
                LEVELS[(i % 4) as usize],
                message,
                src,
                ts,
                Some(serde_json::json!({"duration": i})),
                correlation,
            );
            row.kafka_offset = i;
            row.trace_id = matches!(i % 6, 1 | 2).then(|| format!("{source}-trace"));
            row
        })
        .collect();
    assert_eq!(store_rows(&rows), 120);
    Seeded {
        source,
        other_source,
        start: base - Duration::minutes(1),
        end: Utc::now(),
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn sql_count(where_clause: &str, sources: (&str, &str)) -> i64 {
    diesel::sql_query(format!(
        "SELECT count(*) AS n FROM log_events WHERE source IN ($1, $2) AND {where_clause}"
    ))
    .bind::<Text, _>(sources.0)
    .bind::<Text, _>(sources.1)
    .get_result::<Count>(&mut db())
    .expect("count")
    .n
}

/// `/logs` for the seeded source over a window that closed long ago (cacheable for
/// minutes), `minutes` long.
fn closed_window_url(base: &str, s: &Seeded, minutes: i64) -> String {
    format!(
        "{base}/gateway/api/query/logs?source={}&startTime={}&endTime={}",
        s.source,
        rfc(s.start),
        rfc(s.start + Duration::minutes(minutes))
    )
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn every_filter_combination_agrees_with_sql() {
    let s = seed();
    let app = spawn_gateway(|_| {}).await;
    let window = format!("startTime={}&endTime={}", rfc(s.start), rfc(s.end));
    let corr = format!("{}-corr", s.source);
    let trace = format!("{}-trace", s.source);
    let cases = [
        (
            format!("source={}", s.source),
            format!("source = '{}'", s.source),
        ),
        (
            format!("source={}&level=ERROR", s.source),
            format!("source = '{}' AND level = 'ERROR'", s.source),
        ),
        (
            format!("source={}&level=warning,err", s.source),
            format!("source = '{}' AND level IN ('WARN','ERROR')", s.source),
        ),
        (
            format!("source={}&correlationId={corr}", s.source),
            format!("source = '{}' AND correlation_id = '{corr}'", s.source),
        ),
        (
            format!("source={}&level=INFO&correlationId={corr}", s.source),
            format!(
                "source = '{}' AND level = 'INFO' AND correlation_id = '{corr}'",
                s.source
            ),
        ),
        (
            format!("source={}&level=DEBUG", s.other_source),
            format!("source = '{}' AND level = 'DEBUG'", s.other_source),
        ),
        (
            format!("source={}&traceId={trace}", s.source),
            format!("source = '{}' AND trace_id = '{trace}'", s.source),
        ),
        (
            format!("source={}&level=INFO&traceId={trace}", s.source),
            format!(
                "source = '{}' AND level = 'INFO' AND trace_id = '{trace}'",
                s.source
            ),
        ),
    ];
    for (query, predicate) in cases {
        let expected = sql_count(&predicate, (&s.source, &s.other_source));
        let (status, page) = get_json(&format!(
            "{}/gateway/api/query/logs?{window}&{query}&size=1000",
            app.base
        ))
        .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["totalElements"], expected, "{query}");
        assert_eq!(page["numberOfElements"], expected, "{query}");
        assert!(expected > 0, "the seed covers {query}");
    }
    // A trace id is not a correlation id.
    let (status, page) = get_json(&format!(
        "{}/gateway/api/query/logs?{window}&source={}&correlationId={trace}",
        app.base, s.source
    ))
    .await;
    assert_eq!(
        (status, &page["totalElements"]),
        (200, &serde_json::json!(0)),
        "{page}"
    );
    app.stop().await;
}

/// Walking every page, by offset and by cursor, gives each event once, newest first,
/// in the same order; for one source, and for two levels of it (read level by level
/// and merged).
#[tokio::test]
async fn paging_by_offset_and_by_cursor_covers_each_event_exactly_once() {
    let s = seed();
    let app = spawn_gateway(|s| s.cache.enabled = false).await;
    let window = format!("startTime={}&endTime={}", rfc(s.start), rfc(s.end));
    for (filter, predicate) in [
        (
            format!("source={}", s.source),
            format!("source = '{}'", s.source),
        ),
        (
            format!("source={}&level=WARN,ERROR", s.source),
            format!("source = '{}' AND level IN ('WARN', 'ERROR')", s.source),
        ),
    ] {
        let expected = sql_count(&predicate, (&s.source, &s.other_source)) as usize;
        let mut seen = Vec::new();
        for page_no in 0.. {
            let (_, page) = get_json(&format!(
                "{}/gateway/api/query/logs?{window}&{filter}&size=7&page={page_no}",
                app.base
            ))
            .await;
            assert_eq!(page["first"], page_no == 0);
            seen.extend(
                page["content"]
                    .as_array()
                    .expect("content")
                    .iter()
                    .map(|e| e["id"].to_string()),
            );
            if page["last"] == true {
                assert_eq!(page["totalPages"], page_no + 1);
                break;
            }
        }
        assert_eq!(seen.len(), expected, "{filter}");
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            expected,
            "no repeats: {filter}"
        );

        let mut by_cursor = Vec::new();
        let mut cursor = String::new();
        loop {
            let (_, page) = get_json(&format!(
                "{}/gateway/api/query/logs?{window}&{filter}&size=7&cursor={cursor}",
                app.base
            ))
            .await;
            let content = page["content"].as_array().expect("content");
            let timestamps: Vec<&str> = content
                .iter()
                .map(|e| e["timestamp"].as_str().expect("ts"))
                .collect();
            assert!(
                timestamps.windows(2).all(|w| w[0] >= w[1]),
                "newest first: {timestamps:?}"
            );
            by_cursor.extend(content.iter().map(|e| e["id"].to_string()));
            match page["nextCursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => break,
            }
        }
        assert_eq!(
            by_cursor, seen,
            "cursor paging walks the same order: {filter}"
        );

        // A page past the end (answered from the exact total, without walking the
        // rows before it) is empty and still carries the total.
        let (status, page) = get_json(&format!(
            "{}/gateway/api/query/logs?{window}&{filter}&size=1000&page=1000000",
            app.base
        ))
        .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["content"], serde_json::json!([]), "{filter}");
        assert_eq!(page["totalElements"], expected as i64, "{filter}");
        assert_eq!(page["totalElementsExact"], true, "{filter}");
        assert_eq!(page["number"], 1_000_000, "{filter}");
    }
    app.stop().await;
}

#[tokio::test]
async fn search_finds_words_phrases_exclusions_and_alternatives() {
    let s = seed();
    let app = spawn_gateway(|_| {}).await;
    let window = format!(
        "startTime={}&endTime={}&source={}&size=1000",
        rfc(s.start),
        rfc(s.end),
        s.source
    );
    let count = |q: &str| {
        let url = format!(
            "{}/gateway/api/query/search?{window}&query={}",
            app.base,
            urlencode(q)
        );
        async move {
            let (status, page) = get_json(&url).await;
            assert_eq!(status, 200, "{page}");
            page["totalElements"].as_i64().expect("total")
        }
    };
    let mine = |pattern: &str| {
        sql_count(
            &format!("source = '{}' AND message ILIKE '{pattern}'", s.source),
            (&s.source, &s.other_source),
        )
    };
    let database = mine("%database%");
    assert!(database > 0);
    assert_eq!(count("database").await, database, "word, any case");
    assert_eq!(
        count("\"connection failed\"").await,
        mine("%connection failed%"),
        "phrase"
    );
    assert_eq!(
        count("database -slow").await,
        mine("%database connection%"),
        "exclusion"
    );
    assert_eq!(
        count("cache or logged").await,
        mine("%cache%") + mine("%logged%"),
        "alternatives"
    );
    assert_eq!(
        count("connections").await,
        mine("%connection%"),
        "stemming: connections ~ connection"
    );
    let (status, page) = get_json(&format!(
        "{}/gateway/api/query/search?{window}&query={}",
        app.base,
        urlencode("'; DROP TABLE log_events; --")
    ))
    .await;
    assert_eq!(status, 200, "injection-looking text is just text: {page}");
    assert_eq!(page["totalElements"], 0);
    app.stop().await;
}

/// A full-text page comes from a walk newest first, or, past the walk's budget (rare
/// words), from the full-text index with the matches sorted: the same events in the
/// same order either way. `SEARCH_WALK_BUDGET_MS=0` takes the index at once.
#[tokio::test]
async fn a_search_from_the_index_is_the_page_the_walk_gives() {
    let s = seed();
    let walk = spawn_gateway(|s| s.cache.enabled = false).await;
    let index = spawn_gateway(|s| {
        s.cache.enabled = false;
        s.limits.search_walk_budget_ms = 0;
    })
    .await;
    let window = format!(
        "startTime={}&endTime={}&source={}",
        rfc(s.start),
        rfc(s.end),
        s.source
    );
    for query in [
        "query=database&size=7",
        "query=database&size=7&page=2",
        "query=database&size=5&level=WARN,ERROR",
        "query=cache%20or%20logged&size=1000",
        "query=nosuchword&size=7",
    ] {
        let ids = |base: String| {
            let url = format!("{base}/gateway/api/query/search?{window}&{query}");
            async move {
                let (status, page) = get_json(&url).await;
                assert_eq!(status, 200, "{page}");
                let ids: Vec<String> = page["content"]
                    .as_array()
                    .expect("content")
                    .iter()
                    .map(|e| e["id"].to_string())
                    .collect();
                (ids, page["totalElements"].clone())
            }
        };
        let (walked, walked_total) = ids(walk.base.clone()).await;
        let (indexed, indexed_total) = ids(index.base.clone()).await;
        assert_eq!(walked, indexed, "{query}");
        assert_eq!(walked_total, indexed_total, "{query}");
        assert!(
            !walked.is_empty() || query.contains("nosuchword"),
            "{query}"
        );
    }
    walk.stop().await;
    index.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = spawn_gateway(|_| {}).await;
    let base = format!("{}/gateway/api/query", app.base);
    for (path, field) in [
        ("logs?startTime=yesterday", "startTime"),
        (
            "logs?startTime=2024-01-02T00:00:00&endTime=2024-01-01T00:00:00",
            "endTime",
        ),
        ("logs?size=0", "size"),
        ("logs?size=1001", "size"),
        ("logs?page=x", "page"),
        // Past the deepest offset page, where no exact total says the page is empty
        // (schemathesis found a page 900,000 events deep taking seconds).
        ("logs?correlationId=c&size=1000&page=100", "page"),
        ("logs?level=LOUD", "level"),
        ("search?query=", "query"),
        ("search", "query"),
        // PostgreSQL text cannot hold NUL: refused up front, not a failed query (500).
        ("search?query=%00", "query"),
        ("logs?source=a%00b", "source"),
        ("logs?correlationId=%00", "correlationId"),
        ("logs?traceId=a%00b", "traceId"),
        ("stats?hoursBack=0", "hoursBack"),
        ("stats?hoursBack=169", "hoursBack"),
        ("logs/not-a-uuid", "id"),
    ] {
        let (status, body) = get_json(&format!("{base}/{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{path}: {body}");
        assert_eq!(
            body["path"]
                .as_str()
                .map(|p| p.starts_with("/gateway/api/query/")),
            Some(true)
        );
    }
    let (status, body) = get_json(&format!("{base}/logs/{}", Uuid::new_v4())).await;
    assert_eq!(status, 404, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn stats_count_levels_sources_hours_and_durations() {
    let _seeded = seed();
    let app = spawn_gateway(|_| {}).await;
    let (status, stats) =
        get_json(&format!("{}/gateway/api/query/stats?hoursBack=3", app.base)).await;
    assert_eq!(status, 200, "{stats}");
    let total = stats["totalLogs"].as_i64().expect("total");
    assert!(total >= 120, "{stats}");
    let levels: i64 = stats["levelCounts"]
        .as_object()
        .expect("levels")
        .values()
        .map(|v| v.as_i64().unwrap_or(0))
        .sum();
    assert_eq!(levels, total);
    assert!(stats["hourly"].as_array().expect("hourly").len() >= 2);
    assert!(stats["duration"]["samples"].as_i64().expect("samples") >= 120);
    assert!(stats["duration"]["p50"].as_f64().is_some());
    assert!(stats["errorRate"].as_f64().expect("rate") > 0.0);
    assert!(stats["timeRange"]["since"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn a_second_identical_query_is_a_cache_hit() {
    let s = seed();
    let app = spawn_gateway(|_| {}).await;
    // A closed window far in the past: cacheable for minutes.
    let url = closed_window_url(&app.base, &s, 30);
    let (_, first) = get_json(&url).await;
    let (_, second) = get_json(&url).await;
    assert_eq!(first, second);
    let metrics =
        crate::helpers::metrics_text(&format!("{}/gateway/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("cache_gets_total{result=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cache_gets_total{result=\"miss\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_redis_answers_still_come_from_postgres() {
    let s = seed();
    // Nothing listens on port 1: every Redis call fails fast.
    let app = spawn_gateway(|settings| settings.redis.port = 1).await;
    let url = format!(
        "{}/gateway/api/query/logs?source={}&startTime={}",
        app.base,
        s.source,
        rfc(s.start)
    );
    let expected = sql_count(
        &format!("source = '{}'", s.source),
        (&s.source, &s.other_source),
    );
    for _ in 0..5 {
        let (status, page) = get_json(&url).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["totalElements"], expected);
    }
    let (status, health) = get_json(&format!("{}/gateway/actuator/health", app.base)).await;
    assert_eq!(status, 200, "Redis is optional: {health}");
    assert_eq!(health["status"], "DEGRADED");
    app.stop().await;
}

#[tokio::test]
async fn with_api_keys_queries_need_a_valid_key() {
    let app =
        spawn_gateway(|s| s.auth.api_keys = Some("reader-1".parse().expect("infallible"))).await;
    let url = format!("{}/gateway/api/query/logs?size=1", app.base);
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["path"], "/gateway/api/query/logs");
    let response = http()
        .get(&url)
        .bearer_auth("reader-1")
        .send()
        .await
        .expect("with key");
    assert_eq!(response.status(), 200);
    let (status, _) = get_json(&format!("{}/gateway/api/query/health", app.base)).await;
    assert_eq!(status, 200);
    let (status, _) = get_json(&format!("{}/gateway/actuator/health", app.base)).await;
    assert_eq!(status, 200);
    app.stop().await;
}

fn metric_value(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn concurrent_misses_on_one_key_run_the_query_once() {
    let s = seed();
    let app = spawn_gateway(|_| {}).await;
    // A closed window, so the answer is cacheable; unique to this test.
    let url = closed_window_url(&app.base, &s, 45);
    let answers = futures::future::join_all((0..12).map(|_| get_json(&url))).await;
    assert!(answers.iter().all(|(status, _)| *status == 200));
    assert!(
        answers.windows(2).all(|w| w[0].1 == w[1].1),
        "every caller got the same answer"
    );
    let metrics =
        crate::helpers::metrics_text(&format!("{}/gateway/actuator/prometheus", app.base)).await;
    let from_db = metric_value(
        &metrics,
        "log_query_duration_seconds_count{endpoint=\"logs\",source=\"db\"}",
    );
    let from_cache = metric_value(
        &metrics,
        "log_query_duration_seconds_count{endpoint=\"logs\",source=\"cache\"}",
    );
    assert_eq!((from_db, from_cache), (1.0, 11.0), "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn a_new_event_is_visible_once_the_freshness_bound_has_passed() {
    let s = seed();
    let ttl_secs = 2;
    let app = spawn_gateway(move |settings| settings.cache.ttl_recent_secs = ttl_secs).await;
    // Open-ended ("until now"): the cache may serve this for at most ttl_secs.
    let url = format!(
        "{}/gateway/api/query/logs?source={}&size=1000",
        app.base, s.source
    );
    let (_, before) = get_json(&url).await;
    let count = before["totalElements"].as_i64().expect("total");
    store_rows(&[new_row(
        "INFO",
        "late arrival".into(),
        &s.source,
        Utc::now(),
        None,
        None,
    )]);
    tokio::time::sleep(std::time::Duration::from_millis(ttl_secs * 1000 + 500)).await;
    let (_, after) = get_json(&url).await;
    assert_eq!(
        after["totalElements"],
        count + 1,
        "visible after the {ttl_secs} s bound"
    );
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let app = spawn_gateway(|_| {}).await;
    let (status, doc) = get_json(&format!("{}/gateway/v3/api-docs", app.base)).await;
    assert_eq!(status, 200);
    for path in [
        "/gateway/api/query/logs",
        "/gateway/api/query/search",
        "/gateway/api/query/stats",
        "/gateway/api/query/logs/{id}",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
    let names: Vec<&str> = doc["paths"]["/gateway/api/query/logs"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in [
        "startTime",
        "endTime",
        "level",
        "source",
        "correlationId",
        "traceId",
        "page",
        "size",
        "cursor",
    ] {
        assert!(names.contains(&name), "{name} documented: {names:?}");
    }
    let ui = http()
        .get(format!("{}/gateway/swagger-ui/", app.base))
        .send()
        .await
        .expect("ui");
    assert_eq!(ui.status(), 200);
    app.stop().await;
}

/// PostgreSQL prints a jsonb number in full (f64::MAX as 309 digits); every number a
/// client could send must still read back, or one such event fails whole pages (500).
#[tokio::test]
async fn metadata_with_extreme_numbers_reads_back() {
    let app = spawn_gateway(|_| {}).await;
    let source = unique("gw-numbers");
    let metadata = serde_json::json!({
        "max": f64::MAX, "min": -f64::MAX, "tiny": 5e-324, "small": 1.6419470144124444e-286,
        "big": u64::MAX, "negative": i64::MIN,
    });
    let id = Uuid::new_v4();
    diesel::sql_query(
        "INSERT INTO log_events (id, level, message, source, \"timestamp\", metadata, kafka_partition, kafka_offset) \
         VALUES ($1, 'INFO', 'numbers', $2, now(), $3::jsonb, 0, 0)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(&source)
    .bind::<Text, _>(metadata.to_string())
    .execute(&mut db())
    .expect("seed row");

    let (status, event) = get_json(format!("{}/gateway/api/query/logs/{id}", app.base)).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["metadata"], metadata, "{event}");
    let (status, page) = get_json(format!(
        "{}/gateway/api/query/logs?source={source}",
        app.base
    ))
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["content"][0]["metadata"], metadata, "{page}");
    app.stop().await;
}

/// Each query class has its own limit: with a lock held on the table, a search is
/// stopped at its 300 ms (503 naming the limit and its setting, counted in
/// `log_query_timeouts_total`) while a page, whose limit is 20 s, waits and answers
/// once the lock is gone. The breaker stays closed (the database is fine) and the
/// search answers again at once.
#[tokio::test]
async fn each_query_class_is_stopped_at_its_own_limit() {
    let app = spawn_gateway(|s| {
        s.limits.search_ms = 300;
        s.limits.page_ms = 20_000;
        s.cache.enabled = false;
    })
    .await;
    let source = unique("gw-timeout");
    let search = format!(
        "{}/gateway/api/query/search?query=anything&source={source}",
        app.base
    );
    let logs = format!("{}/gateway/api/query/logs?source={source}", app.base);
    let lock = crate::helpers::TableLock::hold();
    let page = tokio::spawn(get_json(logs));
    let (status, body) = get_json(&search).await;
    crate::helpers::assert_unavailable_because(
        status,
        &body,
        "search query ran past its 300 ms limit (QUERY_TIMEOUT_SEARCH_MS)",
    );
    assert!(
        !page.is_finished(),
        "the page waits for the lock within its own limit"
    );
    drop(lock);
    let (status, page) = page.await.expect("page task");
    assert_eq!(
        status, 200,
        "the page answers once the lock is gone: {page}"
    );

    let (status, found) = get_json(&search).await;
    assert_eq!(status, 200, "answers again at once: {found}");
    let (_, health) = get_json(format!("{}/gateway/actuator/health", app.base)).await;
    assert_eq!(health["components"]["postgres"]["status"], "UP", "{health}");
    let metrics =
        crate::helpers::metrics_text(&format!("{}/gateway/actuator/prometheus", app.base)).await;
    assert!(
        metrics.contains("log_query_timeouts_total{class=\"search\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("log_query_timeouts_total{class=\"page\"} 0"));
    app.stop().await;
}

/// The gateway's connections plan every statement for its values (a generic plan
/// could not use the partial level index) and carry the ceiling of the class limits.
#[test]
fn the_gateways_connections_plan_for_the_values_and_carry_the_ceiling() {
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let mut settings = api_gateway::settings::Settings::defaults();
    crate::helpers::use_test_database(&mut settings.postgres);
    let pool = log_store::pool::build(
        &settings.postgres,
        Some(Box::new(log_store::QuerySession {
            statement_timeout: std::time::Duration::from_millis(4_000),
        })),
    )
    .expect("pool");
    let mut conn = pool.get().expect("connection");
    let show = |conn: &mut PgConnection, name: &str| {
        diesel::sql_query(format!("SELECT current_setting('{name}') AS value"))
            .get_result::<Setting>(conn)
            .expect("setting")
            .value
    };
    assert_eq!(show(&mut conn, "plan_cache_mode"), "force_custom_plan");
    assert_eq!(show(&mut conn, "statement_timeout"), "4s");
}
