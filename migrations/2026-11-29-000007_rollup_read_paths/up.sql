-- Rollups laid out for the reads, measured at 20M events over 7 days (BENCHMARKS.md),
-- where a scan of every key in a time range took 60-200 ms:
-- - the key leads with the level, so "every source of these hours" (level '', below)
--   is one range of the index;
-- - an index on (source, bucket) serves "one source" and "every source" ('') over a
--   time range: the histogram's rows and the per-level counts of /stats;
-- - rows per source over every level (level ''), so /stats counts sources from one row
--   per source and bucket instead of one per level.
ALTER TABLE log_rollup_minute DROP CONSTRAINT log_rollup_minute_pkey;
ALTER TABLE log_rollup_minute ADD PRIMARY KEY (level, bucket, source, kafka_partition);
CREATE INDEX log_rollup_minute_source_idx ON log_rollup_minute (source, bucket);
ALTER TABLE log_rollup_hour DROP CONSTRAINT log_rollup_hour_pkey;
ALTER TABLE log_rollup_hour ADD PRIMARY KEY (level, bucket, source, kafka_partition);
CREATE INDEX log_rollup_hour_source_idx ON log_rollup_hour (source, bucket);

INSERT INTO log_rollup_minute (bucket, level, source, kafka_partition, events)
SELECT bucket, '', source, kafka_partition, sum(events)
FROM log_rollup_minute WHERE level <> '' AND source <> ''
GROUP BY bucket, source, kafka_partition;
INSERT INTO log_rollup_hour (bucket, level, source, kafka_partition, events)
SELECT bucket, '', source, kafka_partition, sum(events)
FROM log_rollup_hour WHERE level <> '' AND source <> ''
GROUP BY bucket, source, kafka_partition;
