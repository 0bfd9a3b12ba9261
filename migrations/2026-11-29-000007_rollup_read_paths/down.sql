DELETE FROM log_rollup_minute WHERE level = '' AND source <> '';
DELETE FROM log_rollup_hour WHERE level = '' AND source <> '';
DROP INDEX log_rollup_minute_source_idx;
DROP INDEX log_rollup_hour_source_idx;
ALTER TABLE log_rollup_minute DROP CONSTRAINT log_rollup_minute_pkey;
ALTER TABLE log_rollup_minute ADD PRIMARY KEY (bucket, level, source, kafka_partition);
ALTER TABLE log_rollup_hour DROP CONSTRAINT log_rollup_hour_pkey;
ALTER TABLE log_rollup_hour ADD PRIMARY KEY (bucket, level, source, kafka_partition);
