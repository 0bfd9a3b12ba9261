#!/usr/bin/env bash
# What each piece of the log_events schema costs a write: PostgreSQL CPU time and WAL
# bytes per row, one shape at a time, on rows shaped like real logs.
#
# Works only in a scratch schema of its own (bench_index_costs, dropped at the end):
# log_events and everything else stay untouched. Each shape gets a fresh table, filled
# with INSERT … SELECT in transactions of 5,000 rows (the consumer's batch), from a
# staging table generated once, so what is timed is the insert path alone (plus the
# flush of any GIN pending list, which is work the insert only postponed).
#   ./load-test/index-costs.sh [rows=200000] [only shapes whose name contains this]
set -euo pipefail
rows=${1:-200000}
only=${2:-}
export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
psql_() { psql -h 127.0.0.1 -U "${POSTGRES_USERNAME:-loguser}" -d logprocessor -v ON_ERROR_STOP=1 -qAtX "$@"; }
trap 'psql_ -c "DROP SCHEMA IF EXISTS bench_index_costs CASCADE" >/dev/null 2>&1 || true' EXIT

echo "generating $rows log-like rows (skewed levels and sources, mixed vocabulary)"
psql_ <<SQL
DROP SCHEMA IF EXISTS bench_index_costs CASCADE;
CREATE SCHEMA bench_index_costs;
SET search_path = bench_index_costs;
CREATE TABLE staged AS
SELECT g,
       gen_random_uuid() AS id,
       -- INFO ~45%, DEBUG ~25%, WARN ~15%, ERROR ~12%, FATAL/TRACE the rest
       CASE WHEN r < 0.45 THEN 'INFO' WHEN r < 0.70 THEN 'DEBUG' WHEN r < 0.85 THEN 'WARN'
            WHEN r < 0.97 THEN 'ERROR' WHEN r < 0.99 THEN 'TRACE' ELSE 'FATAL' END AS level,
       (ARRAY['GET','POST','PUT','DELETE'])[1 + g % 4] || ' /api/v2/' ||
       (ARRAY['orders','payments','users','carts','inventory','shipments'])[1 + (g * 7) % 6] || '/' || (g % 100000) ||
       (ARRAY[' handled in ',' failed after ',' timed out after ',' retried after '])[1 + (g * 13) % 4] ||
       (g % 997) || ' ms; upstream db-' || (g % 12) || '.eu-west-1.internal:5432 user ' ||
       (ARRAY['alice@example.com','bob','carol-smith','dave_o','émile','zoë'])[1 + (g * 3) % 6] ||
       ' trace ' || md5(g::text) AS message,
       -- Zipf-like sources: a few write most lines
       'service-' || floor(200 * power(random(), 3))::int AS source,
       -- arrival order, as the consumer writes them (a few seconds of jitter for late events)
       now() - interval '7 days' + g * (interval '7 days' / $rows) - random() * interval '5 seconds' AS ts,
       jsonb_build_object('duration', g % 997, 'status', (ARRAY[200,201,404,500])[1 + g % 4]) AS metadata,
       CASE WHEN g % 3 = 0 THEN 'corr-' || (g / 4) END AS correlation_id
FROM (SELECT g, random() AS r FROM generate_series(1, $rows) AS g) s;
-- The vector as text, for the shapes that are handed a vector parsed elsewhere (the
-- consumer): what they pay is the cast from text, not the parse.
ALTER TABLE staged ADD COLUMN tsv_text text;
UPDATE staged SET tsv_text = to_tsvector('english', message)::text;
CREATE INDEX ON staged (g);
ANALYZE staged;
SQL
echo "sample message: $(psql_ -c "SET search_path = bench_index_costs; SELECT message FROM staged LIMIT 1")"

base_columns='id uuid NOT NULL, level varchar(5) NOT NULL, message text NOT NULL, source varchar(100) NOT NULL,
  "timestamp" timestamptz NOT NULL, metadata jsonb, correlation_id varchar(128), request_id varchar(128),
  trace_id varchar(128), kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()'
stored_tsv=', search_vector tsvector GENERATED ALWAYS AS (to_tsvector('"'english'"', message)) STORED'
given_tsv=', search_vector tsvector'
kept_indexes="ALTER TABLE t ADD PRIMARY KEY (id); CREATE INDEX ON t (\"timestamp\" DESC, id DESC); CREATE INDEX ON t (level, \"timestamp\" DESC, id DESC) WHERE level <> 'INFO'; CREATE INDEX ON t (source, \"timestamp\" DESC, id DESC); CREATE INDEX ON t (correlation_id, \"timestamp\" DESC, id DESC) WHERE correlation_id IS NOT NULL; CREATE INDEX ON t USING gin (search_vector)"

# The schema of today: partitioned by day (the rows span 7 days), the unique time index
# instead of a primary key, an id index per partition.
day_partitions="DO \$\$ BEGIN FOR d IN -8..1 LOOP EXECUTE format('CREATE TABLE %I PARTITION OF t FOR VALUES FROM (%L) TO (%L)', format('t_p%s', d + 8), date_trunc('day', now()) + d * interval '1 day', date_trunc('day', now()) + (d + 1) * interval '1 day'); END LOOP; END \$\$"
partitioned_indexes="$day_partitions; CREATE UNIQUE INDEX ON t (\"timestamp\" DESC, id DESC); CREATE INDEX ON t (id); CREATE INDEX ON t (level, \"timestamp\" DESC, id DESC) WHERE level <> 'INFO'; CREATE INDEX ON t (source, \"timestamp\" DESC, id DESC); CREATE INDEX ON t (correlation_id, \"timestamp\" DESC, id DESC) WHERE correlation_id IS NOT NULL; CREATE INDEX ON t USING gin (search_vector)"

# name | extra columns | DDL after CREATE TABLE (table is t) | what follows the column
# list (PARTITION BY …); a name starting with "given" fills search_vector from the
# precomputed text instead of letting PostgreSQL parse
shapes=(
  "heap only||"
  "+ primary key (id)||ALTER TABLE t ADD PRIMARY KEY (id)"
  "+ (timestamp, id)||CREATE INDEX ON t (\"timestamp\" DESC, id DESC)"
  "+ (level, timestamp, id)||CREATE INDEX ON t (level, \"timestamp\" DESC, id DESC)"
  "+ (level, timestamp, id) WHERE level <> INFO||CREATE INDEX ON t (level, \"timestamp\" DESC, id DESC) WHERE level <> 'INFO'"
  "+ (level, timestamp, id) WHERE WARN/ERROR/FATAL||CREATE INDEX ON t (level, \"timestamp\" DESC, id DESC) WHERE level IN ('WARN','ERROR','FATAL')"
  "+ (source, timestamp, id)||CREATE INDEX ON t (source, \"timestamp\" DESC, id DESC)"
  "+ (correlation_id, timestamp, id) partial||CREATE INDEX ON t (correlation_id, \"timestamp\" DESC, id DESC) WHERE correlation_id IS NOT NULL"
  "+ stored tsvector column|$stored_tsv|"
  "+ stored tsvector + GIN|$stored_tsv|CREATE INDEX ON t USING gin (search_vector)"
  "+ stored tsvector + GIN, pending list 32 MB|$stored_tsv|CREATE INDEX ON t USING gin (search_vector) WITH (gin_pending_list_limit = 32768)"
  "+ stored tsvector + GIN, fastupdate off|$stored_tsv|CREATE INDEX ON t USING gin (search_vector) WITH (fastupdate = off)"
  "+ GIN on to_tsvector(message), no stored column||CREATE INDEX ON t USING gin (to_tsvector('english', message))"
  "today: PK + 4 B-trees + stored tsvector + GIN|$stored_tsv|ALTER TABLE t ADD PRIMARY KEY (id); CREATE INDEX ON t (\"timestamp\" DESC, id DESC); CREATE INDEX ON t (level, \"timestamp\" DESC, id DESC); CREATE INDEX ON t (source, \"timestamp\" DESC, id DESC); CREATE INDEX ON t (correlation_id, \"timestamp\" DESC, id DESC) WHERE correlation_id IS NOT NULL; CREATE INDEX ON t USING gin (search_vector)"
  "kept: the same with the level index WHERE level <> INFO|$stored_tsv|$kept_indexes"
  "given tsvector column (parsed elsewhere, cast from text)|$given_tsv|"
  "given tsvector + GIN|$given_tsv|CREATE INDEX ON t USING gin (search_vector)"
  "given: kept indexes, vector parsed elsewhere|$given_tsv|$kept_indexes"
  "partitioned by day: unique (timestamp, id), (id), the kept rest|$stored_tsv|$partitioned_indexes|PARTITION BY RANGE (\"timestamp\")"
  "+ (kafka_partition, kafka_offset), the live tail's||CREATE INDEX ON t (kafka_partition, kafka_offset)"
  "partitioned by day, the kept rest and the tail's (kafka_partition, kafka_offset)|$stored_tsv|$partitioned_indexes; CREATE INDEX ON t (kafka_partition, kafka_offset)|PARTITION BY RANGE (\"timestamp\")"
)

printf '\n| shape | µs per row | WAL bytes per row | table + indexes, bytes per row |\n|---|---|---|---|\n'
for shape in "${shapes[@]}"; do
  IFS='|' read -r name extra ddl partitioning <<<"$shape"
  [[ -z $only || $name == *"$only"* ]] || continue
  tsv_column='' tsv_value=''
  if [[ $name == given* ]]; then tsv_column=', search_vector' tsv_value=', tsv_text::tsvector'; fi
  psql_ -c "SET search_path = bench_index_costs; DROP TABLE IF EXISTS t; CREATE TABLE t ($base_columns $extra) $partitioning; $ddl" >/dev/null
  psql_ -c "CHECKPOINT" >/dev/null 2>&1 || true
  # One transaction per 5,000 rows, timed and WAL-measured from the server's side.
  result=$(psql_ <<SQL
SET search_path = bench_index_costs;
CREATE TEMP TABLE mark AS SELECT clock_timestamp() AS t0, pg_current_wal_insert_lsn() AS l0;
DO \$\$
DECLARE lo bigint := 1;
BEGIN
  WHILE lo <= $rows LOOP
    INSERT INTO t (id, level, message, source, "timestamp", metadata, correlation_id, kafka_partition, kafka_offset $tsv_column)
    SELECT id, level, message, source, ts, metadata, correlation_id, 0, g $tsv_value FROM staged WHERE g >= lo AND g < lo + 5000;
    COMMIT;
    lo := lo + 5000;
  END LOOP;
END \$\$;
-- A GIN pending list defers work to its next flush: flush it inside the timed span,
-- so a bigger list is credited with what it saves, not with what it postpones.
SELECT count(gin_clean_pending_list(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am a ON a.oid = c.relam
  WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree('t') UNION SELECT 't'::regclass) AND a.amname = 'gin' AND c.relkind = 'i' \gset
SELECT round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / $rows, 1) || '|' ||
       round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), l0) / $rows) || '|' ||
       round((SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size('t'))
              FROM pg_partition_tree('t')) / $rows::numeric)
FROM mark;
SQL
)
  IFS='|' read -r us wal size <<<"$result"
  printf '| %s | %s | %s | %s |\n' "$name" "$us" "$wal" "$size"
done
