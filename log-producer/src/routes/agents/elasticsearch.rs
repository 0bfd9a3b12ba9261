//! The Elasticsearch API, as much as log shippers use: rooted at `/producer/es`.
//!
//! - `GET|HEAD /`: the info document, with an 8.x `version.number`.
//! - `POST|PUT /_bulk` and `/{index}/_bulk`: NDJSON action and document pairs. `index`
//!   and `create` store the document; `update` and `delete` get a per-item 400 (stored
//!   events never change). The answer has Elasticsearch's shape: `took`, `errors`,
//!   `items[]`.
//! - The calls shippers make before their first bulk, answered so they proceed (see
//!   [`startup_routes`]).
//!
//! Every answer carries `X-Elastic-Product: Elasticsearch`: the official clients refuse
//! a server without it.
//!
//! Mapping of a document: `@timestamp` or `timestamp` (RFC 3339, a date, or epoch
//! milliseconds); `message`; `log.level` or `level`; `service.name`, else `source`,
//! else the index, for the source; `trace.id`; each in its dotted or nested form. The
//! rest of the document, with `_index`, goes into `metadata`. A level we do not know
//! (syslog's `notice`, say) is stored as INFO and stays in `metadata` as it came.
//!
//! A `_id` becomes the event id: as is when it is a UUID, else a UUID v5 of the index
//! and the `_id`; sending it again stores one row. Without `_id`, the id is derived
//! from the document ([`content_id`](super::content_id)).

use super::{content_id, level_named, reshape_errors, Record, MAX_AGENT_RECORDS};
use crate::routes::ingest::{joined, publish_many, IngestState, Outcome};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use log_common::domain::Level;
use log_common::error::ApiError;
use log_common::event::parse_timestamp;
use serde_json::{json, Map, Value};
use std::time::Instant;
use uuid::Uuid;

/// The protocol's name in metrics.
pub const PROTOCOL: &str = "es_bulk";
/// The protocol's name in the content ids of its documents.
const ID_PROTOCOL: &str = "elasticsearch";

/// The version we answer as: an 8.x, which every current shipper accepts.
pub const VERSION: &str = "8.17.0";
pub const PRODUCT_HEADER: (&str, &str) = ("X-Elastic-Product", "Elasticsearch");

/// What a bulk line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Index,
    Create,
    Update,
    Delete,
}

impl Action {
    fn parse(name: &str) -> Option<Action> {
        match name {
            "index" => Some(Action::Index),
            "create" => Some(Action::Create),
            "update" => Some(Action::Update),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Index => "index",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    /// Whether a document line follows the action line.
    fn has_document(self) -> bool {
        self != Action::Delete
    }
}

/// One action of a bulk body.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItem {
    pub action: Action,
    pub index: Option<String>,
    pub id: Option<String>,
    /// The document, or why its line is not a JSON object.
    pub document: Option<Result<Map<String, Value>, String>>,
}

/// The actions of an NDJSON bulk body. A line that is not an action, or an action
/// without its document, makes the whole request a 400, as in Elasticsearch; a
/// document that is not a JSON object is that item's error.
pub fn parse_bulk(body: &[u8], path_index: Option<&str>) -> Result<Vec<BulkItem>, ApiError> {
    let mut lines = body
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty());
    let mut items = Vec::new();
    while let Some((line_no, line)) = lines.next() {
        let malformed = |why: &str| {
            ApiError::BadRequest(format!(
                "line {}: malformed action/metadata line: {why}",
                line_no + 1
            ))
        };
        let Ok(Value::Object(action_line)) = serde_json::from_slice::<Value>(line) else {
            return Err(malformed("expected a JSON object"));
        };
        let mut entries = action_line.into_iter();
        let (Some((name, Value::Object(meta))), None) = (entries.next(), entries.next()) else {
            return Err(malformed(
                "expected one of index, create, update, delete naming an object",
            ));
        };
        let action =
            Action::parse(&name).ok_or_else(|| malformed(&format!("unknown action [{name}]")))?;
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        let document = if action.has_document() {
            let Some((_, doc_line)) = lines.next() else {
                return Err(ApiError::BadRequest(format!(
                    "line {}: the {name} action has no document line after it",
                    line_no + 1
                )));
            };
            Some(match serde_json::from_slice::<Value>(doc_line) {
                Ok(Value::Object(document)) => Ok(document),
                Ok(_) => Err("the document is not a JSON object".to_owned()),
                Err(e) => Err(format!("failed to parse the document: {e}")),
            })
        } else {
            None
        };
        items.push(BulkItem {
            action,
            index: text("_index").or_else(|| path_index.map(str::to_owned)),
            id: text("_id"),
            document,
        });
    }
    Ok(items)
}

/// The event id of a document whose action gave `_id`.
pub fn id_of(index: &str, id: &str) -> Uuid {
    Uuid::parse_str(id)
        .unwrap_or_else(|_| content_id(ID_PROTOCOL, &[b"_id", index.as_bytes(), id.as_bytes()]))
}

/// Takes a field given dotted (`"log.level": …`) or nested (`"log": {"level": …}`),
/// dropping an object left empty by the taking.
fn take_path(document: &mut Map<String, Value>, path: &str) -> Option<Value> {
    if let Some(value) = document.remove(path) {
        return Some(value);
    }
    let (head, rest) = path.split_once('.')?;
    let Some(Value::Object(inner)) = document.get_mut(head) else {
        return None;
    };
    let value = take_path(inner, rest);
    if inner.is_empty() {
        document.remove(head);
    }
    value
}

/// Elasticsearch's default date formats for a log: an RFC 3339 time (or one without
/// a zone, read as UTC), a date, or epoch milliseconds.
fn timestamp_of(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
        Value::String(s) => parse_timestamp(s)
            .or_else(|| {
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            })
            .or_else(|| {
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_millis)
            }),
        _ => None,
    }
}

fn text_of(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A document as a record, or the reason it cannot be one.
pub fn record_of(
    index: &str,
    id: Option<&str>,
    mut document: Map<String, Value>,
) -> Result<Record, String> {
    let timestamp = match take_path(&mut document, "@timestamp")
        .or_else(|| take_path(&mut document, "timestamp"))
    {
        None => None,
        Some(value) => Some(timestamp_of(&value).ok_or_else(|| {
            format!("@timestamp: failed to parse {value} as a date (RFC 3339 or epoch_millis)")
        })?),
    };
    let message = take_path(&mut document, "message")
        .map(text_of)
        .ok_or("message: the document has no message field")?;
    let level_field = ["log.level", "level"]
        .iter()
        .find_map(|path| take_path(&mut document, path).map(|v| (*path, text_of(v))));
    let level = match level_field {
        None => Level::Info,
        Some((path, text)) => level_named(&text).unwrap_or_else(|| {
            document.insert(path.to_owned(), Value::String(text));
            Level::Info
        }),
    };
    let source = ["service.name", "source"]
        .iter()
        .find_map(|path| take_path(&mut document, path).map(text_of))
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| index.to_owned());
    let trace_id = take_path(&mut document, "trace.id").map(text_of);
    document.insert("_index".to_owned(), Value::String(index.to_owned()));
    Ok(Record {
        id: id.map(|id| id_of(index, id)),
        level,
        message,
        source,
        timestamp,
        trace_id,
        metadata: document,
    })
}

/// A bulk item's line in the answer.
fn item_answer(
    action: Action,
    index: Option<&str>,
    id: Option<&str>,
    status: StatusCode,
    error: Option<(&str, String)>,
) -> Value {
    let mut item = json!({
        "_index": index,
        "_id": id,
        "status": status.as_u16(),
    });
    match error {
        None => {
            item["result"] = json!("created");
            item["_version"] = json!(1);
            item["_shards"] = json!({"total": 1, "successful": 1, "failed": 0});
            item["_seq_no"] = json!(0);
            item["_primary_term"] = json!(1);
        }
        Some((kind, reason)) => {
            item["error"] = json!({"type": kind, "reason": reason});
        }
    }
    json!({ action.name(): item })
}

/// `POST|PUT /producer/es/_bulk` and `/producer/es/{index}/_bulk`.
pub async fn bulk(
    req: HttpRequest,
    state: web::Data<IngestState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    check_content_type(&req)?;
    let path_index = req.match_info().get("index").map(str::to_owned);
    let items = parse_bulk(&body, path_index.as_deref())?;
    if items.is_empty() {
        return Err(ApiError::BadRequest(
            "the bulk request holds no action".to_owned(),
        ));
    }

    // The index and create items, as events, by their position among the items.
    let mut ids: Vec<Option<String>> = vec![None; items.len()];
    let mut events = Vec::new();
    for (position, item) in items.iter().enumerate() {
        if !matches!(item.action, Action::Index | Action::Create) {
            continue;
        }
        let event = match (&item.index, &item.document) {
            (None, _) => Err("_index: no index named, in the action or the path".to_owned()),
            (Some(index), Some(Ok(document))) => {
                record_of(index, item.id.as_deref(), document.clone()).map(|record| {
                    let event = record.into_event_json(ID_PROTOCOL);
                    ids[position] = Some(
                        item.id
                            .clone()
                            .unwrap_or_else(|| event["id"].as_str().unwrap_or("").to_owned()),
                    );
                    event
                })
            }
            (Some(_), Some(Err(why))) => Err(why.clone()),
            (Some(_), None) => Err("the action has no document".to_owned()),
        };
        events.push((position, event));
    }
    let total = events.len();
    let mut outcomes = if events.is_empty() {
        Vec::new()
    } else {
        publish_many(&req, &state, PROTOCOL, events, MAX_AGENT_RECORDS).await?
    }
    .into_iter()
    .peekable();

    let mut answers = Vec::with_capacity(items.len());
    let mut errors = false;
    for (position, item) in items.iter().enumerate() {
        let index = item.index.as_deref();
        let outcome = match outcomes.peek() {
            Some((p, _)) if *p == position => outcomes.next().map(|(_, o)| o),
            _ => None,
        };
        let id = ids[position].as_deref().or(item.id.as_deref());
        let answer = match (item.action, outcome) {
            (Action::Update | Action::Delete, _) => item_answer(
                item.action,
                index,
                item.id.as_deref(),
                StatusCode::BAD_REQUEST,
                Some((
                    "illegal_argument_exception",
                    format!(
                        "{} is not supported: stored log events are never changed",
                        item.action.name()
                    ),
                )),
            ),
            (_, Some(Outcome::Stored(_))) => {
                item_answer(item.action, index, id, StatusCode::CREATED, None)
            }
            (_, Some(Outcome::Invalid(field_errors))) => item_answer(
                item.action,
                index,
                item.id.as_deref(),
                StatusCode::BAD_REQUEST,
                Some(("document_parsing_exception", joined(&field_errors))),
            ),
            (_, Some(Outcome::Undelivered(_, reason))) => item_answer(
                item.action,
                index,
                id,
                StatusCode::TOO_MANY_REQUESTS,
                Some(("es_rejected_execution_exception", reason)),
            ),
            (_, None) => item_answer(
                item.action,
                index,
                item.id.as_deref(),
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(("exception", "the item was not processed".to_owned())),
            ),
        };
        errors |= answer
            .as_object()
            .and_then(|o| o.values().next())
            .is_some_and(|inner| inner.get("error").is_some());
        answers.push(answer);
    }
    tracing::debug!(total, "bulk");
    state.observe(PROTOCOL, started);
    Ok(json_answer(
        &req,
        StatusCode::OK,
        &json!({
            "took": started.elapsed().as_millis() as u64,
            "errors": errors,
            "items": answers,
        }),
    ))
}

/// NDJSON in any of the forms the clients send: `application/x-ndjson`,
/// `application/json`, or the versioned `application/vnd.elasticsearch+x-ndjson;
/// compatible-with=8` (the Python client sends 9); a missing type is taken as NDJSON.
pub fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let value = value.to_str().unwrap_or("").to_ascii_lowercase();
    let mut parts = value.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("");
    match mime {
        "application/x-ndjson" | "application/json" => Ok(()),
        "application/vnd.elasticsearch+x-ndjson" | "application/vnd.elasticsearch+json" => {
            let version = parts
                .find_map(|p| p.strip_prefix("compatible-with="))
                .unwrap_or("");
            if ["7", "8", "9"].contains(&version) {
                Ok(())
            } else {
                Err(ApiError::BadRequest(format!(
                    "Content-Type: compatible-with must be 7, 8 or 9, got '{version}'"
                )))
            }
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type must be application/x-ndjson (or application/json, or \
             application/vnd.elasticsearch+x-ndjson; compatible-with=8), got '{other}'"
        ))),
    }
}

/// A JSON answer in the media type the client asked for: the versioned
/// `application/vnd.elasticsearch+json` when its `Accept` names it, as Elasticsearch
/// answers, else plain JSON.
pub fn json_answer(req: &HttpRequest, status: StatusCode, body: &Value) -> HttpResponse {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let content_type = match accept
        .split(';')
        .map(str::trim)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [mime, params @ ..] if mime.eq_ignore_ascii_case("application/vnd.elasticsearch+json") => {
            let version = params
                .iter()
                .find_map(|p| p.strip_prefix("compatible-with="))
                .unwrap_or("8");
            HeaderValue::from_str(&format!(
                "application/vnd.elasticsearch+json;compatible-with={version}"
            ))
            .unwrap_or(HeaderValue::from_static("application/json"))
        }
        _ => HeaderValue::from_static("application/json"),
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(serde_json::to_vec(body).unwrap_or_default())
}

/// `GET|HEAD /`: who we are, in the shape clients read the version from.
pub async fn info(req: HttpRequest) -> HttpResponse {
    json_answer(
        &req,
        StatusCode::OK,
        &json!({
            "name": "log-producer",
            "cluster_name": "log-pipeline",
            "cluster_uuid": "log-pipeline",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "tar",
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

/// `GET /_license`: Filebeat and Logstash refuse to send without an active license.
pub async fn license(req: HttpRequest) -> HttpResponse {
    json_answer(
        &req,
        StatusCode::OK,
        &json!({"license": {
            "status": "active",
            "uid": "log-pipeline",
            "type": "basic",
            "mode": "basic",
            "issue_date_in_millis": 0,
            "max_nodes": 1000,
            "issued_to": "log-pipeline",
            "issuer": "elasticsearch",
            "start_date_in_millis": -1
        }}),
    )
}

/// `GET /_cluster/health`: Vector's health check.
pub async fn cluster_health(req: HttpRequest) -> HttpResponse {
    json_answer(
        &req,
        StatusCode::OK,
        &json!({
            "cluster_name": "log-pipeline",
            "status": "green",
            "timed_out": false,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1
        }),
    )
}

/// `PUT|POST` of an index template, component template, ILM policy or ingest
/// pipeline: acknowledged and not kept (storage is ours, so none of them applies).
pub async fn acknowledge(req: HttpRequest) -> HttpResponse {
    json_answer(&req, StatusCode::OK, &json!({"acknowledged": true}))
}

/// `GET|HEAD` of one of those: none exists, so a shipper that checks before
/// installing one installs it (and is acknowledged).
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let what = req.path().to_owned();
    json_answer(
        &req,
        StatusCode::NOT_FOUND,
        &json!({
            "error": {
                "root_cause": [{"type": "resource_not_found_exception", "reason": format!("{what} does not exist")}],
                "type": "resource_not_found_exception",
                "reason": format!("{what} does not exist")
            },
            "status": 404
        }),
    )
}

/// The calls shippers make before their first bulk (README, "Point your agent at
/// us"): the info document (Filebeat, Logstash and Vector read the version), the
/// license (Filebeat, Logstash), the cluster health (Vector's health check), and the
/// template, policy and pipeline calls of shippers left to set themselves up, which
/// are acknowledged.
pub fn startup_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(info))
        .route("", web::head().to(info))
        .route("/", web::get().to(info))
        .route("/", web::head().to(info))
        .route("/_license", web::get().to(license))
        .route("/_cluster/health", web::get().to(cluster_health));
    for kind in [
        "/_index_template/{name}",
        "/_template/{name}",
        "/_component_template/{name}",
        "/_ilm/policy/{name}",
        "/_ingest/pipeline/{name}",
        "/_data_stream/{name}",
    ] {
        cfg.service(
            web::resource(kind)
                .route(web::put().to(acknowledge))
                .route(web::post().to(acknowledge))
                .route(web::get().to(not_found))
                .route(web::head().to(not_found)),
        );
    }
}

/// Middleware (via `from_fn`) for the whole `/producer/es` scope: our error answers in
/// Elasticsearch's shape ([`error_body`]).
pub async fn es_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?;
    reshape_errors(response, |req, status, message| {
        let answer = json_answer(req, status, &error_body(status, message));
        let content_type = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json"));
        (
            content_type,
            serde_json::to_vec(&error_body(status, message)).unwrap_or_default(),
        )
    })
    .await
}

/// Elasticsearch's name for the error of an HTTP status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "illegal_argument_exception",
        401 => "security_exception",
        403 => "security_exception",
        404 => "resource_not_found_exception",
        413 => "content_too_long_exception",
        415 => "media_type_header_exception",
        429 => "es_rejected_execution_exception",
        503 => "unavailable_shards_exception",
        _ => "exception",
    }
}

/// Our error answer in Elasticsearch's shape: `{"error": {"root_cause", "type",
/// "reason"}, "status"}`.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    let kind = error_type(status);
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": message}],
            "type": kind,
            "reason": message
        },
        "status": status.as_u16()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn a_bulk_body_is_actions_with_their_documents() {
        let body = b"{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"message\":\"m\"}\n\n\
            {\"delete\":{\"_id\":\"2\"}}\n{\"create\":{}}\n[1]\n{\"update\":{\"_id\":\"3\"}}\n{\"doc\":{}}\n";
        let items = parse_bulk(body, Some("path-index")).expect("parses");
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].action, Action::Index);
        assert_eq!(items[0].index.as_deref(), Some("a"));
        assert_eq!(items[0].id.as_deref(), Some("1"));
        assert_eq!(items[1].action, Action::Delete);
        assert_eq!(items[1].document, None);
        assert_eq!(items[2].index.as_deref(), Some("path-index"));
        assert!(items[2].document.clone().expect("line").is_err());
        assert_eq!(items[3].action, Action::Update);
    }

    #[test]
    fn malformed_bulk_bodies_are_400s() {
        for body in [
            &b"{\"index\":{}}\n"[..],
            b"{\"index\":{}}",
            b"not json\n{}\n",
            b"{\"upsert\":{}}\n{}\n",
            b"{\"index\":{},\"create\":{}}\n{}\n",
            b"{\"index\":\"a\"}\n{}\n",
        ] {
            assert!(
                matches!(parse_bulk(body, None), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_document_maps_dotted_and_nested_fields_alike() {
        let dotted = doc(
            json!({"@timestamp": "2024-05-01T10:00:00.5Z", "message": "m",
            "log.level": "warn", "service.name": "api", "trace.id": "t1", "host": {"name": "h"}}),
        );
        let nested = doc(
            json!({"@timestamp": "2024-05-01T10:00:00.5Z", "message": "m",
            "log": {"level": "warn"}, "service": {"name": "api"}, "trace": {"id": "t1"},
            "host": {"name": "h"}}),
        );
        let a = record_of("logs-x", None, dotted).expect("valid");
        let b = record_of("logs-x", None, nested).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.level, Level::Warn);
        assert_eq!(a.source, "api");
        assert_eq!(a.trace_id.as_deref(), Some("t1"));
        assert_eq!(
            Value::Object(a.metadata),
            json!({"host": {"name": "h"}, "_index": "logs-x"})
        );
    }

    #[test]
    fn sources_levels_and_times_fall_back_in_order() {
        let r = record_of(
            "idx",
            None,
            doc(json!({"message": "m", "source": "s", "level": "ERROR",
            "timestamp": 1_714_557_600_000_i64})),
        )
        .expect("valid");
        assert_eq!((r.source.as_str(), r.level), ("s", Level::Error));
        assert_eq!(
            r.timestamp,
            DateTime::from_timestamp_millis(1_714_557_600_000)
        );
        let r = record_of(
            "idx",
            None,
            doc(json!({"message": "m", "log.level": "notice",
            "@timestamp": "2024-05-01"})),
        )
        .expect("valid");
        assert_eq!((r.source.as_str(), r.level), ("idx", Level::Info));
        assert_eq!(
            r.metadata["log.level"], "notice",
            "an unknown level is kept"
        );
        assert_eq!(
            r.timestamp,
            DateTime::from_timestamp_millis(1_714_521_600_000)
        );
        assert!(record_of(
            "idx",
            None,
            doc(json!({"message": "m", "@timestamp": "not a date"}))
        )
        .expect_err("bad date")
        .starts_with("@timestamp"));
        assert!(record_of("idx", None, doc(json!({"msg": "m"})))
            .expect_err("no message")
            .starts_with("message"));
    }

    #[test]
    fn ids_are_kept_when_uuids_and_derived_per_index_otherwise() {
        let uuid = Uuid::new_v4();
        assert_eq!(id_of("a", &uuid.to_string()), uuid);
        assert_eq!(id_of("a", "order-1"), id_of("a", "order-1"));
        assert_eq!(id_of("a", "order-1").get_version_num(), 5);
        assert_ne!(id_of("a", "order-1"), id_of("b", "order-1"));
    }

    #[test]
    fn the_versioned_media_types_are_accepted() {
        use actix_web::test::TestRequest;
        let with = |value: &str| {
            check_content_type(
                &TestRequest::default()
                    .insert_header((header::CONTENT_TYPE, value))
                    .to_http_request(),
            )
        };
        assert!(with("application/x-ndjson").is_ok());
        assert!(with("application/vnd.elasticsearch+x-ndjson; compatible-with=9").is_ok());
        assert!(with("application/vnd.elasticsearch+x-ndjson;compatible-with=8").is_ok());
        assert!(matches!(
            with("application/vnd.elasticsearch+x-ndjson; compatible-with=5"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            with("text/csv"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        let answer = json_answer(
            &TestRequest::default()
                .insert_header((
                    header::ACCEPT,
                    "application/vnd.elasticsearch+json; compatible-with=9",
                ))
                .to_http_request(),
            StatusCode::OK,
            &json!({}),
        );
        assert_eq!(
            answer.headers().get(header::CONTENT_TYPE).expect("type"),
            "application/vnd.elasticsearch+json;compatible-with=9"
        );
    }
}
