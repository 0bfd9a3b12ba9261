//! Every panel of every dashboard in `grafana/dashboards/` is checked against the real
//! Prometheus that `./setup.sh` started, after a short load through the real stack:
//! each query must be valid and return data. Grafana's own variables are substituted
//! the way Grafana would (`$__rate_interval` -> 1m).

#[path = "api/helpers.rs"]
mod helpers;

use helpers::{
    event, eventually, http, json, post_json, require_infrastructure, stack, unique, GATEWAY,
    PRODUCER,
};
use serde_json::Value;
use std::time::Duration;

const PROMETHEUS: &str = "http://127.0.0.1:9090";

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "30m")
}

async fn short_load(client: &reqwest::Client) {
    let source = unique("panels");
    stack::ingest_batch(&source, "INFO", 50, |i| format!("panel load {i}")).await;
    let (status, body) = post_json(
        format!("{PRODUCER}/producer/api/logs/ingest"),
        &event(&source, "ERROR", "panel load error"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["logId"].as_str().expect("logId").to_owned();
    eventually("the load to be stored", Duration::from_secs(60), || {
        let source = source.clone();
        async move { (stack::rows_for_source(&source).len() >= 51).then_some(()) }
    })
    .await;
    for path in [
        format!("logs?source={source}"),
        format!("logs?source={source}"),
        "search?query=panel".to_owned(),
        "stats?hoursBack=1".to_owned(),
        format!("logs/{id}"),
    ] {
        let r = client
            .get(format!("{GATEWAY}/gateway/api/query/{path}"))
            .send()
            .await
            .expect("query");
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn every_dashboard_panel_has_data_in_prometheus() {
    require_infrastructure();
    let client = http();
    assert!(
        client
            .get(format!("{PROMETHEUS}/-/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        "Prometheus is not ready on :9090: run ./setup.sh"
    );
    short_load(&client).await;
    // Two scrapes (every 5 s) after the load, so rate() has points on both sides.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../grafana/dashboards");
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dashboards dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        for panel in dashboard["panels"].as_array().expect("panels") {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let query = substitute(expr);
                let response = client
                    .get(format!("{PROMETHEUS}/api/v1/query"))
                    .query(&[("query", query.as_str())])
                    .send()
                    .await
                    .expect("prometheus");
                let (status, body) = json(response).await;
                checked += 1;
                if status != 200 || body["status"] != "success" {
                    failures.push(format!("{title}: invalid query {query}: {body}"));
                } else if body["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
                {
                    failures.push(format!("{title}: no data for {query}"));
                }
            }
        }
    }
    println!("{checked} panel queries checked");
    assert!(
        checked >= 18,
        "the dashboards hold the panels the issue lists ({checked} queries)"
    );
    assert!(
        failures.is_empty(),
        "panels without data:\n{}",
        failures.join("\n")
    );
}
