CREATE INDEX CONCURRENTLY IF NOT EXISTS log_events_level_timestamp_idx
    ON log_events (level, "timestamp" DESC, id DESC);
