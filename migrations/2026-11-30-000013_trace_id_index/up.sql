-- Trace id lookups (`traceId=`, the id OpenTelemetry agents send) read like correlation
-- id lookups: newest first, only the id's own rows, however common or rare the id.
-- Partial: most events carry no trace id, and those rows cost this index nothing.
-- Created on the partitioned parent, like the other indexes since `partition_by_day`:
-- PostgreSQL builds it on every day partition and on each one created later.
CREATE INDEX IF NOT EXISTS log_events_trace_timestamp_idx
    ON log_events (trace_id, "timestamp" DESC, id DESC)
    WHERE trace_id IS NOT NULL;
