//! What a client is told: errors in the contract's shape, limits, the API document.

use super::producer_on_own_topic;
use crate::helpers::{event, get_json, http, json, post_json};
use serde_json::{json, Value};

#[tokio::test]
async fn batch_limits_are_413_naming_the_limit() {
    let (app, _topic) = producer_on_own_topic().await;
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| event("limits", "INFO", &format!("{i}")))
        .collect();
    let (status, body) =
        post_json(format!("{}/producer/api/logs/batch", app.base), &too_many).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().expect("message").contains("10000"),
        "{body}"
    );

    // 17 MiB of NDJSON: over the 16 MiB body limit, refused before any parsing.
    let line = format!("{}\n", event("limits", "INFO", &"x".repeat(16 * 1024)));
    let body = line.repeat(17 * 1024 * 1024 / line.len() + 1);
    let response = http()
        .post(format!("{}/producer/api/logs/bulk", app.base))
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("bulk");
    assert_eq!(response.status(), 413);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_naming_the_problem() {
    let (app, _topic) = producer_on_own_topic().await;
    let client = http();
    let ingest = format!("{}/producer/api/logs/ingest", app.base);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            client
                .post(&ingest)
                .json(&json!({"message": "m", "source": "s"})),
            400,
            "level",
        ),
        (
            client
                .post(&ingest)
                .json(&json!({"level": "LOUD", "message": "m", "source": "s"})),
            400,
            "level",
        ),
        (
            client.post(&ingest).json(
                &json!({"level": "INFO", "message": "m", "source": "s", "timestamp": "soon"}),
            ),
            400,
            "timestamp",
        ),
        (
            // Years ahead: a typo, not clock skew.
            client.post(&ingest).json(
                &json!({"level": "INFO", "message": "m", "source": "s", "timestamp": "2999-01-01T00:00:00Z"}),
            ),
            400,
            "timestamp",
        ),
        (
            client
                .post(&ingest)
                .json(&json!({"level": "INFO", "message": "m", "source": "s".repeat(101)})),
            400,
            "source",
        ),
        (
            client
                .post(&ingest)
                .json(&json!({"level": "INFO", "message": "m", "source": "s", "metadata": [1]})),
            400,
            "metadata",
        ),
        (
            client.post(&ingest).json(&json!([{"level": "INFO"}])),
            400,
            "$",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "application/json")
                .body("{not json"),
            400,
            "malformed",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "application/json"),
            400,
            "empty",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "text/plain")
                .body("{}"),
            415,
            "Content-Type",
        ),
        (
            client
                .post(&ingest)
                .header("Content-Type", "application/json")
                .body(vec![b' '; 1024 * 1024 + 1]),
            413,
            "limit",
        ),
        (
            client
                .post(format!("{}/producer/api/logs/batch", app.base))
                .json(&json!({"level": "INFO"})),
            400,
            "array",
        ),
        (
            client
                .post(format!("{}/producer/api/logs/batch", app.base))
                .json(&json!([])),
            400,
            "no events",
        ),
        (client.get(&ingest), 405, "Method Not Allowed"),
        (
            client.get(format!("{}/producer/nowhere", app.base)),
            404,
            "no route",
        ),
    ];
    for (request, expected_status, mentions) in cases {
        let (status, body) = json(request.send().await.expect("request")).await;
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(body["status"], expected_status, "{body}");
        assert!(
            body["timestamp"].is_string() && body["path"].is_string(),
            "{body}"
        );
        assert!(
            body.to_string().contains(mentions),
            "{body} should mention {mentions}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_served() {
    let (app, _topic) = producer_on_own_topic().await;
    let client = http();
    let (status, doc) = get_json(format!("{}/producer/v3/api-docs", app.base)).await;
    assert_eq!(status, 200);
    for path in [
        "/producer/api/logs/ingest",
        "/producer/api/logs/batch",
        "/producer/api/logs/bulk",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let ui = client
        .get(format!("{}/producer/swagger-ui/", app.base))
        .send()
        .await
        .expect("ui");
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.expect("html").contains("swagger"));
    app.stop().await;
}
