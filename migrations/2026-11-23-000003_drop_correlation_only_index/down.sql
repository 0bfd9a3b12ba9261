CREATE INDEX CONCURRENTLY IF NOT EXISTS log_events_correlation_id_idx ON log_events (correlation_id) WHERE correlation_id IS NOT NULL;
