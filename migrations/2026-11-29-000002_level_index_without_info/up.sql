-- The level filter's index leaves INFO out. INFO is dense in every window of every real
-- system, so a page of INFO events is found as fast by walking the time index; indexing
-- it cost about 45% of this index's write cost for nothing (load-test/index-costs.sh,
-- BENCHMARKS.md). Every other level stays indexed: WARN/ERROR/FATAL are what people
-- filter on, and DEBUG/TRACE are often absent from a window, where a walk of the time
-- index would read the whole window to find nothing.
-- The planner uses it for `level = ANY('{ERROR,…}')` when no INFO is asked for.
CREATE INDEX CONCURRENTLY IF NOT EXISTS log_events_level_timestamp_not_info_idx
    ON log_events (level, "timestamp" DESC, id DESC)
    WHERE level <> 'INFO';
