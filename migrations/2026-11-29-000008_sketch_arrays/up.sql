-- The duration sketch as an int8[] of key-count pairs by ascending key, instead of a
-- JSON object: read in PostgreSQL's binary form, a week of hourly sketches costs the
-- gateway next to nothing, where parsing them as JSON cost ~50 ms (BENCHMARKS.md).
-- Keys: k for the positive values in (g^(k-1), g^k]; 1e12 + k for the negative ones of
-- those magnitudes; 2e12 for zero (log-store/src/sketch.rs).

CREATE FUNCTION log_sketch_add(a int8[], b int8[]) RETURNS int8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN a IS NULL THEN b
        WHEN b IS NULL THEN a
        ELSE (SELECT coalesce(array_agg(v ORDER BY k, o), '{}')
              FROM (SELECT k, sum(n)::int8 AS n
                    FROM (SELECT a[i] AS k, a[i + 1] AS n FROM generate_series(1, cardinality(a), 2) AS i
                          UNION ALL
                          SELECT b[i], b[i + 1] FROM generate_series(1, cardinality(b), 2) AS i) AS both_sketches
                    GROUP BY k) AS summed,
                   LATERAL (VALUES (1, k), (2, n)) AS pair(o, v))
    END
$$;

CREATE AGGREGATE log_sketch_sum(int8[]) (SFUNC = log_sketch_add, STYPE = int8[]);

CREATE FUNCTION pg_temp.sketch_of(durations jsonb) RETURNS int8[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(v ORDER BY k, o), '{}')
    FROM (SELECT CASE WHEN key = 'z' THEN 2000000000000
                      WHEN key LIKE 'n%' THEN 1000000000000 + substr(key, 2)::int8
                      ELSE key::int8 END AS k,
                 value::int8 AS n
          FROM jsonb_each_text(durations)) AS pairs,
         LATERAL (VALUES (1, k), (2, n)) AS pair(o, v)
$$;

ALTER TABLE log_rollup_minute ADD COLUMN sketch int8[];
UPDATE log_rollup_minute SET sketch = pg_temp.sketch_of(durations) WHERE durations IS NOT NULL;
ALTER TABLE log_rollup_minute DROP COLUMN durations;
ALTER TABLE log_rollup_hour ADD COLUMN sketch int8[];
UPDATE log_rollup_hour SET sketch = pg_temp.sketch_of(durations) WHERE durations IS NOT NULL;
ALTER TABLE log_rollup_hour DROP COLUMN durations;

DROP AGGREGATE log_sketch_sum(jsonb);
DROP FUNCTION log_sketch_add(jsonb, jsonb);
DROP FUNCTION log_sketch_key(float8);
