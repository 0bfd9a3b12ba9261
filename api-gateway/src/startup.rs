//! Builds the gateway: PostgreSQL and Redis pools, breakers, the app, shutdown.

use crate::cache::Cache;
use crate::dead_letters::{refresh_gauges_until, DeadLetterAdmin};
use crate::metrics::GatewayMetrics;
use crate::routes;
use crate::service::QueryService;
use crate::settings::Settings;
use crate::tail::Tails;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use log_common::auth::ApiKeys;
use log_common::breaker::CircuitBreaker;
use log_common::error::{not_found, path_config, query_config};
use log_common::http::{observe, HttpMetrics};
use log_store::QuerySession;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

pub struct Application {
    port: u16,
    server: Server,
    /// Turned true at shutdown: ends every tail stream, which would otherwise keep
    /// the drain waiting.
    closing: watch::Sender<bool>,
}

impl Application {
    /// Creates the pools (without connecting: the gateway starts, and reports its
    /// health, while a dependency is still down) and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let registry = log_common::http::new_registry();
        let http_metrics = HttpMetrics::register(&registry)?;
        let metrics = GatewayMetrics::register(&registry)?;

        // Every query sets its class's limit in its transaction; this one is the
        // ceiling for anything that would not.
        let limits = &settings.limits;
        let ceiling = [
            limits.lookup_ms,
            limits.page_ms,
            limits.search_ms,
            limits.aggregate_ms,
        ]
        .into_iter()
        .max()
        .unwrap_or(limits.search_ms);
        let pg_pool = log_store::pool::build(
            &settings.postgres,
            Some(Box::new(QuerySession {
                statement_timeout: Duration::from_millis(ceiling),
            })),
        )?;
        let pg_breaker = CircuitBreaker::new(
            "postgres",
            3,
            Duration::from_secs(2),
            Duration::from_secs(15),
            metrics.breaker_state.clone(),
        );

        let redis_pool = if settings.cache.enabled {
            let url = format!("redis://{}:{}", settings.redis.host, settings.redis.port);
            let mut config = deadpool_redis::Config::from_url(url);
            let timeout = Duration::from_millis(settings.redis.timeout_ms);
            let mut pool_config = deadpool_redis::PoolConfig::new(16);
            pool_config.timeouts.wait = Some(timeout);
            pool_config.timeouts.create = Some(timeout);
            pool_config.timeouts.recycle = Some(timeout);
            config.pool = Some(pool_config);
            Some(
                config
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .context("invalid Redis settings (REDIS_HOST, REDIS_PORT)")?,
            )
        } else {
            None
        };
        let redis_breaker = CircuitBreaker::new(
            "redis",
            3,
            Duration::from_secs(5),
            Duration::from_secs(30),
            metrics.breaker_state.clone(),
        );
        let cache = Cache::new(
            redis_pool,
            redis_breaker,
            Duration::from_millis(settings.redis.timeout_ms),
            metrics.clone(),
            &database_name(&settings.postgres.url),
        );

        let dead_letters = DeadLetterAdmin::new(
            pg_pool.clone(),
            pg_breaker.clone(),
            settings.limits.clone(),
            metrics.clone(),
            &settings.replay.producer_url,
        )?;
        let service = QueryService {
            pool: pg_pool,
            breaker: pg_breaker,
            limits: settings.limits.clone(),
            cache,
            cache_settings: settings.cache.clone(),
            metrics: metrics.clone(),
        };
        let (closing, closing_seen) = watch::channel(false);
        let tails = web::Data::new(Tails::new(
            settings.tail.clone(),
            closing_seen,
            metrics,
            service.clone(),
        ));
        // The dead-letter gauges, read from the index every 15 s until shutdown.
        tokio::spawn(refresh_gauges_until(
            dead_letters.clone(),
            closing.subscribe(),
        ));
        let dead_letters = web::Data::new(dead_letters);
        let state = web::Data::new(service);
        let listener = settings.http.listen(Settings::DEFAULT_PORT)?;
        let listener_address = listener.local_addr()?;
        let port = listener_address.port();
        let api_keys = ApiKeys::load(&settings.auth)?;
        let api_keys = web::Data::new(api_keys);
        let registry = web::Data::new(registry);
        let http_metrics = web::Data::new(http_metrics);
        let prometheus_enabled = settings.metrics.prometheus_enabled;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(observe))
                .app_data(state.clone())
                .app_data(tails.clone())
                .app_data(dead_letters.clone())
                .app_data(api_keys.clone())
                .app_data(registry.clone())
                .app_data(http_metrics.clone())
                .app_data(query_config())
                .app_data(path_config())
                .configure(|cfg| routes::configure(cfg, prometheus_enabled))
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(30)
        .workers(settings.http.worker_count())
        .max_connections(settings.http.max_connections_per_worker());
        tracing::info!(address = %listener_address, port, "api-gateway listening");
        Ok(Application {
            port,
            server: server.run(),
            closing,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight
    /// queries finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let closing = self.closing;
        let shutdown = async move {
            shutdown.await;
            let _ = closing.send(true);
        };
        log_common::http::serve_until_stopped(self.server, shutdown).await?;
        tracing::info!("api-gateway stopped");
        Ok(())
    }
}

/// The database a `POSTGRES_URL` names (the last path segment, without parameters).
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or_default();
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::database_name;

    #[test]
    fn the_database_is_the_last_segment_of_the_url() {
        assert_eq!(
            database_name("postgres://127.0.0.1:5432/logprocessor"),
            "logprocessor"
        );
        assert_eq!(
            database_name("jdbc:postgresql://db:5432/logs?sslmode=disable"),
            "logs"
        );
    }
}
