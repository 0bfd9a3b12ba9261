DROP INDEX CONCURRENTLY IF EXISTS log_events_correlation_id_idx;
