-- A day grain above the minutes and hours: /stats over a week read 167 hour rows per
-- source (34,000 rows, ~33 ms at 20M events; BENCHMARKS.md); with days it reads 7.
-- Same columns and keys as the other rollups. Not partitioned: a day holds a few
-- thousand rows, so retention deletes them (the upkeep) for less than planning a
-- partition per bucket would cost every query.
CREATE TABLE log_rollup_day (
    bucket timestamptz NOT NULL,
    level varchar(5) NOT NULL,
    source varchar(100) NOT NULL,
    kafka_partition int NOT NULL,
    events bigint NOT NULL,
    sketch int8[],
    PRIMARY KEY (level, bucket, source, kafka_partition)
);
CREATE INDEX log_rollup_day_source_idx ON log_rollup_day (source, bucket);
CREATE INDEX log_rollup_day_unfolded_idx ON log_rollup_day (bucket) WHERE kafka_partition >= 0;

INSERT INTO log_rollup_day (bucket, level, source, kafka_partition, events, sketch)
SELECT date_trunc('day', bucket, 'UTC'), level, source, -1, sum(events), log_sketch_sum(sketch)
FROM log_rollup_hour
GROUP BY 1, 2, 3;
