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
//! and the `_id`; sending it again stores one row. Without `_id`, the id is a UUID v5
//! of the index and the document's bytes as sent ([`content_id`](super::content_id)):
//! a client's retry sends the same bytes. When the document has its own time, that
//! id's first 48 bits are its millisecond ([`timed_content_id`]).

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
use log_common::ids::timed_content_id;
use serde::{Deserialize, Serialize};
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
    /// The event id: from `_id` ([`id_of`]), else from the index and the document line.
    pub event_id: Uuid,
    /// The document, or why its line is not a JSON object.
    pub document: Option<Result<Map<String, Value>, String>>,
}

/// An action line, read into types rather than a JSON tree (it comes once per
/// document): the action's metadata, under the action's name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionLine {
    index: Option<ActionMeta>,
    create: Option<ActionMeta>,
    update: Option<ActionMeta>,
    delete: Option<ActionMeta>,
}

/// What we read of an action's metadata; the rest (`routing`, `pipeline`, …) is
/// ignored.
#[derive(Deserialize)]
struct ActionMeta {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<String>,
}

impl ActionLine {
    fn only(self) -> Result<(Action, ActionMeta), String> {
        let named = [
            (Action::Index, self.index),
            (Action::Create, self.create),
            (Action::Update, self.update),
            (Action::Delete, self.delete),
        ];
        let mut given = named
            .into_iter()
            .filter_map(|(action, meta)| meta.map(|m| (action, m)));
        match (given.next(), given.next()) {
            (Some(one), None) => Ok(one),
            _ => Err("expected exactly one action of index, create, update, delete".to_owned()),
        }
    }
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
        let Ok(action_line) = serde_json::from_slice::<ActionLine>(line) else {
            return Err(malformed(
                "expected {\"<action>\": {…}} with one action of index, create, update, delete",
            ));
        };
        let (action, meta) = action_line.only().map_err(|e| malformed(&e))?;
        let name = action.name();
        let index = meta.index.or_else(|| path_index.map(str::to_owned));
        let id = meta.id;
        let index_bytes = index.as_deref().unwrap_or("").as_bytes();
        let mut event_id = id
            .as_deref()
            .map(|id| id_of(index.as_deref().unwrap_or(""), id));
        let document = if action.has_document() {
            let Some((_, doc_line)) = lines.next() else {
                return Err(ApiError::BadRequest(format!(
                    "line {}: the {name} action has no document line after it",
                    line_no + 1
                )));
            };
            event_id = event_id
                .or_else(|| Some(content_id(ID_PROTOCOL, &[b"doc", index_bytes, doc_line])));
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
            index,
            id,
            event_id: event_id.unwrap_or_default(),
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
    id: Uuid,
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
        id,
        level,
        message,
        source,
        timestamp,
        trace_id,
        metadata: document,
    })
}

/// A bulk item's line in the answer: `{"<action>": {…}}`.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum ItemAnswer<'a> {
    Index(ItemResult<'a>),
    Create(ItemResult<'a>),
    Update(ItemResult<'a>),
    Delete(ItemResult<'a>),
}

impl<'a> ItemAnswer<'a> {
    fn new(action: Action, result: ItemResult<'a>) -> Self {
        match action {
            Action::Index => ItemAnswer::Index(result),
            Action::Create => ItemAnswer::Create(result),
            Action::Update => ItemAnswer::Update(result),
            Action::Delete => ItemAnswer::Delete(result),
        }
    }
}

/// One item's answer. Each field is left out when the client's `filter_path` leaves
/// it out. Of Elasticsearch's fields, those we can say truthfully: no shards or
/// sequence numbers.
#[derive(Serialize)]
struct ItemResult<'a> {
    #[serde(rename = "_index", skip_serializing_if = "Option::is_none")]
    index: Option<Option<&'a str>>,
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<Option<&'a str>>,
    #[serde(rename = "_version", skip_serializing_if = "Option::is_none")]
    version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ItemError>,
}

#[derive(Serialize)]
struct ItemError {
    #[serde(rename = "type")]
    kind: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct BulkAnswer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    took: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<ItemAnswer<'a>>>,
}

/// The parts of a bulk answer a client asked for with `filter_path`: Filebeat and
/// Logstash ask for `errors,items.*.error,items.*.status`, which spares them the rest
/// of every item. Paths are read as Elasticsearch reads them, for the answer's shape
/// (`took`, `errors`, `items.*.<field>`, `*` for any); without `filter_path`, all.
#[derive(Debug, Default, PartialEq)]
pub struct BulkFilter {
    took: bool,
    errors: bool,
    items: bool,
    /// `None`: every field of an item.
    item_fields: Option<Vec<String>>,
}

impl BulkFilter {
    pub fn from_query(query: &str) -> BulkFilter {
        let filter_path =
            web::Query::<std::collections::HashMap<String, String>>::from_query(query)
                .ok()
                .and_then(|q| q.get("filter_path").cloned());
        let everything = BulkFilter {
            took: true,
            errors: true,
            items: true,
            item_fields: None,
        };
        let Some(filter_path) = filter_path else {
            return everything;
        };
        let mut filter = BulkFilter {
            item_fields: Some(Vec::new()),
            ..BulkFilter::default()
        };
        for path in filter_path.split(',').map(str::trim) {
            let mut parts = path.split('.');
            match parts.next() {
                Some("took") => filter.took = true,
                Some("errors") => filter.errors = true,
                Some("items") => {
                    filter.items = true;
                    // items, items.*, items.<action>, then the field if any.
                    match parts.nth(1) {
                        None | Some("*") => filter.item_fields = None,
                        Some(field) => {
                            if let Some(fields) = &mut filter.item_fields {
                                fields.push(field.to_owned());
                            }
                        }
                    }
                }
                Some("*") => return everything,
                _ => {}
            }
        }
        filter
    }

    fn wants(&self, field: &str) -> bool {
        self.item_fields
            .as_ref()
            .is_none_or(|fields| fields.iter().any(|f| f == field || f == "*"))
    }
}

/// What the answer needs of an item once its document has gone to the publisher.
struct Slot {
    action: Action,
    index: Option<String>,
    /// The `_id` given, else the id derived for the document.
    id: Option<String>,
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

    // The index and create items, as events, by their position among the items; the
    // documents are moved into the events, not copied.
    let mut slots = Vec::with_capacity(items.len());
    let mut events = Vec::new();
    for (position, item) in items.into_iter().enumerate() {
        let BulkItem {
            action,
            index,
            mut id,
            event_id,
            document,
        } = item;
        if matches!(action, Action::Index | Action::Create) {
            let record = match (&index, document) {
                (None, _) => Err("_index: no index named, in the action or the path".to_owned()),
                (Some(index), Some(Ok(document))) => {
                    record_of(index, event_id, document).map(|mut record| {
                        // Without `_id`: the document's content at its own time.
                        if id.is_none() {
                            record.id = timed_content_id(record.id, record.timestamp);
                        }
                        record
                    })
                }
                (Some(_), Some(Err(why))) => Err(why),
                (Some(_), None) => Err("the action has no document".to_owned()),
            };
            if let (None, Ok(record)) = (&id, &record) {
                id = Some(record.id.to_string());
            }
            events.push((position, record.map(Record::into_event_json)));
        }
        slots.push(Slot { action, index, id });
    }
    let mut outcomes = if events.is_empty() {
        Vec::new()
    } else {
        publish_many(&req, &state, PROTOCOL, events, MAX_AGENT_RECORDS).await?
    }
    .into_iter()
    .peekable();

    let filter = BulkFilter::from_query(req.query_string());
    let mut items = Vec::with_capacity(if filter.items { slots.len() } else { 0 });
    let mut errors = false;
    for (position, slot) in slots.iter().enumerate() {
        let outcome = match outcomes.peek() {
            Some((p, _)) if *p == position => outcomes.next().map(|(_, o)| o),
            _ => None,
        };
        let (status, error) = match (slot.action, outcome) {
            (Action::Update | Action::Delete, _) => (
                StatusCode::BAD_REQUEST,
                Some((
                    "illegal_argument_exception",
                    format!(
                        "{} is not supported: stored log events are never changed",
                        slot.action.name()
                    ),
                )),
            ),
            (_, Some(Outcome::Stored(_))) => (StatusCode::CREATED, None),
            (_, Some(Outcome::Invalid(field_errors))) => (
                StatusCode::BAD_REQUEST,
                Some(("document_parsing_exception", joined(&field_errors))),
            ),
            // Elasticsearch clients send a 429 item again; its id makes that safe.
            (_, Some(Outcome::Undelivered(_, reason))) => (
                StatusCode::TOO_MANY_REQUESTS,
                Some(("es_rejected_execution_exception", reason)),
            ),
            (_, None) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(("exception", "the item was not processed".to_owned())),
            ),
        };
        errors |= error.is_some();
        if !filter.items {
            continue;
        }
        let created = error.is_none();
        items.push(ItemAnswer::new(
            slot.action,
            ItemResult {
                index: filter.wants("_index").then_some(slot.index.as_deref()),
                id: filter.wants("_id").then_some(slot.id.as_deref()),
                version: (created && filter.wants("_version")).then_some(1),
                result: (created && filter.wants("result")).then_some("created"),
                status: filter.wants("status").then_some(status.as_u16()),
                error: error
                    .filter(|_| filter.wants("error"))
                    .map(|(kind, reason)| ItemError { kind, reason }),
            },
        ));
    }
    state.observe(PROTOCOL, started);
    let answer = BulkAnswer {
        took: filter.took.then(|| started.elapsed().as_millis() as u64),
        errors: filter.errors.then_some(errors),
        items: filter.items.then_some(items),
    };
    Ok(json_answer(&req, StatusCode::OK, &answer))
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
pub fn json_answer(req: &HttpRequest, status: StatusCode, body: &impl Serialize) -> HttpResponse {
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
        let a = record_of("logs-x", Uuid::nil(), dotted).expect("valid");
        let b = record_of("logs-x", Uuid::nil(), nested).expect("valid");
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
            Uuid::nil(),
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
            Uuid::nil(),
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
            Uuid::nil(),
            doc(json!({"message": "m", "@timestamp": "not a date"}))
        )
        .expect_err("bad date")
        .starts_with("@timestamp"));
        assert!(record_of("idx", Uuid::nil(), doc(json!({"msg": "m"})))
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
    fn filter_path_keeps_what_filebeat_and_logstash_ask_for() {
        let all = BulkFilter::from_query("");
        assert!(all.took && all.errors && all.items && all.item_fields.is_none());
        let beats = BulkFilter::from_query("filter_path=errors,items.*.error,items.*.status");
        assert_eq!(
            beats,
            BulkFilter {
                took: false,
                errors: true,
                items: true,
                item_fields: Some(vec!["error".to_owned(), "status".to_owned()]),
            }
        );
        assert!(beats.wants("status") && !beats.wants("_id"));
        let encoded = BulkFilter::from_query("timeout=60s&filter_path=items.create._id%2Ctook");
        assert!(
            encoded.took && !encoded.errors && encoded.wants("_id") && !encoded.wants("status")
        );
        assert_eq!(
            BulkFilter::from_query("filter_path=items"),
            BulkFilter {
                took: false,
                errors: false,
                items: true,
                item_fields: None,
            }
        );
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
