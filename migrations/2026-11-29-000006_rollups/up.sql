-- Rollups for /stats and /histogram: events per minute and per hour, by level and
-- source, plus a sketch of metadata.duration, kept by the consumer in the same
-- transaction as the rows they count (log-store/src/rollups.rs), so a replay, which
-- inserts nothing, adds nothing, and a batch that rolls back takes them with it.
--
-- Key: (bucket, level, source, kafka_partition).
-- - source '' is the row for all sources (a real source is never empty): unfiltered
--   reads take one row per bucket and level instead of one per source. Level '' and
--   source '' is the bucket's total, and carries the duration sketch (only it does).
-- - kafka_partition: two writers own disjoint partitions, so they never update the
--   same row and never wait on each other. Readers sum over it. Once an hour is two
--   hours old the consumer folds its rows into one (kafka_partition -1), so long
--   windows read one row per key.
-- Partitioned by day like the events, and dropped with them (RETENTION_DAYS): the
-- rollups always describe exactly the rows that are kept.
--
-- The sketch (DDSketch, 1% relative accuracy): a JSON object from bucket key to count.
-- Key k (an integer, as text) holds positive values in (g^(k-1), g^k] with
-- g = 1.01/0.99; 'n<k>' the negative values of those magnitudes; 'z' values within
-- 1e-9 of zero.

CREATE FUNCTION log_sketch_add(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN a IS NULL THEN b
        WHEN b IS NULL THEN a
        ELSE (SELECT jsonb_object_agg(key, total)
              FROM (SELECT key, sum(value::bigint) AS total
                    FROM (SELECT * FROM jsonb_each_text(a)
                          UNION ALL SELECT * FROM jsonb_each_text(b)) AS both_sketches
                    GROUP BY key) AS summed)
    END
$$;

CREATE AGGREGATE log_sketch_sum(jsonb) (SFUNC = log_sketch_add, STYPE = jsonb);

-- The key of one value; the consumer computes the same in Rust (rollups.rs), this is
-- for the backfill below.
CREATE FUNCTION log_sketch_key(x float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN abs(x) <= 1e-9 THEN 'z'
        WHEN x > 0 THEN ceil(ln(x) / ln(1.01 / 0.99))::int::text
        ELSE 'n' || ceil(ln(-x) / ln(1.01 / 0.99))::int::text
    END
$$;

CREATE TABLE log_rollup_minute (
    bucket timestamptz NOT NULL,
    level varchar(5) NOT NULL,
    source varchar(100) NOT NULL,
    kafka_partition int NOT NULL,
    events bigint NOT NULL,
    durations jsonb,
    PRIMARY KEY (bucket, level, source, kafka_partition)
) PARTITION BY RANGE (bucket);

CREATE TABLE log_rollup_hour (
    bucket timestamptz NOT NULL,
    level varchar(5) NOT NULL,
    source varchar(100) NOT NULL,
    kafka_partition int NOT NULL,
    events bigint NOT NULL,
    durations jsonb,
    PRIMARY KEY (bucket, level, source, kafka_partition)
) PARTITION BY RANGE (bucket);

-- The per-partition rows still to fold: the fold finds them without reading the rows
-- already folded (the index holds only the rows not yet folded, so it stays small).
CREATE INDEX log_rollup_minute_unfolded_idx ON log_rollup_minute (bucket) WHERE kafka_partition >= 0;
CREATE INDEX log_rollup_hour_unfolded_idx ON log_rollup_hour (bucket) WHERE kafka_partition >= 0;

SELECT log_create_day_partition(t, day)
FROM (VALUES ('log_rollup_minute'), ('log_rollup_hour')) AS tables(t),
     (SELECT DISTINCT ("timestamp" AT TIME ZONE 'UTC')::date AS day FROM log_events
      UNION SELECT (now() AT TIME ZONE 'UTC')::date + d FROM generate_series(-1, 2) AS d) AS days;

-- The rows already stored, counted again from the rows themselves.
CREATE TEMPORARY TABLE stored ON COMMIT DROP AS
SELECT date_trunc('minute', "timestamp") AS minute, level, source, kafka_partition,
       count(*) AS events,
       CASE WHEN jsonb_typeof(metadata->'duration') = 'number'
            THEN log_sketch_key((metadata->>'duration')::float8) END AS sketch_key
FROM log_events
GROUP BY 1, 2, 3, 4, 6;

INSERT INTO log_rollup_minute (bucket, level, source, kafka_partition, events)
SELECT minute, level, source, -1, sum(events) FROM stored GROUP BY 1, 2, 3;
INSERT INTO log_rollup_minute (bucket, level, source, kafka_partition, events)
SELECT minute, level, '', -1, sum(events) FROM stored GROUP BY 1, 2;
INSERT INTO log_rollup_minute (bucket, level, source, kafka_partition, events, durations)
SELECT minute, '', '', -1, sum(events),
       coalesce(jsonb_object_agg(sketch_key, events) FILTER (WHERE sketch_key IS NOT NULL), '{}')
FROM (SELECT minute, sketch_key, sum(events) AS events FROM stored GROUP BY 1, 2) AS keyed
GROUP BY 1;
INSERT INTO log_rollup_hour (bucket, level, source, kafka_partition, events, durations)
SELECT date_trunc('hour', bucket), level, source, -1, sum(events), log_sketch_sum(durations)
FROM log_rollup_minute GROUP BY 1, 2, 3;

DROP TABLE log_counts_minute;
