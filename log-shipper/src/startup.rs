//! Wires the shipper: checkpoints, metrics endpoint, file watcher, the reader thread
//! and the sender task; runs until the shutdown future resolves.

use crate::checkpoint::Checkpoints;
use crate::metrics::{self, Metrics};
use crate::reader::{Channels, Reader};
use crate::sender::{Acked, Http, Sender};
use crate::settings::{Settings, Watch};
use anyhow::Context;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a stopping shipper keeps trying to deliver what it has read.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

pub struct Application {
    settings: Settings,
    host: String,
    checkpoints: Checkpoints,
    metrics: Metrics,
    metrics_listener: Option<tokio::net::TcpListener>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        anyhow::ensure!(
            settings.producer_url.starts_with("http://"),
            "--producer-url / SHIPPER_PRODUCER_URL must be an http:// URL (this build has no TLS; \
             put a TLS-terminating proxy beside the producer), got {}",
            settings.producer_url
        );
        let checkpoints = Checkpoints::load(&settings.state_dir)?;
        let metrics = Metrics::new()?;
        let metrics_listener = if settings.metrics_port == 0 {
            None
        } else {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.metrics_port))
                .await
                .with_context(|| {
                    format!(
                        "binding the metrics port {} (SHIPPER_METRICS_PORT)",
                        settings.metrics_port
                    )
                })?;
            tracing::info!(
                port = settings.metrics_port,
                "log-shipper metrics listening"
            );
            Some(listener)
        };
        let host = settings.host.clone().unwrap_or_else(hostname);
        Ok(Application {
            settings,
            host,
            checkpoints,
            metrics,
            metrics_listener,
        })
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            settings,
            host,
            checkpoints,
            metrics,
            metrics_listener,
        } = self;
        if let Some(listener) = metrics_listener {
            tokio::spawn(metrics::serve(listener, metrics.clone()));
        }
        let (out, batches) = mpsc::channel(settings.max_pending_batches as usize);
        let (wake_tx, wake) = std::sync::mpsc::sync_channel(1);
        let scan_requested = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let _watcher = match settings.watch {
            Watch::Notify => {
                crate::watch::start(&settings.paths, wake_tx.clone(), scan_requested.clone())
            }
            Watch::Poll => None,
        };
        let acked: Acked = Arc::default();
        let reader = Reader::new(
            &settings,
            host.clone(),
            checkpoints.entries().cloned().collect(),
            metrics.clone(),
            acked.clone(),
            Channels {
                out,
                wake,
                scan_requested,
                stop: stop.clone(),
            },
        )?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let http = Arc::new(Http {
            client,
            url: format!(
                "{}/producer/api/logs/bulk",
                settings.producer_url.trim_end_matches('/')
            ),
            compression: settings.compression,
            api_key: settings.api_key.clone(),
            metrics: metrics.clone(),
        });
        let sender = Sender {
            http,
            checkpoints,
            acked,
            max_inflight: settings.max_inflight_requests as usize,
        };
        tracing::info!(host, paths = ?settings.paths, url = %sender.http.url, "log-shipper started");

        let reader_thread = std::thread::Builder::new()
            .name("shipper-reader".to_owned())
            .spawn(move || reader.run())?;
        let (give_up_tx, give_up) = watch::channel(false);
        let mut sending = tokio::spawn(sender.run(batches, give_up));
        let progress = tokio::spawn(log_progress(metrics.clone()));

        tokio::select! {
            () = shutdown => {}
            _ = &mut sending => {
                tracing::error!("the sender stopped");
            }
        }
        // Stop reading, send what is complete, give up after the grace period.
        stop.store(true, Ordering::Relaxed);
        let _ = wake_tx.try_send(());
        if tokio::time::timeout(DRAIN_GRACE, &mut sending)
            .await
            .is_err()
        {
            let _ = give_up_tx.send(true);
            let _ = sending.await;
        }
        progress.abort();
        let _ = tokio::task::spawn_blocking(move || reader_thread.join()).await;
        tracing::info!(
            lines_read = metrics.lines_read.get(),
            events_sent = metrics.events_sent.get(),
            "log-shipper stopped"
        );
        Ok(())
    }
}

/// One line every 10 s while lines move: what was read and sent.
async fn log_progress(metrics: Metrics) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut last = (0, 0);
    loop {
        tick.tick().await;
        let now = (metrics.lines_read.get(), metrics.events_sent.get());
        if now != last {
            tracing::info!(
                lines_read = now.0,
                events_sent = now.1,
                retries = metrics.retries.with_label_values(&["connection"]).get()
                    + metrics.retries.with_label_values(&["unavailable"]).get()
                    + metrics.retries.with_label_values(&["rate_limited"]).get()
                    + metrics.retries.with_label_values(&["server_error"]).get(),
                "progress"
            );
            last = now;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
