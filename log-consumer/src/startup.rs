//! Builds the consumer: migrations, Kafka consumer, pipeline task, HTTP server.

use crate::dead_letter::DeadLetters;
use crate::http::{self, HealthState, LaneHealth};
use crate::metrics::ConsumerMetrics;
use crate::pipeline::{LaneTopic, LogConsumer, Pipeline, PipelineStatus};
use crate::rebalance::{Assignment, Claimer, PipelineContext};
use crate::retry::Retry;
use crate::settings::Settings;
use crate::writer::Writer;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use log_common::domain::Lane;
use log_common::error::not_found;
use log_common::http::{observe, HttpMetrics};
use log_store::{Layout, Store, Upkeep};
use rdkafka::consumer::Consumer;
use rdkafka::ClientConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct Application {
    port: u16,
    store: Store,
    server: Server,
    /// One per lane: the normal topic's, then the priority topic's.
    pipelines: Vec<Pipeline>,
    upkeep: Upkeep,
    metrics: ConsumerMetrics,
    /// With the blocks layout, whether rows stored before move into blocks.
    move_rows: bool,
}

impl Application {
    /// Applies migrations (waiting for PostgreSQL), subscribes to both topics and
    /// binds the HTTP listener. Nothing is consumed until `run_until_stopped`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let registry = log_common::http::new_registry();
        let http_metrics = HttpMetrics::register(&registry)?;
        let metrics = ConsumerMetrics::register(&registry)?;
        let writer_count = settings.consumer.writer_count();
        // A connection per writer (the normal lane's and the priority lane's one), one
        // per lane's claimer and one for health.
        let mut postgres = settings.postgres.clone();
        postgres.pool_size = postgres.pool_size.max(writer_count as u32 + 4);
        let store = Store::new(
            &postgres,
            &settings.consumer.group_id,
            &settings.kafka.topic,
        )?
        .with_layout(settings.consumer.storage_layout);
        migrate_when_ready(&store).await?;

        metrics.writers.set(writer_count as i64 + 1);
        let status = Arc::new(PipelineStatus::default());
        let mut pipelines = Vec::new();
        let mut lanes = Vec::new();
        for lane in Lane::ALL {
            // The priority lane carries little, and what it carries is wanted now: one
            // writer of its own, so it never queues behind the normal lane's batches.
            let writers = match lane {
                Lane::Normal => writer_count,
                Lane::Priority => 1,
            };
            let topic = LaneTopic {
                lane,
                name: settings.kafka.topic_of(lane).to_owned(),
            };
            let pipeline = lane_pipeline(
                &settings,
                topic.clone(),
                writers,
                store.for_topic(&topic.name),
                metrics.clone(),
                status.clone(),
            )?;
            lanes.push(LaneHealth {
                topic,
                consumer: pipeline.consumer.clone(),
                assignment: pipeline.assignment.clone(),
            });
            pipelines.push(pipeline);
        }

        let upkeep = settings.consumer.upkeep();
        let store_for_retention = store.clone();
        let health = web::Data::new(HealthState {
            store,
            lanes,
            status,
            metrics: metrics.clone(),
        });
        let listener = settings.http.listen(Settings::DEFAULT_PORT)?;
        let listener_address = listener.local_addr()?;
        let port = listener_address.port();
        let registry = web::Data::new(registry);
        let http_metrics = web::Data::new(http_metrics);
        let prometheus_enabled = settings.metrics.prometheus_enabled;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(observe))
                .app_data(health.clone())
                .app_data(registry.clone())
                .app_data(http_metrics.clone())
                .configure(|cfg| http::configure(cfg, prometheus_enabled))
                .default_service(web::to(not_found))
        })
        .listen(listener)?
        .workers(1)
        .max_connections(settings.http.max_connections.max(1))
        .disable_signals()
        .run();
        tracing::info!(address = %listener_address, port, "log-consumer listening");
        Ok(Application {
            port,
            store: store_for_retention,
            server,
            pipelines,
            upkeep,
            metrics,
            move_rows: settings.consumer.move_rows_to_blocks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Consumes until `shutdown` resolves; then finishes and commits the batch in
    /// hand, leaves the consumer group and stops the HTTP server.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let consumers: Vec<_> = self.pipelines.iter().map(|p| p.consumer.clone()).collect();
        let store = self.store.clone();
        let mut pipelines = JoinSet::new();
        for pipeline in self.pipelines {
            pipelines.spawn(pipeline.run(stop_rx.clone()));
        }
        let compaction = (store.layout() == Layout::Blocks).then(|| {
            tokio::spawn(blocks_upkeep_loop(
                store.clone(),
                self.move_rows,
                self.metrics.clone(),
            ))
        });
        let upkeep = tokio::spawn(upkeep_loop(store, self.upkeep, self.metrics));
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);

        tokio::select! {
            () = shutdown => {}
            Some(result) = pipelines.join_next() => {
                result.context("pipeline task failed")?;
                anyhow::bail!("pipeline stopped unexpectedly");
            }
        }
        tracing::info!("draining: finishing the current batches");
        let _ = stop_tx.send(true);
        while let Some(result) = pipelines.join_next().await {
            result.context("pipeline task failed")?;
        }
        upkeep.abort();
        if let Some(compaction) = compaction {
            compaction.abort();
        }
        // Leave the group now so our partitions move at once, not after the session timeout.
        for consumer in consumers {
            consumer.unsubscribe();
        }
        handle.stop(true).await;
        server.await??;
        tracing::info!("log-consumer stopped");
        Ok(())
    }
}

/// One lane's Kafka consumer (subscribed to its topic, in the one consumer group), its
/// claimer and its writers.
fn lane_pipeline(
    settings: &Settings,
    topic: LaneTopic,
    writer_count: usize,
    store: Store,
    metrics: ConsumerMetrics,
    status: Arc<PipelineStatus>,
) -> anyhow::Result<Pipeline> {
    let assignment = Arc::new(Assignment::new(writer_count));
    let context = PipelineContext {
        assignment: assignment.clone(),
        metrics: metrics.clone(),
        topic: topic.clone(),
    };
    let consumer: LogConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.kafka.bootstrap_servers)
        .set("group.id", &settings.consumer.group_id)
        .set("client.id", format!("log-consumer-{}", topic.lane.as_str()))
        // PostgreSQL holds the offsets; Kafka's are a mirror we write ourselves.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            settings.consumer.session_timeout_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (settings.consumer.session_timeout_ms / 3)
                .max(500)
                .to_string(),
        )
        .set("max.poll.interval.ms", "600000")
        // Bounded prefetch: memory stays flat while the database is away. A few
        // batches' worth is all the writers can use; more only held decompressed
        // fetch buffers (heaptrack: 50 of an 86 MB peak heap with the defaults).
        .set("queued.max.messages.kbytes", "2048")
        .set("queued.min.messages", "5000")
        // Once those bounds are reached, librdkafka waits this long before fetching
        // that partition again (default 1 s): with bounds this low a drain then read
        // in bursts and left the writers idle three quarters of the time.
        .set("fetch.queue.backoff.ms", "20")
        .set("fetch.max.bytes", "4194304")
        .set("max.partition.fetch.bytes", "524288")
        .set("statistics.interval.ms", "5000")
        .create_with_context(context)
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[&topic.name])
        .with_context(|| format!("cannot subscribe to {}", topic.name))?;
    let consumer = Arc::new(consumer);

    let dead_letters = Arc::new(DeadLetters::new(
        &settings.kafka.bootstrap_servers,
        &settings.kafka.dlq_topic,
        &topic.name,
    )?);
    let writers = (0..writer_count)
        .map(|index| Writer {
            index,
            consumer: consumer.clone(),
            store: store.clone(),
            dead_letters: dead_letters.clone(),
            metrics: metrics.clone(),
            tuning: settings.consumer.clone(),
            topic: topic.clone(),
            assignment: assignment.clone(),
            status: status.clone(),
        })
        .collect();
    let claimer = Claimer {
        consumer: consumer.clone(),
        store,
        assignment: assignment.clone(),
        metrics: metrics.clone(),
        topic: topic.clone(),
    };
    Ok(Pipeline {
        consumer,
        metrics,
        tuning: settings.consumer.clone(),
        topic,
        unstored: Arc::default(),
        assignment,
        writers,
        claimer,
    })
}

async fn migrate_when_ready(store: &Store) -> anyhow::Result<()> {
    // About two minutes of patience: long enough for a database that starts with us.
    let mut retry = Retry::new(Duration::from_millis(250), Duration::from_secs(3));
    let mut attempt = 1;
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.run_migrations()).await? {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 40 => {
                tracing::warn!(error = %e, attempt, "PostgreSQL not ready for migrations; waiting");
                tokio::time::sleep(retry.next_delay()).await;
                attempt += 1;
            }
            Err(e) => return Err(e.context("PostgreSQL never became ready")),
        }
    }
}

/// How long a stream's small blocks wait for more before they are merged anyway (a
/// full block's worth is merged at once): a quiet source's blocks still end up merged,
/// a busy one's are merged once, not at every round on their way to a full block.
const COMPACTION_SETTLE: Duration = Duration::from_secs(30);

/// The blocks layout's background work, every few seconds: first the rows stored
/// before it moved into blocks, round after round until none is left (the gateway
/// reads both meanwhile), then compaction, rounds until no stream has small blocks
/// worth merging. Each round is one transaction; aborting the task between rounds
/// (shutdown) or a crash within one loses nothing (`log_store::blocks::migrate`,
/// `log_store::blocks::compact`).
async fn blocks_upkeep_loop(store: Store, move_rows: bool, metrics: ConsumerMetrics) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if move_rows {
            let metrics = metrics.clone();
            rounds_until_done(&store, "moving rows into blocks", move |store| {
                let moved = store.move_rows_once()?;
                metrics.rows_moved.inc_by(moved as u64);
                if moved > 0 {
                    tracing::info!(moved, "rows moved into blocks");
                }
                Ok(moved > 0)
            })
            .await;
        }
        let metrics = metrics.clone();
        rounds_until_done(&store, "compaction", move |store| {
            let report = store.compact_once(COMPACTION_SETTLE)?;
            metrics.blocks_compacted.inc_by(report.merged as u64);
            metrics.blocks_corrupt.inc_by(report.corrupt as u64);
            Ok(report.merged > 0)
        })
        .await;
    }
}

/// Runs `round` off the async threads until it has nothing more to do (`false`) or
/// fails (logged; the next tick tries again).
async fn rounds_until_done<F>(store: &Store, what: &'static str, round: F)
where
    F: Fn(&Store) -> Result<bool, log_store::error::StoreError> + Clone + Send + 'static,
{
    loop {
        let (store, round) = (store.clone(), round.clone());
        match tokio::task::spawn_blocking(move || round(&store)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => break,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "{what} round failed; next try in five seconds");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} task failed");
                break;
            }
        }
    }
}

/// Partition upkeep at start and every five minutes: days ahead created, the id
/// generation moved at midnight (UTC), the partitions past `RETENTION_DAYS` and the id
/// memory dropped whole, settled rollups folded, and dead-letter index entries past
/// `DEAD_LETTER_RETENTION_DAYS` deleted. Each round is a few catalog
/// lookups and index range scans when there is little to do.
async fn upkeep_loop(store: Store, upkeep: Upkeep, metrics: ConsumerMetrics) {
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tick.tick().await;
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.upkeep(&upkeep)).await {
            Ok(Ok(report)) => {
                metrics.partitions_created.inc_by(report.created as u64);
                metrics
                    .partitions_dropped
                    .inc_by(report.dropped.len() as u64);
                metrics.rollup_rows_folded.inc_by(report.folded as u64);
                if report.dead_letters_purged > 0 {
                    tracing::info!(
                        purged = report.dead_letters_purged,
                        dead_letter_retention_days = upkeep.dead_letter_retention_days,
                        "dead-letter index entries past retention deleted"
                    );
                }
                if !report.dropped.is_empty() {
                    tracing::info!(
                        dropped = ?report.dropped,
                        retention_days = upkeep.retention_days,
                        id_memory_days = upkeep.id_memory_days,
                        "partitions dropped"
                    );
                }
            }
            Ok(Err(e)) => {
                metrics.upkeep_failures.inc();
                tracing::warn!(error = %e, "partition upkeep failed; next try in five minutes");
            }
            Err(e) => {
                metrics.upkeep_failures.inc();
                tracing::warn!(error = %e, "partition upkeep task failed");
            }
        }
    }
}
