//! The consumer's Prometheus metrics (names from the seed where it has one).

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone)]
pub struct ConsumerMetrics {
    /// `kafka_messages_consumed_total`: messages taken off Kafka.
    pub consumed: IntCounter,
    /// `kafka_consumption_errors_total{kind}`: poll errors, poison messages, failed writes.
    pub errors: IntCounterVec,
    /// `log_processing_duration_seconds`: one batch, from first record to commit.
    pub processing: Histogram,
    /// `db_write_duration_seconds`: the batch transaction alone.
    pub db_write: Histogram,
    /// `consumer_batch_size`: records per batch.
    pub batch_size: Histogram,
    /// `log_events_stored_total`: rows inserted.
    pub rows_written: IntCounter,
    /// `log_events_duplicates_total`: rows skipped because the id was already stored.
    pub duplicates: IntCounter,
    /// `dead_letter_messages_total`: messages sent to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// `db_write_retries_total`: transient failures retried.
    pub retries: IntCounter,
    /// `kafka_consumer_lag{topic,partition}`: from librdkafka's statistics.
    pub lag: IntGaugeVec,
    /// `kafka_consumer_assigned_partitions{topic}`.
    pub assigned: IntGaugeVec,
    /// `log_consumer_oldest_unstored_seconds{topic}`: how long the oldest record read
    /// from the topic has waited to be stored (see [`crate::pipeline::Unstored`]).
    pub oldest_unstored: GaugeVec,
    /// `log_pipeline_latency_seconds`: from a record's Kafka timestamp (when the
    /// producer wrote it) to the commit of its row: how stale the stored data is.
    pub pipeline_latency: Histogram,
    /// `consumer_fenced_batches_total`: batches refused because another owner had
    /// claimed one of their partitions since (a rebalance raced the write).
    pub fenced_batches: IntCounter,
    /// `consumer_writers`: parallel writers this instance runs.
    pub writers: IntGauge,
    /// Partition upkeep: partitions created and dropped, rollup rows folded, rounds
    /// that failed (retried five minutes later).
    pub partitions_created: IntCounter,
    pub partitions_dropped: IntCounter,
    pub rollup_rows_folded: IntCounter,
    pub upkeep_failures: IntCounter,
    /// Compaction (`STORAGE_LAYOUT=blocks`): small blocks merged away, and blocks
    /// found damaged (left as they are).
    pub blocks_compacted: IntCounter,
    pub blocks_corrupt: IntCounter,
    pub rows_moved: IntCounter,
}

impl ConsumerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let seconds = || {
            vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]
        };
        let m = ConsumerMetrics {
            consumed: IntCounter::new(
                "kafka_messages_consumed_total",
                "Messages consumed from Kafka",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "kafka_consumption_errors_total",
                    "Consumption errors, by kind",
                ),
                &["kind"],
            )?,
            processing: Histogram::with_opts(
                HistogramOpts::new(
                    "log_processing_duration_seconds",
                    "Batch time from first record to commit",
                )
                .buckets(seconds()),
            )?,
            db_write: Histogram::with_opts(
                HistogramOpts::new("db_write_duration_seconds", "Batch transaction duration")
                    .buckets(seconds()),
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new("consumer_batch_size", "Records per batch").buckets(vec![
                    1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                ]),
            )?,
            rows_written: IntCounter::new(
                "log_events_stored_total",
                "Rows inserted into log_events",
            )?,
            duplicates: IntCounter::new(
                "log_events_duplicates_total",
                "Events skipped: id already stored",
            )?,
            dead_letters: IntCounter::new(
                "dead_letter_messages_total",
                "Messages sent to the dead-letter topic",
            )?,
            retries: IntCounter::new(
                "db_write_retries_total",
                "Batch writes retried after a transient failure",
            )?,
            lag: IntGaugeVec::new(
                Opts::new("kafka_consumer_lag", "Messages behind the log end"),
                &["topic", "partition"],
            )?,
            assigned: IntGaugeVec::new(
                Opts::new(
                    "kafka_consumer_assigned_partitions",
                    "Partitions this instance owns",
                ),
                &["topic"],
            )?,
            oldest_unstored: GaugeVec::new(
                Opts::new(
                    "log_consumer_oldest_unstored_seconds",
                    "Age (from its Kafka time) of the oldest record read and not yet stored; 0 when none waits",
                ),
                &["topic"],
            )?,
            pipeline_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "log_pipeline_latency_seconds",
                    "From the Kafka record timestamp to the commit of its row",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            )?,
            fenced_batches: IntCounter::new(
                "consumer_fenced_batches_total",
                "Batches dropped uncommitted: a newer owner claimed one of their partitions",
            )?,
            writers: IntGauge::new("consumer_writers", "Parallel writers in this instance")?,
            partitions_created: IntCounter::new(
                "log_partitions_created_total",
                "Day partitions created ahead by the upkeep",
            )?,
            partitions_dropped: IntCounter::new(
                "log_partitions_dropped_total",
                "Day partitions dropped by retention or the id memory",
            )?,
            rollup_rows_folded: IntCounter::new(
                "log_rollup_rows_folded_total",
                "Per-partition rollup rows folded into one a key",
            )?,
            blocks_compacted: IntCounter::new(
                "log_blocks_compacted_total",
                "Small event blocks merged into larger ones by compaction",
            )?,
            blocks_corrupt: IntCounter::new(
                "log_blocks_corrupt_total",
                "Event blocks that did not decode, left as they are by compaction",
            )?,
            rows_moved: IntCounter::new(
                "log_rows_moved_to_blocks_total",
                "Rows stored before the blocks layout, moved into blocks",
            )?,
            upkeep_failures: IntCounter::new(
                "log_partition_upkeep_failures_total",
                "Upkeep rounds that failed (retried five minutes later)",
            )?,
        };
        // Known kinds start at 0, so the series exist before the first error.
        for kind in ["poll", "poison", "db_transient"] {
            m.errors.with_label_values(&[kind]);
        }
        registry.register(Box::new(m.consumed.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.processing.clone()))?;
        registry.register(Box::new(m.db_write.clone()))?;
        registry.register(Box::new(m.batch_size.clone()))?;
        registry.register(Box::new(m.rows_written.clone()))?;
        registry.register(Box::new(m.duplicates.clone()))?;
        registry.register(Box::new(m.dead_letters.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.assigned.clone()))?;
        registry.register(Box::new(m.oldest_unstored.clone()))?;
        registry.register(Box::new(m.pipeline_latency.clone()))?;
        registry.register(Box::new(m.fenced_batches.clone()))?;
        registry.register(Box::new(m.writers.clone()))?;
        registry.register(Box::new(m.partitions_created.clone()))?;
        registry.register(Box::new(m.partitions_dropped.clone()))?;
        registry.register(Box::new(m.rollup_rows_folded.clone()))?;
        registry.register(Box::new(m.blocks_compacted.clone()))?;
        registry.register(Box::new(m.blocks_corrupt.clone()))?;
        registry.register(Box::new(m.rows_moved.clone()))?;
        registry.register(Box::new(m.upkeep_failures.clone()))?;
        Ok(m)
    }
}
