//! What each mode sends: generated ingest bodies (fresh or prebuilt), the ingest and
//! query requests, and which ingest requests an e2e run follows until stored.

use crate::cli::{Args, Endpoint, QueryKind};
use crate::measure::Stats;
use serde::Serialize;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The `source` of the events a worker generates (at most 16 a run): named after the
/// run, so its rows can be told from other runs'.
pub fn source_name(run_id: &str, worker: usize) -> String {
    format!("load-{run_id}-{}", worker % 16)
}

/// Whether request `sequence` (counted from 1) of a worker is followed until stored:
/// one event in `sample_every`, at most one per request.
pub fn is_sampled(sequence: u64, sample_every: usize, events_per_request: usize) -> bool {
    (sequence as usize).is_multiple_of((sample_every / events_per_request).max(1))
}

/// Every query kind: its name in the report and its path and query string under
/// `/gateway/api/query`. `{correlation}` and `{cursor}` stand for values of the data
/// ([`Found`]). The sources and words are those of seed-skewed's data set.
const QUERIES: [(QueryKind, &str, &str); 17] = [
    (QueryKind::Page, "logs_24h", "logs?size=50"),
    (
        QueryKind::Filtered,
        "logs_filtered",
        "logs?level=ERROR&size=50",
    ),
    (
        QueryKind::Source,
        "logs_source",
        "logs?source=service-000&size=50",
    ),
    (
        QueryKind::RareSource,
        "logs_rare_source",
        "logs?source=service-199&size=50",
    ),
    (
        QueryKind::LevelSource,
        "logs_level_source",
        "logs?level=ERROR&source=service-000&size=50",
    ),
    (
        QueryKind::Correlation,
        "logs_correlation",
        "logs?correlationId={correlation}&size=50",
    ),
    (
        QueryKind::Keyset,
        "logs_keyset",
        "logs?size=50&cursor={cursor}",
    ),
    (
        QueryKind::Deep,
        "logs_page_5",
        "logs?size=50&page=5&level=WARN,ERROR",
    ),
    (
        QueryKind::Search,
        "search",
        "search?query=database%20query&size=50",
    ),
    (
        QueryKind::SearchRare,
        "search_rare",
        "search?query=rare-7&size=50",
    ),
    (
        QueryKind::SearchCommon,
        "search_common",
        "search?query=database&size=50",
    ),
    (
        QueryKind::SearchRareFiltered,
        "search_rare_filtered",
        "search?query=rare-7&level=ERROR,FATAL&size=50",
    ),
    (
        QueryKind::SearchCommonFiltered,
        "search_common_filtered",
        "search?query=database&level=ERROR&source=service-000&size=50",
    ),
    (QueryKind::Stats, "stats", "stats?hoursBack=24"),
    (QueryKind::Stats168, "stats_168h", "stats?hoursBack=168"),
    (QueryKind::Histogram, "histogram_24h", "histogram"),
    (
        QueryKind::HistogramSource,
        "histogram_24h_source",
        "histogram?source=service-000&level=ERROR,FATAL",
    ),
];

/// The report's line for every query of a run, whatever its kind.
pub const ALL_QUERIES: &str = "queries_all_kinds";

/// Values some queries need from the stored data, looked up once before the load: a
/// correlation id and the cursor of the newest page, as a person would click them.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub correlation_id: String,
    pub cursor: String,
}

impl Found {
    pub async fn look_up(args: &Args, client: &reqwest::Client) -> anyhow::Result<Found> {
        let url = format!("{}/gateway/api/query/logs?size=1000", args.gateway_url);
        let page: serde_json::Value = client.get(url).send().await?.json().await?;
        let correlation_id = page["content"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e["correlationId"].as_str())
            .unwrap_or("none")
            .to_owned();
        let url = format!("{}/gateway/api/query/logs?size=50", args.gateway_url);
        let page: serde_json::Value = client.get(url).send().await?.json().await?;
        let cursor = page["nextCursor"].as_str().unwrap_or_default().to_owned();
        Ok(Found {
            correlation_id,
            cursor,
        })
    }
}

/// The gateway query sent as request `sequence` of a query worker: its name in the
/// report and its path and query string under `/gateway/api/query`.
pub fn query(kind: QueryKind, sequence: u64, found: &Found) -> (&'static str, String) {
    let (_, name, path) = match kind {
        QueryKind::Mix => QUERIES[sequence as usize % QUERIES.len()],
        _ => *QUERIES
            .iter()
            .find(|(k, _, _)| *k == kind)
            .unwrap_or(&QUERIES[0]),
    };
    let path = path
        .replace("{correlation}", &found.correlation_id)
        .replace("{cursor}", &found.cursor);
    (name, path)
}

/// One generated event, serialized straight from borrowed parts: building a
/// `serde_json::Value` per event cost the generator more CPU than the producer spent
/// parsing, and on a shared 2-core machine a starved generator is slow to write its
/// requests (the server then rightly answers 408 or closes the connection).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadEvent<'a> {
    id: uuid::Uuid,
    level: &'static str,
    message: std::fmt::Arguments<'a>,
    source: &'a str,
    metadata: LoadMetadata,
    correlation_id: std::fmt::Arguments<'a>,
}

#[derive(Serialize)]
struct LoadMetadata {
    duration: usize,
    endpoint: &'static str,
}

/// Writes event `i` of a request as JSON; returns its id.
fn write_event(out: &mut Vec<u8>, source: &str, i: usize) -> serde_json::Result<uuid::Uuid> {
    const LEVELS: [&str; 5] = ["INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    let id = uuid::Uuid::now_v7();
    serde_json::to_writer(
        out,
        &LoadEvent {
            id,
            level: LEVELS[i % LEVELS.len()],
            message: format_args!("request {i} handled: database query took {} ms", i % 250),
            source,
            metadata: LoadMetadata {
                duration: i % 250,
                endpoint: "/api/orders",
            },
            correlation_id: format_args!("corr-{}", i % 1000),
        },
    )?;
    Ok(id)
}

/// The body of one ingest request, as sent (one JSON object for `/ingest`, which is
/// always one event, a JSON array or NDJSON lines, or an agent protocol's body,
/// gzipped with `--gzip` where the protocol's agents gzip), and the id of its first
/// event (empty for the agent protocols, whose ids the producer derives).
pub fn ingest_body(
    args: &Args,
    source: &str,
    events: usize,
) -> anyhow::Result<(bytes::Bytes, String)> {
    let endpoint = args.endpoint;
    if endpoint.is_agent_protocol() {
        let body = agents::body(endpoint, source, events)?;
        return Ok((gzipped_if(args, body)?.into(), String::new()));
    }
    let mut body = Vec::with_capacity(events * 200);
    let mut first_id = None;
    if endpoint == Endpoint::Batch {
        body.push(b'[');
    }
    for i in 0..events {
        if i > 0 {
            body.push(if endpoint == Endpoint::Bulk {
                b'\n'
            } else {
                b','
            });
        }
        let id = write_event(&mut body, source, i)?;
        first_id.get_or_insert(id);
    }
    match endpoint {
        Endpoint::Batch => body.push(b']'),
        Endpoint::Bulk => body.push(b'\n'),
        _ => {}
    }
    let first_id = first_id.map(|id| id.to_string()).unwrap_or_default();
    Ok((gzipped_if(args, body)?.into(), first_id))
}

/// Whether `--gzip` applies to the endpoint: NDJSON bodies and OTLP (exporters gzip by
/// default); Loki's protobuf is snappy-compressed already.
fn gzips(args: &Args) -> bool {
    args.gzip
        && matches!(
            args.endpoint,
            Endpoint::Bulk | Endpoint::Otlp | Endpoint::EsBulk
        )
}

fn gzipped_if(args: &Args, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if !gzips(args) {
        return Ok(body);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body)?;
    Ok(gz.finish()?)
}

/// With `--prebuilt-bodies N`: N request bodies made before the clock starts, sent in
/// turn. The generator then spends almost no CPU of its own, so an overload run
/// measures the server rather than a starved client. Their ids repeat from the
/// N+1st request on, so the pipeline stores each event once and counts the rest as
/// duplicates: use it for ingest capacity and overload, not for persistence figures.
pub struct PrebuiltBodies(Vec<(bytes::Bytes, String)>);

impl PrebuiltBodies {
    pub fn build(args: &Args, run_id: &str) -> anyhow::Result<Option<Self>> {
        let events = args.events_per_request();
        (args.prebuilt_bodies > 0)
            .then(|| {
                (0..args.prebuilt_bodies)
                    .map(|k| ingest_body(args, &source_name(run_id, k), events))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .map(PrebuiltBodies)
            })
            .transpose()
    }

    /// The body of request `sequence` of `worker`; offset by the worker, so that the
    /// workers do not all send the same body at the same time.
    pub fn pick(&self, worker: usize, sequence: u64) -> (bytes::Bytes, String) {
        let (body, first_id) = &self.0[(worker + sequence as usize) % self.0.len()];
        (body.clone(), first_id.clone())
    }
}

/// Sends one request; returns the id of its first event if the request succeeded.
pub async fn send_ingest(
    args: &Args,
    client: &reqwest::Client,
    stats: &Stats,
    (body, first_id): (bytes::Bytes, String),
    due: Instant,
    events: usize,
) -> Option<String> {
    let (path, content_type) = match args.endpoint {
        Endpoint::Ingest => ("api/logs/ingest", "application/json"),
        Endpoint::Batch => ("api/logs/batch", "application/json"),
        Endpoint::Bulk => ("api/logs/bulk", "application/x-ndjson"),
        Endpoint::Otlp => ("v1/logs", "application/x-protobuf"),
        Endpoint::EsBulk => ("es/_bulk", "application/x-ndjson"),
        Endpoint::Loki => ("loki/api/v1/push", "application/x-protobuf"),
    };
    let mut request = client
        .post(format!("{}/producer/{path}", args.producer_url))
        .header("Content-Type", content_type);
    if gzips(args) {
        request = request.header("Content-Encoding", "gzip");
    }
    let request = request.body(body);
    let result = request.send().await;
    let latency = due.elapsed();
    match result {
        Ok(response) => {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            stats.record("ingest", latency, status.as_str());
            let accepted = if status.is_success() {
                agents::accepted(args.endpoint, &body, events)
            } else {
                0
            };
            stats.ok_units.fetch_add(accepted, Ordering::Relaxed);
            stats
                .failed_units
                .fetch_add(events as u64 - accepted, Ordering::Relaxed);
            status.is_success().then_some(first_id)
        }
        Err(e) => {
            if std::env::var_os("LOAD_TEST_DEBUG").is_some() {
                eprintln!("ingest request failed: {e:?}");
            }
            stats.record(
                "ingest",
                latency,
                if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect-error"
                } else {
                    "transport-error"
                },
            );
            stats
                .failed_units
                .fetch_add(events as u64, Ordering::Relaxed);
            None
        }
    }
}

/// Sends one query; counts it answered or failed.
pub async fn send_query(
    args: &Args,
    client: &reqwest::Client,
    stats: &Stats,
    sequence: u64,
    due: Instant,
    found: &Found,
) {
    let (what, path) = query(args.query_kind, sequence, found);
    let url = format!("{}/gateway/api/query/{path}", args.gateway_url);
    let result = client.get(url).send().await;
    let latency = due.elapsed();
    stats.record_latency(ALL_QUERIES, latency);
    match result {
        Ok(response) => {
            let status = response.status();
            let _ = response.bytes().await;
            stats.record(what, latency, status.as_str());
            if status.is_success() {
                stats.ok_queries.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.failed_units.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(_) => {
            stats.record(what, latency, "error");
            stats.failed_units.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::Value;
    use std::io::Read;

    fn args(line: &str) -> Args {
        let words = std::iter::once("load-test").chain(line.split_whitespace());
        Args::try_parse_from(words).expect("valid flags")
    }

    fn events_of_array(body: &[u8]) -> Vec<Value> {
        serde_json::from_slice::<Vec<Value>>(body).expect("a JSON array")
    }

    fn events_of_ndjson(body: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(body).expect("utf-8");
        assert!(text.ends_with('\n'), "NDJSON ends with a newline");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    }

    #[test]
    fn a_batch_body_is_a_json_array_of_batch_size_events() {
        let (body, first_id) =
            ingest_body(&args("--endpoint batch"), "load-run-3", 7).expect("body");
        let events = events_of_array(&body);
        assert_eq!(events.len(), 7);
        assert_eq!(events[0]["id"], first_id.as_str());
        let levels: Vec<&str> = events
            .iter()
            .map(|e| e["level"].as_str().expect("level"))
            .collect();
        assert_eq!(
            levels,
            ["INFO", "INFO", "DEBUG", "WARN", "ERROR", "INFO", "INFO"]
        );
        assert_eq!(events[3]["source"], "load-run-3");
        assert_eq!(
            events[3]["message"],
            "request 3 handled: database query took 3 ms"
        );
        assert_eq!(events[3]["correlationId"], "corr-3");
        assert_eq!(events[3]["metadata"]["endpoint"], "/api/orders");
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e["id"].clone()).collect();
        assert_eq!(ids.len(), 7, "fresh ids");
    }

    #[test]
    fn a_bulk_body_is_ndjson_gzipped_on_request() {
        let (plain, _) = ingest_body(&args("--endpoint bulk"), "s", 5).expect("body");
        assert_eq!(events_of_ndjson(&plain).len(), 5);
        let (gzipped, first_id) =
            ingest_body(&args("--endpoint bulk --gzip"), "s", 5).expect("body");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..])
            .read_to_end(&mut text)
            .expect("gzip");
        let events = events_of_ndjson(&text);
        assert_eq!(events.len(), 5);
        assert_eq!(events[0]["id"], first_id.as_str());
    }

    #[test]
    fn agent_bodies_decode_as_the_producer_reads_them() {
        use log_producer::routes::agents::loki_push::PushRequest;
        use prost::Message;
        let (otlp, first) = ingest_body(&args("--endpoint otlp"), "s", 5).expect("body");
        assert_eq!(first, "", "the producer derives the ids");
        let request =
            opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(otlp)
                .expect("OTLP");
        assert_eq!(request.resource_logs[0].scope_logs[0].log_records.len(), 5);
        let (es, _) = ingest_body(&args("--endpoint es-bulk"), "s", 5).expect("body");
        assert_eq!(
            es.iter().filter(|b| **b == b'\n').count(),
            10,
            "5 action+document pairs"
        );
        let (loki, _) = ingest_body(&args("--endpoint loki"), "s", 5).expect("body");
        let push = snap::raw::Decoder::new()
            .decompress_vec(&loki)
            .expect("snappy");
        let push = PushRequest::decode(push.as_slice()).expect("push");
        assert_eq!(
            push.streams.iter().map(|s| s.entries.len()).sum::<usize>(),
            5
        );
        assert_eq!(push.streams.len(), 4, "one stream per level");
    }

    #[test]
    fn gzip_never_applies_to_a_json_array() {
        let (body, _) = ingest_body(&args("--endpoint batch --gzip"), "s", 2).expect("body");
        assert_eq!(events_of_array(&body).len(), 2);
    }

    #[test]
    fn a_single_event_body_is_one_json_object() {
        let (body, first_id) = ingest_body(&args("--endpoint ingest"), "s", 1).expect("body");
        let event: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(event["id"], first_id.as_str());
    }

    #[test]
    fn prebuilt_bodies_are_sent_in_turn() {
        let a = args("--endpoint batch --batch-size 3 --prebuilt-bodies 3");
        let bodies = PrebuiltBodies::build(&a, "run")
            .expect("built")
            .expect("asked for");
        let first_ids: Vec<String> = (0..3).map(|k| bodies.pick(0, k).1).collect();
        let distinct: std::collections::HashSet<_> = first_ids.iter().collect();
        assert_eq!(distinct.len(), 3);
        // Worker 1's request k is worker 0's request k + 1, modulo the count.
        assert_eq!(bodies.pick(1, 0).1, first_ids[1]);
        assert_eq!(bodies.pick(1, 2).1, first_ids[0]);
        assert_eq!(events_of_array(&bodies.pick(0, 0).0).len(), 3);
        assert!(PrebuiltBodies::build(&args(""), "run")
            .expect("ok")
            .is_none());
    }

    #[test]
    fn one_event_in_sample_every_is_followed() {
        let followed = |every, events| -> Vec<u64> {
            (1..=20).filter(|&n| is_sampled(n, every, events)).collect()
        };
        // One in 500 events with requests of 100: every fifth request.
        assert_eq!(followed(500, 100), [5, 10, 15, 20]);
        // Requests larger than the interval: every request (at most one a request).
        assert_eq!(followed(500, 1000), (1..=20).collect::<Vec<_>>());
        // Single events, one in 10.
        assert_eq!(followed(10, 1), [10, 20]);
    }

    #[test]
    fn the_mix_cycles_through_every_query() {
        let found = Found::default();
        let names: Vec<&str> = (0..34)
            .map(|n| query(QueryKind::Mix, n, &found).0)
            .collect();
        assert_eq!(names[..3], ["logs_24h", "logs_filtered", "logs_source"]);
        assert_eq!(names[..17], names[17..]);
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), QUERIES.len());
    }

    #[test]
    fn each_query_kind_sends_its_query() {
        let found = Found {
            correlation_id: "corr-1".to_owned(),
            cursor: "123_abc".to_owned(),
        };
        for (kind, expected) in [
            (QueryKind::Page, ("logs_24h", "logs?size=50")),
            (
                QueryKind::Filtered,
                ("logs_filtered", "logs?level=ERROR&size=50"),
            ),
            (
                QueryKind::Correlation,
                ("logs_correlation", "logs?correlationId=corr-1&size=50"),
            ),
            (
                QueryKind::Keyset,
                ("logs_keyset", "logs?size=50&cursor=123_abc"),
            ),
            (
                QueryKind::SearchRare,
                ("search_rare", "search?query=rare-7&size=50"),
            ),
            (QueryKind::Stats, ("stats", "stats?hoursBack=24")),
        ] {
            for sequence in [1, 2, 3] {
                let (name, path) = query(kind, sequence, &found);
                assert_eq!((name, path.as_str()), expected, "{kind:?}");
            }
        }
        // Every kind but the mix has exactly one entry.
        for (kind, _, _) in QUERIES {
            assert_eq!(QUERIES.iter().filter(|(k, _, _)| *k == kind).count(), 1);
        }
    }

    #[test]
    fn workers_share_sixteen_sources_a_run() {
        assert_eq!(source_name("ab12", 3), "load-ab12-3");
        assert_eq!(source_name("ab12", 19), "load-ab12-3");
    }
}

/// Bodies and answers of the agent protocols, made with the same wire types the
/// producer reads (the OpenTelemetry protobuf crate, Loki's push messages).
mod agents {
    use super::Endpoint;
    use log_producer::routes::agents::loki_push::{
        EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp,
    };
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;
    use serde_json::Value;

    /// The levels of the other endpoints' events, with OTLP's severity numbers.
    const LEVELS: [(&str, i32); 5] = [
        ("INFO", 9),
        ("INFO", 9),
        ("DEBUG", 5),
        ("WARN", 13),
        ("ERROR", 17),
    ];

    fn now_nanos() -> i64 {
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    }

    fn text(value: String) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        })
    }

    fn attribute(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value,
            ..KeyValue::default()
        }
    }

    /// Event `i`'s line, as the other endpoints write it.
    fn line(i: usize) -> String {
        format!("request {i} handled: database query took {} ms", i % 250)
    }

    pub fn body(endpoint: Endpoint, source: &str, events: usize) -> anyhow::Result<Vec<u8>> {
        // Every event a nanosecond apart from now on: distinct content, distinct ids.
        let start = now_nanos();
        Ok(match endpoint {
            Endpoint::Otlp => otlp(source, events, start),
            Endpoint::EsBulk => es_bulk(source, events, start)?,
            Endpoint::Loki => loki(source, events, start)?,
            other => anyhow::bail!("{other:?} is not an agent protocol"),
        })
    }

    fn otlp(source: &str, events: usize, start: i64) -> Vec<u8> {
        let records = (0..events)
            .map(|i| LogRecord {
                time_unix_nano: (start + i as i64) as u64,
                severity_number: LEVELS[i % LEVELS.len()].1,
                severity_text: LEVELS[i % LEVELS.len()].0.to_owned(),
                body: text(line(i)),
                attributes: vec![
                    attribute(
                        "duration",
                        Some(AnyValue {
                            value: Some(any_value::Value::IntValue((i % 250) as i64)),
                        }),
                    ),
                    attribute("endpoint", text("/api/orders".to_owned())),
                ],
                ..LogRecord::default()
            })
            .collect();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![attribute("service.name", text(source.to_owned()))],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
        .encode_to_vec()
    }

    fn es_bulk(source: &str, events: usize, start: i64) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::with_capacity(events * 260);
        for i in 0..events {
            let nanos = start + i as i64;
            body.extend_from_slice(b"{\"create\":{\"_index\":\"load-test\"}}\n");
            serde_json::to_writer(
                &mut body,
                &serde_json::json!({
                    "@timestamp": chrono::DateTime::from_timestamp_nanos(nanos)
                        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    "message": line(i),
                    "log.level": LEVELS[i % LEVELS.len()].0,
                    "service.name": source,
                    "duration": i % 250,
                    "endpoint": "/api/orders",
                }),
            )?;
            body.push(b'\n');
        }
        Ok(body)
    }

    /// One stream per level, as Promtail groups a batch by label set.
    fn loki(source: &str, events: usize, start: i64) -> anyhow::Result<Vec<u8>> {
        let mut streams: Vec<StreamAdapter> = Vec::new();
        for i in 0..events {
            let level = LEVELS[i % LEVELS.len()].0;
            let labels = format!("{{job=\"{source}\", level=\"{}\"}}", level.to_lowercase());
            let position = match streams.iter().position(|s| s.labels == labels) {
                Some(position) => position,
                None => {
                    streams.push(StreamAdapter {
                        labels,
                        entries: Vec::new(),
                    });
                    streams.len() - 1
                }
            };
            let nanos = start + i as i64;
            streams[position].entries.push(EntryAdapter {
                timestamp: Some(Timestamp {
                    seconds: nanos.div_euclid(1_000_000_000),
                    nanos: nanos.rem_euclid(1_000_000_000) as i32,
                }),
                line: line(i),
                structured_metadata: vec![LabelPairAdapter {
                    name: "endpoint".to_owned(),
                    value: "/api/orders".to_owned(),
                }],
            });
        }
        let push = PushRequest { streams }.encode_to_vec();
        Ok(snap::raw::Encoder::new().compress_vec(&push)?)
    }

    /// Items an Elasticsearch bulk answer says failed. Most answers say `"errors":
    /// false`, which is read without building the items (the generator must stay
    /// cheap beside the producer it measures).
    fn es_refused(body: &[u8]) -> Option<usize> {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: bool,
        }
        if !serde_json::from_slice::<Errors>(body).ok()?.errors {
            return Some(0);
        }
        let answer: Value = serde_json::from_slice(body).ok()?;
        let items = answer["items"].as_array()?;
        Some(
            items
                .iter()
                .filter(|item| item["create"].get("error").is_some())
                .count(),
        )
    }

    /// Events of a successful answer that were stored: all of them but those an OTLP
    /// partial success or an Elasticsearch item error names; Loki answers 204 only when
    /// every entry was taken.
    pub fn accepted(endpoint: Endpoint, body: &[u8], events: usize) -> u64 {
        let refused = match endpoint {
            Endpoint::Otlp => ExportLogsServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_log_records.max(0) as usize),
            Endpoint::EsBulk => es_refused(body).unwrap_or(events),
            Endpoint::Loki => 0,
            _ => {
                let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                return match endpoint {
                    Endpoint::Ingest => 1,
                    _ => answer["successCount"].as_u64().unwrap_or(0),
                };
            }
        };
        events.saturating_sub(refused) as u64
    }
}
