-- Correlation lookups sort newest first like every other query. With the time in the
-- index, a lookup reads only its own rows, however common or rare the id; the old index
-- on the id alone let the planner walk the time index instead and, for an id with no
-- rows, read the whole table.
-- CONCURRENTLY: ingest keeps writing while the index builds (no transaction; one
-- statement per migration, hence the drop of the old index in the next one).
CREATE INDEX CONCURRENTLY IF NOT EXISTS log_events_correlation_timestamp_idx
    ON log_events (correlation_id, "timestamp" DESC, id DESC)
    WHERE correlation_id IS NOT NULL;
