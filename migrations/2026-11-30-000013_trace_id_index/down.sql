DROP INDEX IF EXISTS log_events_trace_timestamp_idx;
