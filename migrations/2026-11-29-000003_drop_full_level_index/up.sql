DROP INDEX CONCURRENTLY IF EXISTS log_events_level_timestamp_idx;
