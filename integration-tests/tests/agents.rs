//! The protocols of the agents people already run (#19): OTLP/HTTP logs, the
//! Elasticsearch bulk API and Loki's push API, each driven by its real client library
//! from PyPI (pinned in `integration-tests/agents/requirements.txt`, installed by
//! `./setup.sh test`), against an in-process producer, consumer and gateway on a topic
//! of each test's own, with rows in this binary's test database.
//!
//! The drivers (`integration-tests/agents/*.py`) print what they sent as JSON; the tests
//! hold the database, the consumer's counters and the gateway to it. The bad-input and
//! refusal paths use hand-made bodies, since no client sends those.

#[path = "api/helpers.rs"]
mod helpers;

use diesel::prelude::*;
use helpers::{
    create_topic, db, eventually, http, metrics_text, spawn_consumer, spawn_gateway,
    spawn_producer, unique, Running,
};
use log_producer::routes::agents::elasticsearch::id_of;
use log_producer::routes::agents::loki_push::{
    EntryAdapter, PushRequest, StreamAdapter, Timestamp,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The API key the tests' producers require.
const KEY: &str = "agent-test-key";

/// A producer (keys on), a consumer and a gateway on a topic of the test's own.
struct Pipeline {
    producer: Running,
    consumer: Running,
    gateway: Running,
}

async fn pipeline_with(configure: impl FnOnce(&mut log_producer::settings::Settings)) -> Pipeline {
    let topic = unique("agents");
    let dlq = unique("agents-dlq");
    create_topic(&topic, 3).await;
    create_topic(&dlq, 1).await;
    let producer_topic = topic.clone();
    let producer = spawn_producer(move |s| {
        s.kafka.topic = producer_topic;
        s.auth.api_keys = Some(KEY.parse().expect("infallible"));
        configure(s);
    })
    .await;
    let consumer = spawn_consumer(&topic, &dlq, &unique("agents-group")).await;
    let gateway = spawn_gateway(|_| {}).await;
    Pipeline {
        producer,
        consumer,
        gateway,
    }
}

async fn pipeline() -> Pipeline {
    pipeline_with(|_| {}).await
}

/// The virtualenv holding the pinned clients: `AGENTS_VENV`, else the one
/// `./setup.sh test` installs.
fn python() -> PathBuf {
    let venv = std::env::var_os("AGENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/logpipeline/agents-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: `./setup.sh test` installs integration-tests/agents/requirements.txt \
         into {} (or set AGENTS_VENV)",
        python.display(),
        venv.display()
    );
    python
}

/// Runs a driver script to completion (3 minutes at most) and returns what it printed.
async fn driver(script: &str, args: &[&str]) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/agents/").to_owned() + script;
    let run = tokio::process::Command::new(python())
        .arg(&path)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .unwrap_or_else(|_| panic!("{script} ran past 3 minutes"))
        .expect("run the driver");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} {args:?} failed: {stderr}"
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct LevelCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    level: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `SELECT count(*) … WHERE <condition>`, `$1` bound to `value`.
async fn count_where(condition: &'static str, value: String) -> i64 {
    tokio::task::spawn_blocking(move || {
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM log_events WHERE {condition}"
        ))
        .bind::<diesel::sql_types::Text, _>(value)
        .get_result::<Count>(&mut db())
        .expect("count")
        .n
    })
    .await
    .expect("count task")
}

async fn levels_of(source: String) -> BTreeMap<String, i64> {
    tokio::task::spawn_blocking(move || {
        diesel::sql_query(
            "SELECT level::text AS level, count(*) AS n FROM log_events WHERE source = $1 GROUP BY 1",
        )
        .bind::<diesel::sql_types::Text, _>(source)
        .load::<LevelCount>(&mut db())
        .expect("levels")
        .into_iter()
        .map(|row| (row.level, row.n))
        .collect()
    })
    .await
    .expect("levels task")
}

/// The sum of every series of `name` in a Prometheus text page.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Pipeline {
    /// Waits until the consumer has read `messages` records and `source` has `rows`
    /// rows, never more: then every copy a retry sent has been through the consumer.
    async fn settled(&self, source: &str, messages: usize, rows: i64) {
        let metrics_url = format!("{}/actuator/prometheus", self.consumer.base);
        eventually(
            &format!("{messages} records consumed and {rows} rows of {source}"),
            Duration::from_secs(120),
            || {
                let metrics_url = metrics_url.clone();
                let source = source.to_owned();
                async move {
                    let consumed = metric_sum(
                        &metrics_text(&metrics_url).await,
                        "kafka_messages_consumed_total",
                    );
                    let stored = count_where("source = $1", source.clone()).await;
                    assert!(
                        stored <= rows,
                        "{stored} rows of {source}, more than {rows}"
                    );
                    (consumed as usize >= messages && stored == rows).then_some(())
                }
            },
        )
        .await;
    }

    fn producer_url(&self, path: &str) -> String {
        format!("{}/producer{path}", self.producer.base)
    }
}

fn as_i64(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_opentelemetry_sdk_stores_every_record_mapped_and_findable_by_trace_id() {
    let pipeline = pipeline().await;
    let service = unique("otel-svc");
    let sent = driver(
        "otel_logs.py",
        &[
            "--endpoint",
            &pipeline.producer_url(""),
            "--api-key",
            KEY,
            "--service",
            &service,
            "--count",
            "5000",
        ],
    )
    .await;
    assert_eq!(sent["sent"], 5000, "{sent}");
    assert_eq!(sent["export_failed_records"], 0, "{sent}");
    pipeline.settled(&service, 5000, 5000).await;

    let levels: BTreeMap<String, i64> = sent["levels"]
        .as_object()
        .expect("levels")
        .iter()
        .map(|(level, n)| (level.clone(), as_i64(n)))
        .collect();
    assert_eq!(
        levels_of(service.clone()).await,
        levels,
        "severity mapped to levels"
    );
    assert_eq!(
        count_where(
            "source = $1 AND metadata->'attributes' ? 'exception.stacktrace'",
            service.clone()
        )
        .await,
        as_i64(&sent["exceptions"]),
        "every logged exception keeps its attributes"
    );
    // The documented metadata layout, on every row.
    assert_eq!(
        count_where(
            "source = $1 AND metadata->'resource'->>'telemetry.sdk.language' = 'python' \
             AND NOT metadata->'resource' ? 'service.name' \
             AND metadata->'attributes'->>'run' IS NOT NULL AND metadata->>'spanId' ~ '^[0-9a-f]{16}$' \
             AND (metadata->>'severityNumber')::int > 0 AND metadata->'scope'->>'name' IS NOT NULL \
             AND trace_id ~ '^[0-9a-f]{32}$'",
            service.clone()
        )
        .await,
        5000
    );

    // Each record can be found through the gateway by its trace id.
    let trace_ids = sent["trace_ids"].as_object().expect("trace ids");
    assert!(trace_ids.len() >= 2, "{sent}");
    for (trace_id, n) in trace_ids {
        let url = format!(
            "{}/gateway/api/query/logs?traceId={trace_id}&size=5",
            pipeline.gateway.base
        );
        let (status, page) = helpers::get_json(&url).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["totalElements"], *n, "{trace_id}: {page}");
        for event in page["content"].as_array().expect("content") {
            assert_eq!(event["traceId"], trace_id.as_str());
            assert_eq!(event["source"], service);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_otlp_request_sent_twice_stores_each_record_once() {
    let pipeline = pipeline().await;
    let service = unique("otel-retry");
    let sent = driver(
        "otel_logs.py",
        &[
            "--endpoint",
            &pipeline.producer_url(""),
            "--api-key",
            KEY,
            "--service",
            &service,
            "--export-twice",
            "40",
        ],
    )
    .await;
    assert_eq!(
        sent["export_results"],
        json!(["SUCCESS", "SUCCESS"]),
        "{sent}"
    );
    pipeline.settled(&service, 80, 40).await;

    // The same body once more, in OTLP's JSON encoding, by hand (the Python exporter
    // has no JSON mode): one record, then the same again.
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"scope": {"name": "json"}, "logRecords": [{
            "timeUnixNano": now_nanos().to_string(), "severityNumber": 13,
            "body": {"stringValue": "from OTLP/JSON"},
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "attributes": [{"key": "n", "value": {"intValue": "7"}}]}]}]}]});
    for _ in 0..2 {
        let response = http()
            .post(pipeline.producer_url("/v1/logs"))
            .header("X-API-Key", KEY)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(answer, json!({}), "a full success has no partial_success");
    }
    pipeline.settled(&service, 82, 41).await;
    assert_eq!(
        count_where(
            "source = $1 AND trace_id = '5b8efff798038103d269b633813fc60c' AND level = 'WARN' \
             AND (metadata->'attributes'->>'n')::int = 7",
            service
        )
        .await,
        1
    );
}

/// An agent that reads its file again (a Collector restarted without a storage
/// extension) sends each record again with a new observed time: a record with a time
/// of its own is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_otlp_record_read_again_with_a_new_observed_time_is_stored_once() {
    let pipeline = pipeline().await;
    let service = unique("otel-reread");
    let sent = driver(
        "otel_logs.py",
        &[
            "--endpoint",
            &pipeline.producer_url(""),
            "--api-key",
            KEY,
            "--service",
            &service,
            "--read-again",
            "40",
        ],
    )
    .await;
    assert_eq!(sent["mode"], "read_again", "{sent}");
    assert_eq!(
        sent["export_results"],
        json!(["SUCCESS", "SUCCESS"]),
        "{sent}"
    );
    pipeline.settled(&service, 80, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_elasticsearch_client_bulk_stores_each_document_once_and_refuses_one_by_item() {
    let pipeline = pipeline().await;
    let index = unique("es-logs");
    let service = unique("es-svc");
    let sent = driver(
        "es_bulk.py",
        &[
            "--url",
            &pipeline.producer_url("/es"),
            "--api-key",
            KEY,
            "--index",
            &index,
            "--service",
            &service,
            "--count",
            "10000",
        ],
    )
    .await;
    // The client's product check passed, and only the malformed document failed.
    assert_eq!(sent["server_version"], "8.17.0", "{sent}");
    assert_eq!(sent["unexpected_error_count"], 0, "{sent}");
    assert_eq!(sent["malformed_refused"], true, "{sent}");
    let errors = sent["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{sent}");
    assert_eq!(errors[0]["status"], 400);
    assert!(
        errors[0]["error"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("@timestamp")),
        "{sent}"
    );
    let actions = as_i64(&sent["sent_actions"]) as usize;
    let stored = as_i64(&sent["expected_stored_if_ids_dedup"]);
    assert!(
        stored < actions as i64 - 1,
        "some _ids were sent twice: {sent}"
    );
    pipeline.settled(&service, actions - 1, stored).await;

    // A document sent twice under one `_id` is one row, under the documented id.
    for id in sent["duplicated_ids"].as_array().expect("duplicated ids") {
        let id = id.as_str().expect("id");
        assert_eq!(
            count_where("id = $1::uuid", id_of(&index, id).to_string()).await,
            1,
            "{id}"
        );
    }
    let malformed_seq = sent["malformed"]["seq"].to_string();
    assert_eq!(
        count_where("metadata->>'seq' = $1", malformed_seq).await,
        0,
        "the refused document is not stored"
    );
    // Dotted and nested fields mapped alike; the index is kept.
    assert_eq!(
        count_where(
            "source = $1 AND metadata->>'_index' IS NOT NULL AND NOT metadata ? 'log.level' \
             AND NOT coalesce((metadata->'log') ? 'level', false) \
             AND NOT metadata ? 'service' AND NOT metadata ? 'service.name'",
            service.clone()
        )
        .await,
        stored
    );

    // Basic auth (the key as password) and the index in the path.
    let basic_index = unique("es-basic");
    let basic_service = unique("es-basic-svc");
    let sent = driver(
        "es_bulk.py",
        &[
            "--url",
            &pipeline.producer_url("/es"),
            "--api-key",
            KEY,
            "--basic-password",
            "--index-in-path",
            "--index",
            &basic_index,
            "--service",
            &basic_service,
            "--count",
            "200",
        ],
    )
    .await;
    assert_eq!(sent["unexpected_error_count"], 0, "{sent}");
    let more = as_i64(&sent["sent_actions"]) as usize - 1;
    pipeline
        .settled(
            &basic_service,
            actions - 1 + more,
            as_i64(&sent["expected_stored_if_ids_dedup"]),
        )
        .await;
}

/// The Loki label values the drivers send, as our levels.
fn level_of_label(label: &str) -> &'static str {
    match label {
        "warning" | "warn" => "WARN",
        "error" => "ERROR",
        "info" => "INFO",
        other => panic!("unexpected level label {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loki_json_client_and_snappy_protobuf_pushes_twice_store_each_line_once() {
    let pipeline = pipeline().await;
    let push = pipeline.producer_url("/loki/api/v1/push");

    let json_job = unique("loki-json");
    let sent = driver(
        "loki_json.py",
        &[
            "--url",
            &push,
            "--api-key",
            KEY,
            "--count",
            "200",
            "--job",
            &json_job,
        ],
    )
    .await;
    assert_eq!(sent["failed"], 0, "{sent}");
    pipeline.settled(&json_job, 200, 200).await;
    let mut expected = BTreeMap::new();
    for (label, n) in sent["severity"].as_object().expect("severity") {
        *expected
            .entry(level_of_label(label).to_owned())
            .or_insert(0) += as_i64(n);
    }
    assert_eq!(levels_of(json_job.clone()).await, expected);
    assert_eq!(
        count_where(
            "source = $1 AND metadata->'labels'->>'run' IS NOT NULL AND NOT metadata->'labels' ? 'job'",
            json_job
        )
        .await,
        200,
        "the other labels are metadata, the source label is not"
    );

    let proto_job = unique("loki-proto");
    let sent = driver(
        "loki_proto.py",
        &[
            "--url",
            &push,
            "--api-key",
            KEY,
            "--count",
            "5000",
            "--job",
            &proto_job,
            "--post-twice",
        ],
    )
    .await;
    assert_eq!(sent["failures"], json!([]), "{sent}");
    assert_eq!(
        sent["statuses"],
        json!({"204": as_i64(&sent["posts"])}),
        "{sent}"
    );
    pipeline.settled(&proto_job, 200 + 10_000, 5000).await;
    let mut expected = BTreeMap::new();
    for (labels, n) in sent["streams"].as_object().expect("streams") {
        let level = labels
            .split("level=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a level label");
        *expected
            .entry(level_of_label(level).to_owned())
            .or_insert(0) += as_i64(n);
    }
    assert_eq!(levels_of(proto_job.clone()).await, expected);
    assert_eq!(
        count_where(
            "source = $1 AND metadata ? 'structuredMetadata'",
            proto_job.clone()
        )
        .await,
        as_i64(&sent["structured_metadata_entries"])
    );
    let metrics = metrics_text(&format!("{}/actuator/prometheus", pipeline.consumer.base)).await;
    assert!(
        metric_sum(&metrics, "log_events_duplicates_total") >= 5000.0,
        "the second copy of each push was skipped as duplicates"
    );
}

// ---- Bad input and refusals: hand-made bodies, since no client sends them. ----

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn otlp_request(service: &str, times: &[u64]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: times
                    .iter()
                    .enumerate()
                    .map(|(i, t)| LogRecord {
                        time_unix_nano: *t,
                        severity_number: 9,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("record {i}"))),
                        }),
                        ..LogRecord::default()
                    })
                    .collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// `google.rpc.Status`, as an OTLP error body decodes.
#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn now_nanos() -> u64 {
    chrono::Utc::now().timestamp_nanos_opt().expect("in range") as u64
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("compresses")
}

fn loki_push(job: &str, entries: &[(i64, &str)]) -> Vec<u8> {
    PushRequest {
        streams: vec![StreamAdapter {
            labels: format!("{{job=\"{job}\"}}"),
            entries: entries
                .iter()
                .map(|(seconds, line)| EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: *seconds,
                        nanos: 0,
                    }),
                    line: (*line).to_owned(),
                    structured_metadata: vec![],
                })
                .collect(),
        }],
    }
    .encode_to_vec()
}

async fn post(
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    auth: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = http()
        .post(url)
        .header("Content-Type", content_type)
        .body(body);
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    request.send().await.expect("POST")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing_twice_or_half() {
    let pipeline = pipeline().await;
    let otlp = pipeline.producer_url("/v1/logs");
    let loki = pipeline.producer_url("/loki/api/v1/push");
    let bulk = pipeline.producer_url("/es/_bulk");
    let key = Some(("X-API-Key", KEY));
    let protobuf = "application/x-protobuf";

    // Malformed protobuf: 400 with a google.rpc.Status body saying why.
    let response = post(&otlp, protobuf, vec![0xff, 0xff, 0xff, 0x0f], key).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], protobuf);
    let status = Status::decode(response.bytes().await.expect("body")).expect("a Status");
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status.message.contains("ExportLogsServiceRequest"),
        "{}",
        status.message
    );
    // The JSON encoding answers its errors in JSON.
    let response = post(
        &otlp,
        "application/json",
        b"{\"resourceLogs\": 7}".to_vec(),
        key,
    )
    .await;
    assert_eq!(response.status(), 400);
    let status: Value = response.json().await.expect("JSON");
    assert_eq!(status["code"], 3, "{status}");
    // Invalid UTF-8 in a protobuf string field.
    let mut bad_utf8 = otlp_request("svc", &[now_nanos()]).encode_to_vec();
    let at = bad_utf8
        .windows(3)
        .position(|w| w == b"svc")
        .expect("the service name is in the body");
    bad_utf8[at] = 0xff;
    assert_eq!(post(&otlp, protobuf, bad_utf8, key).await.status(), 400);
    // Not a type OTLP has.
    assert_eq!(
        post(&otlp, "text/plain", b"x".to_vec(), key).await.status(),
        415
    );

    // A time out of range is refused on its own, in partial_success; the rest is stored.
    let service = unique("otlp-range");
    let request = otlp_request(&service, &[now_nanos(), u64::MAX, now_nanos() + 1]);
    let response = post(&otlp, protobuf, request.encode_to_vec(), key).await;
    assert_eq!(response.status(), 200);
    let answer = ExportLogsServiceResponse::decode(response.bytes().await.expect("body"))
        .expect("a response");
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("log record 1"),
        "{}",
        partial.error_message
    );
    // A day and more ahead is refused like on every route.
    let ahead = now_nanos() + 2 * 86_400 * 1_000_000_000;
    let response = post(
        &otlp,
        protobuf,
        otlp_request(&service, &[ahead]).encode_to_vec(),
        key,
    )
    .await;
    let answer = ExportLogsServiceResponse::decode(response.bytes().await.expect("body"))
        .expect("a response");
    assert_eq!(
        answer
            .partial_success
            .expect("refused")
            .rejected_log_records,
        1
    );

    // A snappy frame that does not decode, and protobuf sent without snappy.
    let job = unique("loki-bad");
    let now = chrono::Utc::now().timestamp();
    let framed = snappy(&loki_push(&job, &[(now, "cut short")]));
    for body in [
        framed[..framed.len() - 4].to_vec(),
        loki_push(&job, &[(now, "raw protobuf")]),
    ] {
        let response = post(&loki, protobuf, body, key).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.expect("JSON");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("snappy")),
            "{error}"
        );
    }
    // Invalid UTF-8 in a JSON push.
    let response = post(
        &loki,
        "application/json",
        b"{\"streams\":[{\"stream\":{\"job\":\"a\"},\"values\":[[\"1\",\"\xff\"]]}]}".to_vec(),
        key,
    )
    .await;
    assert_eq!(response.status(), 400);
    // A label set over Loki's limits refuses the whole push.
    let labels: Vec<String> = (0..16).map(|i| format!("l{i}=\"v\"")).collect();
    let too_many = PushRequest {
        streams: vec![StreamAdapter {
            labels: format!("{{job=\"{job}\", {}}}", labels.join(", ")),
            entries: vec![EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: now,
                    nanos: 0,
                }),
                line: "never stored".into(),
                structured_metadata: vec![],
            }],
        }],
    };
    let response = post(&loki, protobuf, snappy(&too_many.encode_to_vec()), key).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.expect("JSON");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("limit is 15")),
        "{error}"
    );
    // An entry dated out of range: 400 naming it, the other entries stored once even
    // when the agent sends the push again.
    let mixed = snappy(&loki_push(
        &job,
        &[
            (now, "kept 1"),
            (now + 3 * 86_400, "too far"),
            (now + 1, "kept 2"),
        ],
    ));
    for _ in 0..2 {
        let response = post(&loki, protobuf, mixed.clone(), key).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.expect("JSON");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("1 of 3 entries refused") && m.contains("entry 1")),
            "{error}"
        );
    }
    // A push that inflates past the body limit is refused before it is inflated.
    let huge = snappy(&vec![b'a'; 17 * 1024 * 1024]);
    assert_eq!(post(&loki, protobuf, huge, key).await.status(), 413);

    // Elasticsearch: an action without its document is a 400 in Elasticsearch's shape.
    let response = post(
        &bulk,
        "application/x-ndjson",
        b"{\"index\":{\"_index\":\"x\"}}\n{\"message\":\"m\"}\n{\"create\":{\"_index\":\"x\"}}\n"
            .to_vec(),
        key,
    )
    .await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["status"], 400, "{error}");
    assert_eq!(
        error["error"]["type"], "illegal_argument_exception",
        "{error}"
    );
    assert!(
        error["error"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no document")),
        "{error}"
    );
    // update and delete, and a document that is not JSON: per-item 400s beside a stored one.
    let es_source = unique("es-bad");
    let mut body = b"{\"update\":{\"_index\":\"x\",\"_id\":\"1\"}}\n{\"doc\":{}}\n\
        {\"delete\":{\"_index\":\"x\",\"_id\":\"1\"}}\n\
        {\"create\":{\"_index\":\"x\"}}\n{\"message\": \"\xff\"}\n"
        .to_vec();
    body.extend(
        format!("{{\"create\":{{\"_index\":\"x\"}}}}\n{{\"message\":\"kept\",\"service.name\":\"{es_source}\"}}\n")
            .into_bytes(),
    );
    let response = post(&bulk, "application/x-ndjson", body, key).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["errors"], true);
    let statuses: Vec<i64> = answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            as_i64(
                &item
                    .as_object()
                    .expect("item")
                    .values()
                    .next()
                    .expect("action")["status"],
            )
        })
        .collect();
    assert_eq!(statuses, [400, 400, 400, 201], "{answer}");
    // Filebeat's and Logstash's filter_path: only what they read of each item.
    let filtered = pipeline.producer_url("/es/_bulk?filter_path=errors,items.*.status");
    let body = format!(
        "{{\"delete\":{{\"_index\":\"x\",\"_id\":\"1\"}}}}\n\
         {{\"create\":{{\"_index\":\"x\"}}}}\n{{\"message\":\"kept\",\"service.name\":\"{es_source}\"}}\n"
    );
    let response = post(&filtered, "application/x-ndjson", body.into_bytes(), key).await;
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(
        answer,
        json!({"errors": true, "items": [{"delete": {"status": 400}}, {"create": {"status": 201}}]})
    );
    // A body over the limit.
    let big = vec![b' '; 17 * 1024 * 1024];
    assert_eq!(
        post(&bulk, "application/x-ndjson", big, key).await.status(),
        413
    );

    // Keys: every protocol refuses a wrong one, in its own shape.
    let wrong = Some(("Authorization", "Bearer wrong"));
    let response = post(
        &otlp,
        protobuf,
        otlp_request("x", &[now_nanos()]).encode_to_vec(),
        wrong,
    )
    .await;
    assert_eq!(response.status(), 401);
    let status = Status::decode(response.bytes().await.expect("body")).expect("a Status");
    assert_eq!(status.code, 16, "UNAUTHENTICATED");
    let response = post(
        &bulk,
        "application/x-ndjson",
        b"{}\n".to_vec(),
        Some(("Authorization", "ApiKey wrong")),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    assert_eq!(post(&loki, protobuf, vec![], None).await.status(), 401);

    // What was stored: the valid records, once each.
    pipeline.settled(&service, 0, 2).await;
    pipeline.settled(&job, 0, 2).await;
    pipeline.settled(&es_source, 0, 1).await;
    assert_eq!(count_where("message = $1", "never stored".into()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_rate_limit_each_protocol_answers_429_with_retry_after_in_its_shape() {
    let pipeline = pipeline_with(|s| {
        s.rate_limit.events_per_second = 1;
        s.rate_limit.burst = 5;
    })
    .await;
    let key = Some(("X-API-Key", KEY));
    let service = unique("otlp-limited");
    // Ten records cost ten tokens of a bucket of five: refused whole, nothing stored.
    let request = otlp_request(
        &service,
        &(0..10).map(|i| now_nanos() + i).collect::<Vec<_>>(),
    );
    let response = post(
        &pipeline.producer_url("/v1/logs"),
        "application/x-protobuf",
        request.encode_to_vec(),
        key,
    )
    .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let status = Status::decode(response.bytes().await.expect("body")).expect("a Status");
    assert_eq!(status.code, 8, "RESOURCE_EXHAUSTED");

    let documents: String = (0..10)
        .map(|i| format!("{{\"create\":{{\"_index\":\"x\"}}}}\n{{\"message\":\"m{i}\"}}\n"))
        .collect();
    let response = post(
        &pipeline.producer_url("/es/_bulk"),
        "application/x-ndjson",
        documents.into_bytes(),
        key,
    )
    .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(
        error["error"]["type"], "es_rejected_execution_exception",
        "{error}"
    );

    let job = unique("loki-limited");
    let entries: Vec<(i64, &str)> = (0..10)
        .map(|i| (chrono::Utc::now().timestamp() + i, "line"))
        .collect();
    let response = post(
        &pipeline.producer_url("/loki/api/v1/push"),
        "application/x-protobuf",
        snappy(&loki_push(&job, &entries)),
        key,
    )
    .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(count_where("source = $1", service).await, 0);
    assert_eq!(count_where("source = $1", job).await, 0);
}
