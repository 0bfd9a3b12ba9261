//! What each mode sends: generated ingest bodies (fresh or prebuilt), the ingest and
//! query requests, and which ingest requests an e2e run follows until stored.

use crate::cli::{Args, Endpoint, QueryKind};
use crate::measure::Stats;
use serde::Serialize;
use serde_json::Value;
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
/// always one event, a JSON array or NDJSON lines, gzipped with `--gzip`), and the id of
/// its first event.
pub fn ingest_body(
    args: &Args,
    source: &str,
    events: usize,
) -> anyhow::Result<(bytes::Bytes, String)> {
    let endpoint = args.endpoint;
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
        Endpoint::Ingest => {}
    }
    if endpoint == Endpoint::Bulk && args.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body)?;
        body = gz.finish()?;
    }
    let first_id = first_id.map(|id| id.to_string()).unwrap_or_default();
    Ok((body.into(), first_id))
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
    let base = format!("{}/producer/api/logs", args.producer_url);
    let (path, content_type) = match args.endpoint {
        Endpoint::Ingest => ("ingest", "application/json"),
        Endpoint::Batch => ("batch", "application/json"),
        Endpoint::Bulk => ("bulk", "application/x-ndjson"),
    };
    let mut request = client
        .post(format!("{base}/{path}"))
        .header("Content-Type", content_type);
    if args.gzip && args.endpoint == Endpoint::Bulk {
        request = request.header("Content-Encoding", "gzip");
    }
    let request = request.body(body);
    let result = request.send().await;
    let latency = due.elapsed();
    match result {
        Ok(response) => {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            stats.record("ingest", latency, status.as_str());
            let accepted = match args.endpoint {
                Endpoint::Ingest => u64::from(status.is_success()),
                _ => body["successCount"].as_u64().unwrap_or(0),
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
    fn gzip_only_applies_to_bulk() {
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
