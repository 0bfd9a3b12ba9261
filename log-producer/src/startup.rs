//! Builds the producer's app and runs it until shutdown.

use crate::admission::InflightBytes;
use crate::metrics::ProducerMetrics;
use crate::publisher::Publisher;
use crate::rate_limit::ClientRateLimiter;
use crate::routes::{self, IngestState};
use crate::settings::Settings;
use crate::syslog::SyslogListeners;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use log_common::auth::ApiKeys;
use log_common::error::{not_found, query_config};
use log_common::http::{observe, HttpMetrics};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct Application {
    port: u16,
    server: Server,
    publisher: Arc<Publisher>,
    syslog: SyslogListeners,
}

impl Application {
    /// Creates the Kafka producer and binds the listener (port 0 picks a free one).
    /// Nothing is served until [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let registry = log_common::http::new_registry();
        let http_metrics = HttpMetrics::register(&registry)?;
        let metrics = ProducerMetrics::register(&registry)?;
        let publisher = Arc::new(Publisher::new(
            &settings.kafka,
            &settings.producer,
            &settings.breaker,
            metrics.clone(),
        )?);
        publisher.purge_on_outage();
        let limiter = ClientRateLimiter::new(
            settings.rate_limit.events_per_second,
            settings.rate_limit.burst,
        )?;
        let api_keys = ApiKeys::load(&settings.auth)?;
        let inflight = web::Data::new(InflightBytes::new(&settings.admission, &metrics));
        let state = web::Data::new(IngestState {
            publisher: publisher.clone(),
            limiter,
            metrics,
            limit_by_api_key: api_keys.enabled(),
        });
        spawn_idle_client_sweeper(state.clone());
        let syslog = SyslogListeners::start(
            settings.syslog.tcp_addr.as_deref(),
            settings.syslog.udp_addr.as_deref(),
            state.clone(),
        )
        .await?;

        let listener = settings.http.listen(Settings::DEFAULT_PORT)?;
        let listener_address = listener.local_addr()?;
        let port = listener_address.port();
        let api_keys = web::Data::new(api_keys);
        let registry = web::Data::new(registry);
        let http_metrics = web::Data::new(http_metrics);
        let prometheus_enabled = settings.metrics.prometheus_enabled;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(observe))
                .app_data(state.clone())
                .app_data(api_keys.clone())
                .app_data(inflight.clone())
                .app_data(registry.clone())
                .app_data(http_metrics.clone())
                .app_data(query_config())
                .configure(|cfg| routes::configure(cfg, prometheus_enabled))
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        // Shutdown is ours to run (see `run_until_stopped`), so the Kafka queue is
        // flushed after the last request, not raced by actix's own signal handling.
        .disable_signals()
        .shutdown_timeout(30)
        .workers(settings.http.worker_count())
        .max_connections(settings.http.max_connections_per_worker());
        tracing::info!(address = %listener_address, port, "log-producer listening");
        Ok(Application {
            port,
            server: server.run(),
            publisher,
            syslog,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the syslog listeners listen (TCP, UDP), those that are on.
    pub fn syslog_addresses(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (self.syslog.tcp, self.syslog.udp)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests and syslog batches finish and flushes every queued event to Kafka.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        log_common::http::serve_until_stopped(self.server, shutdown).await?;
        self.syslog.stop().await;
        let publisher = self.publisher;
        tokio::task::spawn_blocking(move || publisher.flush(Duration::from_secs(15))).await?;
        tracing::info!("log-producer stopped");
        Ok(())
    }
}

/// The rate limiter keeps a bucket per client; drop the idle ones now and then.
fn spawn_idle_client_sweeper(state: web::Data<IngestState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            state.limiter.forget_idle_clients();
        }
    });
}
