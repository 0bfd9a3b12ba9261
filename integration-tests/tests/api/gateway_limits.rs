//! The gateway's bounded answers: the count that stops at 10,000 (over rows under a
//! source unique to the test), and stats from the rollups, exact counts and percentiles
//! within their bound (in a database of its own).

use crate::helpers::{
    get_json, new_migrated_database, new_row, spawn_gateway, store_rows, store_rows_in, unique,
};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use std::collections::BTreeMap;

/// `infos` INFO rows and one ERROR row under one source, a second apart, the newest
/// at `newest`; each mentions "capped" and carries a numeric `metadata.duration`.
struct Seeded {
    source: String,
}

impl Seeded {
    fn new(prefix: &str, infos: i64, newest: DateTime<Utc>) -> Seeded {
        let source = unique(prefix);
        let rows: Vec<_> = (0..=infos)
            .map(|g| {
                new_row(
                    if g == 0 { "ERROR" } else { "INFO" },
                    format!("capped count {g}"),
                    &source,
                    newest - Duration::seconds(g),
                    Some(serde_json::json!({"duration": g})),
                    None,
                )
            })
            .collect();
        assert_eq!(store_rows(&rows), rows.len());
        Seeded { source }
    }
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// 10,001 matches under one source: the total of a time, level and source filter is
/// exact past 10,000 (from the rollups); a full-text total stops at 10,000 and says it
/// is not exact, and the page cannot claim to be the last.
#[tokio::test]
async fn totals_are_exact_without_full_text_and_capped_with_it() {
    let newest = Utc::now() - Duration::minutes(1);
    let rows = Seeded::new("gw-capped", 10_000, newest);
    // Cache off: each answer below must come from the count itself. A budget no
    // count here can exceed, so the capped count is what answers.
    let app = spawn_gateway(|s| {
        s.cache.enabled = false;
        s.limits.count_budget_ms = 30_000;
    })
    .await;
    let base = format!("{}/gateway/api/query", app.base);
    let window = format!(
        "source={}&startTime={}&endTime={}&size=100",
        rows.source,
        rfc(newest - Duration::hours(4)),
        rfc(newest)
    );

    let (status, all) = get_json(format!("{base}/logs?{window}")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["totalElements"], 10_001, "exact past 10,000");
    assert_eq!(all["totalElementsExact"], true);
    assert_eq!(all["totalPages"], 101);
    assert_eq!(all["numberOfElements"], 100);
    assert_eq!(all["last"], false);
    assert!(all["nextCursor"].is_string(), "{all}");

    let (status, searched) = get_json(format!("{base}/search?{window}&query=capped")).await;
    assert_eq!(status, 200, "{searched}");
    assert_eq!(searched["totalElements"], 10_000, "stops at the cap");
    assert_eq!(searched["totalElementsExact"], false, "and says so");
    assert_eq!(searched["last"], false);

    let (status, exact) = get_json(format!("{base}/search?{window}&query=capped&level=INFO")).await;
    assert_eq!(status, 200, "{exact}");
    assert_eq!(exact["totalElements"], 10_000);
    assert_eq!(exact["totalElementsExact"], true, "10,000 is still exact");
    let (_, last) = get_json(format!("{base}/logs?{window}&level=INFO&page=99")).await;
    assert_eq!(last["last"], true, "{last}");
    assert_eq!(last["totalElements"], 10_000);
    assert_eq!(last["numberOfElements"], 100);

    let (_, errors) = get_json(format!("{base}/logs?{window}&level=ERROR")).await;
    assert_eq!(errors["totalElements"], 1);
    assert_eq!(errors["totalElementsExact"], true);
    app.stop().await;
}

/// A full-text count that runs past `COUNT_BUDGET_MS` is abandoned: the page still
/// answers, with the planner's estimate as the total (at least what the page shows,
/// at most the cap), marked not exact.
#[tokio::test]
async fn a_count_past_its_budget_answers_an_estimate_marked_as_such() {
    let newest = Utc::now() - Duration::minutes(1);
    let rows = Seeded::new("gw-budget", 10_000, newest);
    let app = spawn_gateway(|s| {
        s.cache.enabled = false;
        s.limits.count_budget_ms = 1;
    })
    .await;
    let (status, page) = get_json(format!(
        "{}/gateway/api/query/search?query=capped&source={}&startTime={}&endTime={}&size=100",
        app.base,
        rows.source,
        rfc(newest - Duration::hours(4)),
        rfc(newest)
    ))
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["numberOfElements"], 100, "the page itself is whole");
    assert_eq!(page["totalElementsExact"], false, "{page}");
    let total = page["totalElements"].as_i64().expect("total");
    assert!((100..=10_000).contains(&total), "{page}");
    assert_eq!(page["last"], false, "{page}");
    app.stop().await;
}

/// `/stats` and the totals of `/logs` from the rollups, in a database of its own so
/// that every event in it is known: the counts equal `COUNT(*)` over the rows for
/// windows that start and end inside minutes (edges counted from rows, the rest from
/// minute, hour and day rollups, folded and not), replays add nothing, and each
/// percentile is within 2% of the exact one.
#[tokio::test]
async fn stats_and_page_totals_equal_the_rows_and_percentiles_are_within_two_percent() {
    let url = new_migrated_database();
    let now = Utc::now();
    let levels = [
        "INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG", "INFO", "FATAL",
    ];
    let sources = ["checkout", "search", "search", "auth", "search"];
    // Durations spread over six orders of magnitude (a fixed pseudo-random sequence),
    // every seventh event without one.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut durations = Vec::new();
    let rows: Vec<_> = (0..6000i64)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let duration = 10f64.powf((seed % 1_000_000) as f64 / 1_000_000.0 * 6.0) / 100.0;
            // 30 hours back from ten minutes ago, 18 s apart, some to the millisecond.
            let at = now - Duration::minutes(10) - Duration::milliseconds(i * 18_000 + i % 7);
            let metadata = (i % 7 != 0).then(|| serde_json::json!({"duration": duration}));
            if i % 7 != 0 {
                durations.push((at, duration));
            }
            let mut row = new_row(
                levels[i as usize % 8],
                format!("e{i}"),
                sources[i as usize % 5],
                at,
                metadata,
                None,
            );
            row.kafka_partition = (i % 3) as i32;
            row
        })
        .collect();
    // Half, then a fold of the settled buckets, then the rest and a replay of all.
    assert_eq!(store_rows_in(&url, &rows[..3000]), 3000);
    let mut conn = PgConnection::establish(&url).expect("connect");
    let upkeep = log_store::Upkeep {
        retention_days: 30,
        id_memory_days: 2,
        dead_letter_retention_days: 30,
    };
    assert!(upkeep.run(&mut conn, now).expect("upkeep").folded > 0);
    assert_eq!(store_rows_in(&url, &rows[3000..]), 3000);
    assert_eq!(store_rows_in(&url, &rows), 0, "a replay stores nothing");

    let app = spawn_gateway(|s| {
        s.postgres.url = url.clone();
        s.cache.enabled = false;
    })
    .await;
    let windows = [
        (
            now - Duration::hours(26) - Duration::milliseconds(17_321),
            now - Duration::minutes(40) + Duration::milliseconds(5_123),
        ),
        (now - Duration::hours(3) + Duration::milliseconds(999), now),
        (
            now - Duration::minutes(50) - Duration::seconds(7),
            now - Duration::minutes(49),
        ),
        // Every event, and at least one whole UTC day from the day rollup.
        (now - Duration::hours(50), now),
    ];
    for (since, until) in windows {
        let (status, stats) = get_json(format!(
            "{}/gateway/api/query/stats?startTime={}&endTime={}",
            app.base,
            rfc(since),
            rfc(until)
        ))
        .await;
        assert_eq!(status, 200, "{stats}");
        let inside = |at: &DateTime<Utc>| *at >= since && *at <= until;
        // COUNT(*) over the rows, per level and per source.
        for (column, field) in [("level", "levelCounts"), ("source", "sourceCounts")] {
            let counted = count_by(&mut conn, column, since, until);
            let answered: BTreeMap<String, i64> = stats[field]
                .as_object()
                .expect(field)
                .iter()
                .map(|(k, v)| (k.clone(), v.as_i64().expect("count")))
                .filter(|(_, n)| *n > 0)
                .collect();
            assert_eq!(answered, counted, "{field} of {since}..={until}");
        }
        let total: i64 = count_by(&mut conn, "level", since, until).values().sum();
        assert_eq!(stats["totalLogs"], total);
        // The totals of `/logs` count the same way, for every kind of filter.
        for (levels, source) in [
            (vec![], None),
            (vec!["INFO"], None),
            (vec!["WARN", "ERROR"], None),
            (vec![], Some("search")),
            (vec!["INFO", "FATAL"], Some("search")),
        ] {
            let mut url = format!(
                "{}/gateway/api/query/logs?size=1&startTime={}&endTime={}",
                app.base,
                rfc(since),
                rfc(until)
            );
            if !levels.is_empty() {
                url.push_str(&format!("&level={}", levels.join(",")));
            }
            if let Some(source) = source {
                url.push_str(&format!("&source={source}"));
            }
            let (status, page) = get_json(&url).await;
            assert_eq!(status, 200, "{page}");
            let counted = count_where(&mut conn, since, until, &levels, source);
            assert_eq!(page["totalElements"], counted, "{url}");
            assert_eq!(page["totalElementsExact"], true, "{url}");
        }
        let hourly: i64 = stats["hourly"]
            .as_array()
            .expect("hourly")
            .iter()
            .flat_map(|h| h["counts"].as_object().expect("counts").values())
            .map(|n| n.as_i64().expect("n"))
            .sum();
        assert_eq!(hourly, total, "the hours add up");

        let mut exact: Vec<f64> = durations
            .iter()
            .filter(|(at, _)| inside(at))
            .map(|(_, d)| *d)
            .collect();
        exact.sort_by(f64::total_cmp);
        let duration = &stats["duration"];
        assert_eq!(duration["samples"], exact.len() as i64, "{duration}");
        assert_eq!(duration["estimated"], !exact.is_empty());
        for (q, field) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            let truth = exact[(q * (exact.len() - 1) as f64).floor() as usize];
            let estimate = duration[field].as_f64().expect(field);
            assert!(
                (estimate - truth).abs() <= 0.02 * truth,
                "{field} of {since}..={until}: {estimate} vs exact {truth}"
            );
        }
    }
    app.stop().await;
}

/// `COUNT(*)` of the rows in `since..=until` with any of `levels` (all when empty)
/// and `source` (any when `None`).
fn count_where(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    levels: &[&str],
    source: Option<&str>,
) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM log_events \
         WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 \
           AND (cardinality($3::text[]) = 0 OR level::text = ANY($3)) \
           AND ($4::text IS NULL OR source = $4)",
    )
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(until)
    .bind::<diesel::sql_types::Array<Text>, _>(levels)
    .bind::<diesel::sql_types::Nullable<Text>, _>(source)
    .get_result::<Count>(conn)
    .expect("count")
    .n
}

/// `COUNT(*)` of the rows in `since..=until`, grouped by `column`.
fn count_by(
    conn: &mut PgConnection,
    column: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> BTreeMap<String, i64> {
    #[derive(QueryableByName)]
    struct Group {
        #[diesel(sql_type = Text)]
        key: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(format!(
        "SELECT {column}::text AS key, count(*) AS n FROM log_events \
         WHERE \"timestamp\" >= $1 AND \"timestamp\" <= $2 GROUP BY 1"
    ))
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(until)
    .load::<Group>(conn)
    .expect("count")
    .into_iter()
    .map(|g| (g.key, g.n))
    .collect()
}
