//! Dead letters for operators: reads of the consumer's dead-letter index, replays
//! through the producer's own ingest (so a replayed event passes the same validation
//! and publishing as any other), the audit of every attempt, and the gauges.
//!
//! A replay sends the event with a deterministic `id` (the original payload's own when
//! it is a valid UUID, else one derived from the record's origin, as the consumer
//! derives it), and, when the event has no `timestamp`, the time the record failed: so
//! replaying a dead letter twice sends the same id and timestamp, and the pipeline
//! stores one row however far apart the replays are.

use crate::api::dead_letters::{
    BulkReplayResult, DeadLetterCounts, DeadLetterDetail, DeadLetterPage, ReplayAudit, ReplayResult,
};
use crate::metrics::GatewayMetrics;
use crate::params::dead_letters::{BulkReplay, DeadLetterQuery};
use crate::service::{api_error, QueryClass};
use crate::settings::QueryLimits;
use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use chrono::{DateTime, SecondsFormat, Utc};
use diesel::{Connection, PgConnection};
use log_common::auth::API_KEY_HEADER;
use log_common::breaker::CircuitBreaker;
use log_common::domain::derived_event_id;
use log_common::error::ApiError;
use log_common::event::FieldError;
use log_store::dead_letters::{self, DeadLetter, NewReplay, ReasonKind, ReplayOutcome};
use log_store::error::QueryError;
use log_store::pool::set_local_statement_timeout;
use log_store::PgPool;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The producer's single-event ingest, below `PRODUCER_URL`.
pub const INGEST_PATH: &str = "/producer/api/logs/ingest";
/// Longest a replay waits for the producer (which answers after Kafka's ack, bounded
/// by its own `KAFKA_DELIVERY_TIMEOUT_MS`).
const PRODUCER_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the gauges are read from the index.
pub const GAUGE_REFRESH: Duration = Duration::from_secs(15);

/// What a replay sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub event_id: Uuid,
    pub body: Vec<u8>,
    pub corrected: bool,
}

/// The id a dead letter is replayed with: its payload's own `id` when that is a valid
/// UUID, else the one derived from its origin (what the consumer would have given it).
pub fn replay_id(letter: &DeadLetter) -> Uuid {
    serde_json::from_slice::<Value>(&letter.payload)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .and_then(|id| Uuid::parse_str(&id).ok())
        .unwrap_or_else(|| {
            derived_event_id(
                &letter.original_topic,
                letter.original_partition,
                letter.original_offset,
            )
        })
}

/// The body a replay posts: the corrected event, or the original payload; when it is
/// a JSON object, with the deterministic id and (when it has none) the failure time as
/// its timestamp. A payload that is not a JSON object goes as it is, for the producer
/// to refuse with its own reason.
pub fn outgoing(letter: &DeadLetter, corrected: Option<Map<String, Value>>) -> Outgoing {
    let event_id = replay_id(letter);
    let is_corrected = corrected.is_some();
    let object = corrected.or_else(|| match serde_json::from_slice(&letter.payload) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    });
    let body = match object {
        Some(mut event) => {
            event.insert("id".to_owned(), Value::String(event_id.to_string()));
            if event.get("timestamp").is_none_or(Value::is_null) {
                event.insert(
                    "timestamp".to_owned(),
                    Value::String(
                        letter
                            .failed_at
                            .to_rfc3339_opts(SecondsFormat::Micros, true),
                    ),
                );
            }
            Value::Object(event).to_string().into_bytes()
        }
        None => letter.payload.clone(),
    };
    Outgoing {
        event_id,
        body,
        corrected: is_corrected,
    }
}

/// How the producer answered a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerAnswer {
    pub outcome: ReplayOutcome,
    /// The producer's status; 0 when it could not be reached.
    pub status: u16,
    /// Its message, or why it could not be reached.
    pub detail: String,
    /// Its field errors, when it rejected the event.
    pub errors: Vec<FieldError>,
    /// Its `Retry-After`, when it gave one.
    pub retry_after_secs: Option<u64>,
}

/// A producer's answer by status: 2xx published; a refusal of the event itself (400,
/// 413, 415, 422) rejected; anything else (5xx, 429, a key it refuses) failed, as the
/// same replay may succeed later.
pub fn classify(status: u16, body: &[u8], retry_after_secs: Option<u64>) -> ProducerAnswer {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = json
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect());
    let errors = json
        .get("errors")
        .and_then(|e| serde_json::from_value::<Vec<FieldError>>(e.clone()).ok())
        .unwrap_or_default();
    let outcome = match status {
        200..=299 => ReplayOutcome::Published,
        400 | 413 | 415 | 422 => ReplayOutcome::Rejected,
        _ => ReplayOutcome::Failed,
    };
    let detail = match outcome {
        ReplayOutcome::Published => message,
        _ => format!("producer answered {status}: {message}"),
    };
    ProducerAnswer {
        outcome,
        status,
        detail,
        errors,
        retry_after_secs,
    }
}

/// Who asked for a replay: the audit's name for the key, and the key headers to pass
/// on to the producer (which checks them like any client's).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub fingerprint: String,
    forwarded: Vec<(&'static str, String)>,
}

impl Caller {
    pub fn new(fingerprint: String, headers: &HeaderMap) -> Self {
        let forwarded = [API_KEY_HEADER, AUTHORIZATION.as_str()]
            .into_iter()
            .filter_map(|name| {
                let value = headers.get(name)?.to_str().ok()?;
                Some((name, value.to_owned()))
            })
            .collect();
        Caller {
            fingerprint,
            forwarded,
        }
    }
}

/// The admin side of the dead letters: the index in PostgreSQL (behind the gateway's
/// PostgreSQL breaker) and the producer.
#[derive(Clone)]
pub struct DeadLetterAdmin {
    pub pool: PgPool,
    pub breaker: CircuitBreaker,
    pub limits: QueryLimits,
    pub metrics: GatewayMetrics,
    pub client: reqwest::Client,
    /// `PRODUCER_URL`, without a trailing slash.
    pub producer_url: String,
}

impl DeadLetterAdmin {
    pub fn new(
        pool: PgPool,
        breaker: CircuitBreaker,
        limits: QueryLimits,
        metrics: GatewayMetrics,
        producer_url: &str,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(PRODUCER_TIMEOUT)
            .build()?;
        Ok(DeadLetterAdmin {
            pool,
            breaker,
            limits,
            metrics,
            client,
            producer_url: producer_url.trim_end_matches('/').to_owned(),
        })
    }

    pub async fn list(&self, query: DeadLetterQuery) -> Result<DeadLetterPage, ApiError> {
        let DeadLetterQuery { filter, page, size } = query;
        let (rows, total) = self
            .run(QueryClass::Page, move |conn| {
                dead_letters::list(conn, &filter, page, size)
            })
            .await?;
        Ok(DeadLetterPage::new(rows, total, page, size))
    }

    pub async fn counts(&self) -> Result<DeadLetterCounts, ApiError> {
        let rows = self
            .run(QueryClass::Aggregate, dead_letters::counts)
            .await?;
        Ok(DeadLetterCounts::new(rows))
    }

    pub async fn detail(&self, id: i64) -> Result<DeadLetterDetail, ApiError> {
        Ok(self.find(id).await?.into())
    }

    async fn find(&self, id: i64) -> Result<DeadLetter, ApiError> {
        self.run(QueryClass::Lookup, move |conn| dead_letters::find(conn, id))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no dead letter with id {id}")))
    }

    /// The audit of one dead letter's replays, oldest first; 404 for an unknown id.
    pub async fn replays(&self, id: i64) -> Result<Vec<ReplayAudit>, ApiError> {
        let rows = self
            .run(QueryClass::Lookup, move |conn| {
                match dead_letters::find(conn, id)? {
                    Some(_) => dead_letters::replays(conn, id).map(Some),
                    None => Ok(None),
                }
            })
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no dead letter with id {id}")))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Replays one dead letter (404 if unknown) and records the attempt.
    pub async fn replay(
        &self,
        id: i64,
        corrected: Option<Map<String, Value>>,
        caller: &Caller,
    ) -> Result<(ReplayResult, ProducerAnswer), ApiError> {
        let letter = self.find(id).await?;
        self.replay_letter(&letter, corrected, caller).await
    }

    /// Replays the unreplayed dead letters `bulk` matches, oldest first, as they are;
    /// stops at the first the producer fails on (it would fail the rest too).
    pub async fn replay_many(
        &self,
        bulk: BulkReplay,
        caller: &Caller,
    ) -> Result<BulkReplayResult, ApiError> {
        let BulkReplay { filter, limit } = bulk;
        let ids = self
            .run(QueryClass::Page, move |conn| {
                dead_letters::unreplayed_ids(conn, &filter, limit)
            })
            .await?;
        let mut result = BulkReplayResult {
            matched: ids.len(),
            published: 0,
            rejected: 0,
            failed: 0,
            stopped_early: false,
            results: Vec::with_capacity(ids.len()),
        };
        for (i, id) in ids.iter().enumerate() {
            // Replayed or purged since the ids were read: nothing to do.
            let Some(letter) = self
                .run(QueryClass::Lookup, {
                    let id = *id;
                    move |conn| dead_letters::find(conn, id)
                })
                .await?
            else {
                continue;
            };
            let (replayed, answer) = self.replay_letter(&letter, None, caller).await?;
            result.results.push(replayed);
            match answer.outcome {
                ReplayOutcome::Published => result.published += 1,
                ReplayOutcome::Rejected => result.rejected += 1,
                ReplayOutcome::Failed => {
                    result.failed += 1;
                    result.stopped_early = i + 1 < ids.len();
                    break;
                }
            }
        }
        Ok(result)
    }

    async fn replay_letter(
        &self,
        letter: &DeadLetter,
        corrected: Option<Map<String, Value>>,
        caller: &Caller,
    ) -> Result<(ReplayResult, ProducerAnswer), ApiError> {
        let outgoing = outgoing(letter, corrected);
        let answer = self.send(&outgoing, caller).await;
        self.metrics
            .dead_letter_replays
            .with_label_values(&[answer.outcome.as_str()])
            .inc();
        tracing::info!(dead_letter = letter.id, event_id = %outgoing.event_id,
            outcome = answer.outcome.as_str(), key = %caller.fingerprint, "dead letter replayed");
        let audit = NewReplay {
            dead_letter_id: letter.id,
            key_fingerprint: caller.fingerprint.clone(),
            original_topic: letter.original_topic.clone(),
            original_partition: letter.original_partition,
            original_offset: letter.original_offset,
            corrected: outgoing.corrected,
            event_id: outgoing.event_id,
            outcome: answer.outcome.as_str().to_owned(),
            // PostgreSQL's text cannot hold NUL.
            detail: answer.detail.replace('\0', "\u{fffd}"),
        };
        let row = self
            .run(QueryClass::Lookup, move |conn| {
                dead_letters::record_replay(conn, &audit)
            })
            .await?;
        Ok((
            ReplayResult {
                dead_letter_id: letter.id,
                event_id: outgoing.event_id,
                outcome: row.outcome,
                corrected: row.corrected,
                detail: row.detail,
                replay_id: row.id,
            },
            answer,
        ))
    }

    /// Posts the event to the producer's single-event ingest with the caller's key.
    async fn send(&self, outgoing: &Outgoing, caller: &Caller) -> ProducerAnswer {
        let mut request = self
            .client
            .post(format!("{}{INGEST_PATH}", self.producer_url))
            .header("Content-Type", "application/json")
            .body(outgoing.body.clone());
        for (name, value) in &caller.forwarded {
            request = request.header(*name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return ProducerAnswer {
                    outcome: ReplayOutcome::Failed,
                    status: 0,
                    detail: format!("producer unreachable at {}: {e}", self.producer_url),
                    errors: Vec::new(),
                    retry_after_secs: None,
                }
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        match response.bytes().await {
            Ok(body) => classify(status, &body, retry_after),
            Err(e) => ProducerAnswer {
                outcome: ReplayOutcome::Failed,
                status,
                detail: format!("producer answer unreadable: {e}"),
                errors: Vec::new(),
                retry_after_secs: retry_after,
            },
        }
    }

    /// Reads the unreplayed dead letters per kind and the oldest of them into the
    /// gauges (`log_dead_letters`, `log_dead_letter_oldest_unreplayed_age_seconds`).
    pub async fn refresh_gauges(&self) -> Result<(), ApiError> {
        let rows = self
            .run(QueryClass::Aggregate, dead_letters::unreplayed)
            .await?;
        let now = Utc::now();
        for kind in ReasonKind::ALL {
            let count = rows
                .iter()
                .find(|r| r.reason_kind == kind.as_str())
                .map_or(0, |r| r.count);
            self.metrics
                .dead_letters
                .with_label_values(&[kind.as_str()])
                .set(count);
        }
        let oldest: Option<DateTime<Utc>> = rows.iter().map(|r| r.oldest).min();
        let age = oldest.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        self.metrics.dead_letter_oldest_age.set(age);
        Ok(())
    }

    /// Runs `work` on a pooled connection off the async threads, behind the breaker,
    /// in one transaction whose statements may each run for the limit of `class`.
    /// (Read-write, unlike the query service's: a replay writes its audit row.)
    async fn run<T, F>(&self, class: QueryClass, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, QueryError> + Send + 'static,
    {
        if !self.breaker.permits() {
            return Err(ApiError::Unavailable {
                message: "PostgreSQL is unavailable (circuit breaker open)".to_owned(),
                retry_after_secs: self.breaker.retry_after_secs(),
            });
        }
        let pool = self.pool.clone();
        let timeout = self.limit(class);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            let started = Instant::now();
            conn.transaction(|conn| {
                set_local_statement_timeout(conn, timeout)?;
                work(conn)
            })
            .map_err(|e: QueryError| e.with_elapsed(started.elapsed(), Some(timeout)))
        })
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("dead-letter task failed: {e}")))?;
        match result {
            Ok(value) => {
                self.breaker.record_success();
                Ok(value)
            }
            Err(e) => Err(api_error(e, &self.breaker, class, timeout, &self.metrics)),
        }
    }

    fn limit(&self, class: QueryClass) -> Duration {
        Duration::from_millis(match class {
            QueryClass::Lookup => self.limits.lookup_ms,
            QueryClass::Page => self.limits.page_ms,
            QueryClass::Search => self.limits.search_ms,
            QueryClass::Aggregate => self.limits.aggregate_ms,
        })
    }
}

/// Refreshes the gauges every [`GAUGE_REFRESH`] until `closing` turns true.
pub async fn refresh_gauges_until(
    admin: DeadLetterAdmin,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(GAUGE_REFRESH);
    loop {
        tokio::select! {
            _ = closing.wait_for(|closing| *closing) => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = admin.refresh_gauges().await {
            tracing::debug!(error = %e, "dead-letter gauges not refreshed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: &[u8]) -> DeadLetter {
        DeadLetter {
            id: 7,
            original_topic: "log-events".into(),
            original_partition: 2,
            original_offset: 41,
            reason_kind: "invalid_event".into(),
            reason: "invalid event".into(),
            failed_at: "2026-11-29T12:00:00Z".parse().expect("time"),
            kafka_key: None,
            payload: payload.to_vec(),
            replayed_at: None,
            replay_count: 0,
        }
    }

    fn body(outgoing: &Outgoing) -> Value {
        serde_json::from_slice(&outgoing.body).expect("JSON body")
    }

    #[test]
    fn the_payloads_own_valid_id_is_kept() {
        let own = "0193a4f2-7c1e-7d3a-9a51-3f2b8f1c0a11";
        let payload = format!(r#"{{"id":"{own}","level":"LOUD","message":"m","source":"s"}}"#);
        let sent = outgoing(&letter(payload.as_bytes()), None);
        assert_eq!(sent.event_id.to_string(), own);
        assert_eq!(body(&sent)["id"], own);
        assert!(!sent.corrected);
    }

    #[test]
    fn without_a_valid_id_the_id_comes_from_the_origin_as_in_the_consumer() {
        let expected = derived_event_id("log-events", 2, 41);
        for payload in [
            &br#"{"level":"LOUD","message":"m","source":"s"}"#[..],
            &br#"{"id":"nope","level":"LOUD","message":"m","source":"s"}"#[..],
            &b"\xff\xfe"[..],
        ] {
            assert_eq!(outgoing(&letter(payload), None).event_id, expected);
        }
    }

    #[test]
    fn a_corrected_event_gets_the_deterministic_id_and_the_failure_time() {
        let letter = letter(br#"{"level":"LOUD","message":"m","source":"s"}"#);
        let corrected = serde_json::json!({"id": "0193a4f2-7c1e-7d3a-9a51-3f2b8f1c0a11",
            "level": "INFO", "message": "m", "source": "s"});
        let Value::Object(corrected) = corrected else {
            unreachable!()
        };
        let first = outgoing(&letter, Some(corrected.clone()));
        let second = outgoing(&letter, Some(corrected));
        assert_eq!(first, second, "the same replay twice sends the same event");
        assert!(first.corrected);
        let sent = body(&first);
        assert_eq!(
            sent["id"],
            derived_event_id("log-events", 2, 41).to_string()
        );
        assert_eq!(sent["level"], "INFO");
        assert_eq!(sent["timestamp"], "2026-11-29T12:00:00.000000Z");
    }

    #[test]
    fn a_timestamp_of_the_event_is_kept() {
        let letter = letter(
            br#"{"level":"INFO","message":"m","source":"s","timestamp":"2026-11-28T00:00:00Z"}"#,
        );
        assert_eq!(
            body(&outgoing(&letter, None))["timestamp"],
            "2026-11-28T00:00:00Z"
        );
    }

    #[test]
    fn a_payload_that_is_not_an_object_goes_as_it_is() {
        for payload in [&b"not json"[..], &b"[1]"[..], &b""[..]] {
            assert_eq!(outgoing(&letter(payload), None).body, payload);
        }
    }

    #[test]
    fn producer_answers_by_status() {
        let refused = br#"{"status":400,"message":"validation failed: level unknown level 'LOUD'",
            "errors":[{"field":"level","message":"unknown level 'LOUD'"}]}"#;
        let answer = classify(400, refused, None);
        assert_eq!(answer.outcome, ReplayOutcome::Rejected);
        assert!(
            answer.detail.contains("unknown level 'LOUD'"),
            "{}",
            answer.detail
        );
        assert_eq!(answer.errors[0].field, "level");
        assert_eq!(
            classify(200, br#"{"status":"accepted","message":"ok"}"#, None).outcome,
            ReplayOutcome::Published
        );
        for status in [401, 403, 429, 500, 503] {
            let answer = classify(status, b"<html>", Some(3));
            assert_eq!(answer.outcome, ReplayOutcome::Failed, "{status}");
            assert_eq!(answer.retry_after_secs, Some(3));
        }
        assert_eq!(classify(413, b"{}", None).outcome, ReplayOutcome::Rejected);
    }
}
