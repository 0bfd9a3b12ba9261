//! Redis cache-aside with bounded freshness.
//!
//! - Keys come from the validated, normalised query, so `level=warning` and
//!   `level=WARN` share an entry; they are namespaced by the database they were
//!   read from, so two gateways over two databases never answer from each other's.
//! - Concurrent misses on one key run the query once (single flight, moka's
//!   coalescing loader); the others wait for its answer.
//! - Stale while revalidate: an entry lives its whole TTL in Redis but is fresh only
//!   for the first half. A read in the second half gets it at once and reloads it in
//!   the background (once, however many read it), so a key in steady use is renewed
//!   before it expires and no reader waits for PostgreSQL; no answer is ever older
//!   than the TTL.
//! - Redis slow, down or broken never fails a request: after a timeout or an error
//!   the answer comes from PostgreSQL, and a breaker stops asking Redis for a while.

use crate::metrics::GatewayMetrics;
use deadpool_redis::redis::cmd;
use deadpool_redis::Pool;
use log_common::breaker::CircuitBreaker;
use log_common::error::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Bump when a cached value's shape changes, so old entries are never misread.
const KEY_PREFIX: &str = "gateway:v2:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSource {
    Cache,
    /// From the cache, past its fresh half; a reload is under way.
    Stale,
    Database,
}

impl AnswerSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerSource::Cache => "cache",
            AnswerSource::Stale => "stale",
            AnswerSource::Database => "db",
        }
    }
}

/// What a key holds in Redis: the answer, and until when (ms since the epoch) it is
/// fresh.
#[derive(Serialize, serde::Deserialize)]
struct Stored<T> {
    fresh_until_ms: i64,
    value: T,
}

impl<T: Serialize> Stored<T> {
    fn json(value: &T, ttl: Duration) -> Result<String, ApiError> {
        let fresh_for = i64::try_from(ttl.as_millis() / 2).unwrap_or(i64::MAX);
        serde_json::to_string(&Stored {
            fresh_until_ms: chrono::Utc::now()
                .timestamp_millis()
                .saturating_add(fresh_for),
            value,
        })
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))
    }
}

/// Cheap to clone (every part is shared), so a reload can run on its own task.
#[derive(Clone)]
pub struct Cache {
    pool: Option<Pool>,
    breaker: CircuitBreaker,
    timeout: Duration,
    metrics: GatewayMetrics,
    /// `gateway:v1:<database>:`, prefixed to every key.
    prefix: String,
    /// Loads in flight, by key: an entry lives only while its load runs (it is
    /// removed as soon as the leader has its answer), so this is never a second cache.
    in_flight: moka::future::Cache<String, String>,
}

impl Cache {
    /// `pool` is None when caching is turned off. `namespace` names the data the
    /// answers come from (the database).
    pub fn new(
        pool: Option<Pool>,
        breaker: CircuitBreaker,
        timeout: Duration,
        metrics: GatewayMetrics,
        namespace: &str,
    ) -> Self {
        Cache {
            pool,
            breaker,
            timeout,
            metrics,
            prefix: format!("{KEY_PREFIX}{namespace}:"),
            // The TTL only bounds an entry whose removal was missed (a leader
            // cancelled between insert and removal): never stale for longer.
            in_flight: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.pool.is_some()
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

    /// The cached answer for `key`, or `load`'s (kept for `ttl`, fresh for half of
    /// it). `load` is only run when the entry is missing or past its fresh half; in
    /// the second case on a task of its own while the reader gets the entry.
    pub async fn get_or_load<T, F>(
        &self,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<(T, AnswerSource), ApiError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        if self.pool.is_none() {
            return Ok((load.await?, AnswerSource::Database));
        }
        let key = format!("{}{key}", self.prefix);
        if let Some(stored) = self
            .get(&key)
            .await
            .and_then(|json| serde_json::from_str::<Stored<T>>(&json).ok())
        {
            if chrono::Utc::now().timestamp_millis() < stored.fresh_until_ms {
                self.metrics.cache_gets.with_label_values(&["hit"]).inc();
                return Ok((stored.value, AnswerSource::Cache));
            }
            self.metrics.cache_gets.with_label_values(&["stale"]).inc();
            self.reload_in_background(key, ttl, load);
            return Ok((stored.value, AnswerSource::Stale));
        }

        // Single flight: the first miss runs `load` and stores its answer in Redis;
        // misses on the same key meanwhile wait for that answer instead of querying.
        let mut loaded = None;
        let flight = self
            .in_flight
            .entry_by_ref(&key)
            .or_try_insert_with(async {
                let value = load.await?;
                let json = Stored::json(&value, ttl)?;
                self.set(&key, &json, ttl).await;
                loaded = Some(value);
                Ok::<_, ApiError>(json)
            })
            .await;
        match flight {
            Ok(entry) if entry.is_fresh() => {
                self.in_flight.invalidate(&key).await;
                match loaded {
                    Some(value) => Ok((value, AnswerSource::Database)),
                    None => Err(ApiError::Internal(anyhow::anyhow!("loaded value missing"))),
                }
            }
            Ok(entry) => serde_json::from_str::<Stored<T>>(entry.value())
                .map(|stored| (stored.value, AnswerSource::Cache))
                .map_err(|e| ApiError::Internal(anyhow::Error::new(e))),
            // Every request that waited on a failed load gets its error.
            Err(shared) => Err(Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.replay())),
        }
    }

    /// Runs `load` and stores its answer, on a task of its own, unless a load of
    /// `key` is in flight already (then that one's answer is what gets stored). A
    /// failed reload leaves the entry to expire; the next reader then loads it.
    fn reload_in_background<T, F>(&self, key: String, ttl: Duration, load: F)
    where
        T: Serialize + Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let cache = self.clone();
        tokio::spawn(async move {
            let flight = cache
                .in_flight
                .entry_by_ref(&key)
                .or_try_insert_with(async {
                    let json = Stored::json(&load.await?, ttl)?;
                    cache.set(&key, &json, ttl).await;
                    Ok::<_, ApiError>(json)
                })
                .await;
            match flight {
                Ok(entry) if entry.is_fresh() => {
                    cache.in_flight.invalidate(&key).await;
                    cache.metrics.cache_reloads.with_label_values(&["ok"]).inc();
                }
                Ok(_) => {}
                Err(e) => {
                    cache
                        .metrics
                        .cache_reloads
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::warn!(error = %e, "reloading a stale cache entry failed");
                }
            }
        });
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
                // A hit is counted by the caller, which knows whether it is fresh.
                if value.is_none() {
                    self.metrics.cache_gets.with_label_values(&["miss"]).inc();
                }
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
