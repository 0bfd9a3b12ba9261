//! Redis stopped under the running stack (`./setup.sh stop redis`): the gateway keeps
//! answering, correctly, from PostgreSQL, reports itself DEGRADED (not DOWN), and uses
//! the cache again once Redis is back.
//!
//! Its own test binary, so no other test runs while Redis is away.

#[path = "api/helpers.rs"]
mod helpers;

use helpers::{eventually, get_json, json, require_infrastructure, stack, unique, Outage, GATEWAY};
use std::time::Duration;

#[tokio::test]
async fn the_gateway_answers_correctly_without_redis() {
    require_infrastructure();
    let client = helpers::http();
    let source = unique("redis-outage");
    stack::ingest_batch(&source, "WARN", 30, |i| format!("{i}")).await;
    eventually("30 rows", Duration::from_secs(30), || {
        let source = source.clone();
        async move { (stack::rows_for_source(&source).len() == 30).then_some(()) }
    })
    .await;

    let outage = Outage::begin("redis");
    for _ in 0..10 {
        let (status, page) = get_json(format!(
            "{GATEWAY}/gateway/api/query/logs?source={source}&level=WARN"
        ))
        .await;
        assert_eq!(status, 200, "no error to the user: {page}");
        assert_eq!(page["totalElements"], 30, "{page}");
    }
    let (status, health) = get_json(format!("{GATEWAY}/gateway/actuator/health")).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "DEGRADED", "{health}");
    assert_eq!(health["components"]["redis"]["status"], "DOWN", "{health}");

    outage.end();
    eventually(
        "the gateway to see Redis again",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let (_, health) = json(
                    client
                        .get(format!("{GATEWAY}/gateway/actuator/health"))
                        .send()
                        .await
                        .ok()?,
                )
                .await;
                (health["status"] == "UP").then_some(())
            }
        },
    )
    .await;
}
