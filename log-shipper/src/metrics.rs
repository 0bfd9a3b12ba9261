//! Prometheus metrics, and the small HTTP endpoint that serves them on 127.0.0.1.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Lines read from files (a stack trace's lines count one each).
    pub lines_read: IntCounter,
    /// Bytes read from files.
    pub bytes_read: IntCounter,
    /// Events the producer acknowledged with a 2xx.
    pub events_sent: IntCounter,
    /// Request bytes sent (compressed, as on the wire), acknowledged requests only.
    pub bytes_sent: IntCounter,
    /// Requests sent again, by reason: `rate_limited` (429), `unavailable` (503),
    /// `server_error` (other 5xx), `connection`, `partial` (some events not delivered),
    /// `rejected` (another 4xx: misconfiguration, e.g. a wrong API key).
    pub retries: IntCounterVec,
    /// Events the producer refused as invalid (never sent again).
    pub events_rejected: IntCounter,
    /// Lines cut at 32 KiB.
    pub lines_truncated: IntCounter,
    /// Per file: its size minus the acknowledged offset.
    pub file_lag_bytes: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> anyhow::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let metrics = Metrics {
            lines_read: counter("shipper_lines_read_total", "Lines read from files")?,
            bytes_read: counter("shipper_bytes_read_total", "Bytes read from files")?,
            events_sent: counter(
                "shipper_events_sent_total",
                "Events acknowledged by the producer",
            )?,
            bytes_sent: counter(
                "shipper_bytes_sent_total",
                "Request bytes acknowledged (compressed)",
            )?,
            events_rejected: counter(
                "shipper_events_rejected_total",
                "Events the producer refused as invalid",
            )?,
            lines_truncated: counter("shipper_lines_truncated_total", "Lines cut at 32 KiB")?,
            retries: IntCounterVec::new(
                Opts::new("shipper_retries_total", "Requests sent again, by reason"),
                &["reason"],
            )?,
            file_lag_bytes: IntGaugeVec::new(
                Opts::new(
                    "shipper_file_lag_bytes",
                    "File size minus the offset the producer acknowledged",
                ),
                &["path"],
            )?,
            registry: registry.clone(),
        };
        registry.register(Box::new(metrics.retries.clone()))?;
        registry.register(Box::new(metrics.file_lag_bytes.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Serves the metrics to any GET on `listener` (Prometheus text format).
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            // The request itself does not matter; read it so the client sees an answer.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut request))
                    .await;
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
