//! Redis cache-aside with bounded freshness.
//!
//! - Keys come from the validated, normalised query, so `level=warning` and
//!   `level=WARN` share an entry.
//! - Concurrent misses on one key run the query once (single flight); the others
//!   wait for its answer.
//! - Redis slow, down or broken never fails a request: after a timeout or an error
//!   the answer comes from PostgreSQL, and a breaker stops asking Redis for a while.

use crate::metrics::GatewayMetrics;
use deadpool_redis::redis::cmd;
use deadpool_redis::Pool;
use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};
use log_common::breaker::CircuitBreaker;
use log_common::error::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bump when a cached value's shape changes, so old entries are never misread.
const KEY_PREFIX: &str = "gateway:v1:";

type InFlight = Shared<oneshot::Receiver<Option<String>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSource {
    Cache,
    Database,
}

impl AnswerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerSource::Cache => "cache",
            AnswerSource::Database => "db",
        }
    }
}

pub struct Cache {
    pool: Option<Pool>,
    breaker: CircuitBreaker,
    timeout: Duration,
    metrics: GatewayMetrics,
    in_flight: Arc<Mutex<HashMap<String, InFlight>>>,
}

impl Cache {
    /// `pool` is None when caching is turned off.
    pub fn new(
        pool: Option<Pool>,
        breaker: CircuitBreaker,
        timeout: Duration,
        metrics: GatewayMetrics,
    ) -> Self {
        Cache {
            pool,
            breaker,
            timeout,
            metrics,
            in_flight: Arc::default(),
        }
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Is Redis answering? For the health check.
    pub async fn ping(&self) -> Result<(), String> {
        let Some(pool) = &self.pool else {
            return Err("cache disabled".to_owned());
        };
        let attempt = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// The cached answer for `key`, or `load`'s (stored for `ttl`).
    pub async fn get_or_load<T, F>(
        &self,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<(T, AnswerSource), ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: Future<Output = Result<T, ApiError>>,
    {
        if self.pool.is_none() {
            return Ok((load.await?, AnswerSource::Database));
        }
        let key = format!("{KEY_PREFIX}{key}");
        if let Some(value) = self
            .get(&key)
            .await
            .and_then(|json| serde_json::from_str(&json).ok())
        {
            return Ok((value, AnswerSource::Cache));
        }

        // Single flight: join a load already running for this key, or lead one.
        let joined = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match in_flight.get(&key) {
                Some(running) => Err(running.clone()),
                None => {
                    let (tx, rx) = oneshot::channel();
                    in_flight.insert(key.clone(), rx.shared());
                    Ok(tx)
                }
            }
        };
        let tx = match joined {
            Ok(tx) => tx,
            Err(running) => {
                // The leader failed or went away: load for ourselves.
                if let Ok(Some(json)) = running.await {
                    if let Ok(value) = serde_json::from_str(&json) {
                        return Ok((value, AnswerSource::Cache));
                    }
                }
                return Ok((load.await?, AnswerSource::Database));
            }
        };
        let _leader = LeaderGuard {
            key: key.clone(),
            in_flight: self.in_flight.clone(),
        };
        let loaded = load.await;
        let json = loaded
            .as_ref()
            .ok()
            .and_then(|v| serde_json::to_string(v).ok());
        let _ = tx.send(json.clone());
        if let Some(json) = json {
            self.set(&key, &json, ttl).await;
        }
        Ok((loaded?, AnswerSource::Database))
    }

    async fn get(&self, key: &str) -> Option<String> {
        let pool = self.pool.as_ref()?;
        if !self.breaker.permits() {
            self.metrics.cache_gets.with_label_values(&["miss"]).inc();
            return None;
        }
        let attempt = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => {
                self.breaker.record_success();
                let result = if value.is_some() { "hit" } else { "miss" };
                self.metrics.cache_gets.with_label_values(&[result]).inc();
                value
            }
            Ok(Err(e)) => self.failed(&e),
            Err(_) => self.failed("timed out"),
        }
    }

    async fn set(&self, key: &str, json: &str, ttl: Duration) {
        let Some(pool) = &self.pool else { return };
        if !self.breaker.permits() {
            return;
        }
        let attempt = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            cmd("SET")
                .arg(key)
                .arg(json)
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(())) => self.breaker.record_success(),
            Ok(Err(e)) => {
                self.failed(&e);
            }
            Err(_) => {
                self.failed("timed out");
            }
        }
    }

    fn failed(&self, error: &str) -> Option<String> {
        self.breaker.record_failure();
        self.metrics.cache_gets.with_label_values(&["error"]).inc();
        self.metrics.cache_gets.with_label_values(&["miss"]).inc();
        tracing::warn!(error, "Redis unavailable; answering from PostgreSQL");
        None
    }
}

/// Removes the leader's entry when it finishes or is dropped mid-way (client gone).
struct LeaderGuard {
    key: String,
    in_flight: Arc<Mutex<HashMap<String, InFlight>>>,
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight.remove(&self.key);
    }
}
