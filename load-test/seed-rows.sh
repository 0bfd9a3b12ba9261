#!/usr/bin/env bash
# Loads N synthetic events straight into log_events (default 10,000,000), spread over
# the last 24 hours, for the query benchmarks. Rows look like the load generator's:
# five levels, 16 sources, messages with words to search, metadata.duration.
# Inserted in slices of 500,000 with a progress line each; a unique source prefix
# per run keeps them apart from other data.
#   ./load-test/seed-rows.sh [rows=10000000]
set -euo pipefail
rows=${1:-10000000}
slice=500000
run=$(date +%s)
export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
psql_() { psql -h 127.0.0.1 -U "${POSTGRES_USERNAME:-loguser}" -d logprocessor -v ON_ERROR_STOP=1 -qAt "$@"; }
start=$SECONDS
for ((done_rows = 0; done_rows < rows; done_rows += slice)); do
  n=$(( rows - done_rows < slice ? rows - done_rows : slice ))
  psql_ -c "
    INSERT INTO log_events (id, level, message, source, \"timestamp\", metadata, correlation_id, kafka_partition, kafka_offset)
    SELECT gen_random_uuid(),
           (ARRAY['INFO','INFO','DEBUG','WARN','ERROR'])[1 + g % 5],
           'request ' || g || ' handled: database query took ' || (g % 250) || ' ms',
           'seed-$run-' || (g % 16),
           now() - (random() * interval '24 hours'),
           jsonb_build_object('duration', g % 250, 'endpoint', '/api/orders'),
           'corr-' || (g % 1000),
           -1, g
    FROM generate_series($done_rows + 1, $done_rows + $n) AS g"
  echo "seeded $(( done_rows + n )) / $rows rows ($(( SECONDS - start )) s)"
done
psql_ -c "ANALYZE log_events"
echo "done: $rows rows with source prefix seed-$run- in $(( SECONDS - start )) s"
