//! The gateway's two bounded paths, over rows seeded straight into `log_events` under
//! a source unique to each test (and deleted again afterwards): the count that stops
//! at 10,000, and stats percentiles estimated from a sample.

use crate::helpers::{db, get_json, spawn_gateway, unique};
use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};

/// `infos` INFO rows and one ERROR row under one source, a second apart, the newest
/// at `newest`; each mentions "capped" and carries a numeric `metadata.duration`.
/// Dropping it deletes them, pass or fail.
struct Seeded {
    source: String,
}

impl Seeded {
    fn new(prefix: &str, infos: i64, newest: DateTime<Utc>) -> Seeded {
        let source = unique(prefix);
        diesel::sql_query(
            "INSERT INTO log_events (id, level, message, source, \"timestamp\", metadata, kafka_partition, kafka_offset) \
             SELECT gen_random_uuid(), CASE WHEN g = 0 THEN 'ERROR' ELSE 'INFO' END, 'capped count ' || g, $1, \
             $2 - make_interval(secs => g), jsonb_build_object('duration', g), 0, g \
             FROM generate_series(0, $3) AS g",
        )
        .bind::<Text, _>(&source)
        .bind::<Timestamptz, _>(newest)
        .bind::<BigInt, _>(infos)
        .execute(&mut db())
        .expect("seed rows");
        Seeded { source }
    }
}

impl Drop for Seeded {
    fn drop(&mut self) {
        let _ = diesel::sql_query("DELETE FROM log_events WHERE source = $1")
            .bind::<Text, _>(&self.source)
            .execute(&mut db());
    }
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// 10,001 matches: `totalElements` stops at 10,000 and says it is not exact, and the
/// page cannot claim to be the last; exactly 10,000 matches are still counted exactly.
#[tokio::test]
async fn a_count_past_ten_thousand_stops_there_and_says_so() {
    let newest = Utc::now() - Duration::minutes(1);
    let rows = Seeded::new("gw-capped", 10_000, newest);
    // Cache off: each answer below must come from the count itself.
    let app = spawn_gateway(|s| s.cache.enabled = false).await;
    let base = format!("{}/gateway/api/query", app.base);
    let window = format!(
        "source={}&startTime={}&endTime={}&size=100",
        rows.source,
        rfc(newest - Duration::hours(4)),
        rfc(newest)
    );

    let (status, capped) = get_json(format!("{base}/logs?{window}")).await;
    assert_eq!(status, 200, "{capped}");
    assert_eq!(capped["totalElements"], 10_000, "stops at the cap");
    assert_eq!(capped["totalElementsExact"], false, "and says so");
    assert_eq!(capped["totalPages"], 100);
    assert_eq!(capped["numberOfElements"], 100);
    assert_eq!(capped["last"], false);
    assert!(capped["nextCursor"].is_string(), "{capped}");

    let (status, searched) = get_json(format!("{base}/search?{window}&query=capped")).await;
    assert_eq!(status, 200, "{searched}");
    assert_eq!(searched["totalElements"], 10_000);
    assert_eq!(
        searched["totalElementsExact"], false,
        "search counts the same way"
    );

    let (status, exact) = get_json(format!("{base}/logs?{window}&level=INFO")).await;
    assert_eq!(status, 200, "{exact}");
    assert_eq!(exact["totalElements"], 10_000);
    assert_eq!(exact["totalElementsExact"], true, "10,000 is still exact");
    let (_, last) = get_json(format!("{base}/logs?{window}&level=INFO&page=99")).await;
    assert_eq!(last["last"], true, "{last}");
    assert_eq!(last["numberOfElements"], 100);

    let (_, errors) = get_json(format!("{base}/logs?{window}&level=ERROR")).await;
    assert_eq!(errors["totalElements"], 1);
    assert_eq!(errors["totalElementsExact"], true);
    app.stop().await;
}

/// Past the sample target, the percentiles of `metadata.duration` come from a block
/// sample of the window: marked `estimated`, over fewer events than an exact pass.
/// The target is lowered for the test (the window holds every test's and user's
/// events of the last hour, so only the seeded ones are certain to be there).
#[tokio::test]
async fn stats_past_the_sample_target_estimate_percentiles_from_a_sample() {
    let _rows = Seeded::new("gw-sampled", 500, Utc::now() - Duration::seconds(30));
    // Cache off: stats are keyed by `hoursBack` alone, so another gateway's cached
    // answer could stand in for this one's.
    let sampled = spawn_gateway(|s| {
        s.cache.enabled = false;
        s.stats_sample_target = 100;
    })
    .await;
    let exact = spawn_gateway(|s| {
        s.cache.enabled = false;
        s.stats_sample_target = i64::MAX;
    })
    .await;
    let url = |base: &str| format!("{base}/gateway/api/query/stats?hoursBack=1");

    let (status, estimate) = get_json(url(&sampled.base)).await;
    assert_eq!(status, 200, "{estimate}");
    let (status, full) = get_json(url(&exact.base)).await;
    assert_eq!(status, 200, "{full}");
    // The whole answer lists every source of the hour; the duration part says enough.
    let (estimated, exactly) = (&estimate["duration"], &full["duration"]);

    assert_eq!(exactly["estimated"], false, "{exactly}");
    let all = exactly["samples"].as_i64().expect("samples");
    assert!(all >= 501, "every seeded duration counted: {exactly}");
    assert!(exactly["p50"].is_number(), "{exactly}");

    assert_eq!(estimated["estimated"], true, "{estimated}");
    let sampled_count = estimated["samples"].as_i64().expect("samples");
    assert!(
        sampled_count < all,
        "a sample, not every event: {sampled_count} of {all}"
    );
    assert!(
        estimate["totalLogs"].as_i64().expect("total") >= 501,
        "the counts stay exact: {}",
        estimate["totalLogs"]
    );
    sampled.stop().await;
    exact.stop().await;
}
