CREATE FUNCTION log_sketch_key(x float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN abs(x) <= 1e-9 THEN 'z'
        WHEN x > 0 THEN ceil(ln(x) / ln(1.01 / 0.99))::int::text
        ELSE 'n' || ceil(ln(-x) / ln(1.01 / 0.99))::int::text
    END
$$;
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

CREATE FUNCTION pg_temp.durations_of(sketch int8[]) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT coalesce(jsonb_object_agg(
               CASE WHEN sketch[i] = 2000000000000 THEN 'z'
                    WHEN sketch[i] > 500000000000 THEN 'n' || (sketch[i] - 1000000000000)
                    ELSE sketch[i]::text END,
               sketch[i + 1]), '{}')
    FROM generate_series(1, cardinality(sketch), 2) AS i
$$;
ALTER TABLE log_rollup_minute ADD COLUMN durations jsonb;
UPDATE log_rollup_minute SET durations = pg_temp.durations_of(sketch) WHERE sketch IS NOT NULL;
ALTER TABLE log_rollup_minute DROP COLUMN sketch;
ALTER TABLE log_rollup_hour ADD COLUMN durations jsonb;
UPDATE log_rollup_hour SET durations = pg_temp.durations_of(sketch) WHERE sketch IS NOT NULL;
ALTER TABLE log_rollup_hour DROP COLUMN sketch;

DROP AGGREGATE log_sketch_sum(int8[]);
DROP FUNCTION log_sketch_add(int8[], int8[]);
