#!/usr/bin/env bash
# Rows against event blocks: the same real-shaped events (seed-skewed: skewed sources
# and levels, correlation ids, durations) written through the consumer's own batch
# transaction (Store::write_batch: fence-free, id memory, rollups) into a scratch
# database per layout, one layout at a time. Reports, per layout:
#   - events/s of the write path (wall clock of the load alone);
#   - machine CPU per event (all processes, from /proc/stat over the load window);
#   - for blocks, the machine CPU per event of compacting them afterwards;
#   - disk per event after the load (and compaction): the events (log_events or log_blocks, indexes and
#     TOAST included; and again after VACUUM FULL), the id memory (log_event_ids) and
#     the rollups.
# Kafka and the consumer's decoding are not in it: it measures the storage layout.
# The timestamps span the last `span` minutes (default 10), as a burst of live ingest's
# receive times do; a longer span makes each batch touch more rollup rows. The lines
# are sixteen real systems' formats (load-test/src/corpus.rs); LINES=words gives the
# query benchmarks' word soup instead, which flatters every layout.
#   ./load-test/layouts.sh [events=1000000] [writers=2] [span minutes=10]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
events=${1:-1000000}
writers=${2:-2}
span=${3:-10}
lines=${LINES:-realistic}
export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
# VACUUM as a non-superuser warns about every shared catalog it may not touch.
export PGOPTIONS='-c client_min_messages=error'
pg_user=${POSTGRES_USERNAME:-loguser}
psql_() { psql -h 127.0.0.1 -U "$pg_user" -v ON_ERROR_STOP=1 -qAtX "$@"; }
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
hz=$(getconf CLK_TCK)

target=${CARGO_TARGET_DIR:-target}
echo "building seed-skewed (release)"
cargo build -q --release -p load-test --bin seed-skewed
seeder="$target/release/seed-skewed"

results=()
for layout in rows blocks; do
  db="bench_layout_${layout}"
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  # Migrations first, outside the measured window.
  "$seeder" --rows 0 --postgres-url "postgres://127.0.0.1:5432/$db" >/dev/null
  echo "== $layout: $events events, $writers writers"
  t0=$(date +%s.%N); c0=$(cpu_ticks)
  "$seeder" --rows "$events" --lines "$lines" --span-minutes "$span" --writers "$writers" --storage-layout "$layout" \
    --postgres-url "postgres://127.0.0.1:5432/$db" | grep -v '^done'
  t1=$(date +%s.%N); c1=$(cpu_ticks)
  compact_cpu=0
  if [ "$layout" = blocks ]; then
    # Compaction is part of what a block costs: its CPU is reported beside the load's.
    "$seeder" --rows 0 --compact --postgres-url "postgres://127.0.0.1:5432/$db" | grep compacted
    c2=$(cpu_ticks)
    compact_cpu=$(echo "($c2 - $c1) / $hz" | bc -l)
  fi
  psql_ -d "$db" -c "VACUUM" >/dev/null
  sizes=$(psql_ -d "$db" -F ' ' <<'SQL'
SELECT coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname ~ '^log_(events|blocks)'), 0),
       coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname ~ '^log_event_ids'), 0),
       coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname ~ '^log_rollup'), 0),
       (SELECT count(*) FROM log_blocks)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r';
SQL
)
  read -r event_bytes id_bytes rollup_bytes blocks <<<"$sizes"
  # The space compaction freed is reused by the next blocks but stays in the files;
  # VACUUM FULL gives it back, showing what the live events take.
  psql_ -d "$db" -c "VACUUM FULL log_events" -c "VACUUM FULL log_blocks" >/dev/null
  live_bytes=$(psql_ -d "$db" -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
    WHERE c.relname ~ '^log_(events|blocks)' AND c.relkind = 'r'")
  line=$(awk -v l="$layout" -v n="$events" -v t="$(echo "$t1 - $t0" | bc)" \
    -v cpu="$(echo "($c1 - $c0) / $hz" | bc -l)" -v e="$event_bytes" -v i="$id_bytes" \
    -v r="$rollup_bytes" -v b="$blocks" -v cc="$compact_cpu" -v live="$live_bytes" 'BEGIN {
      printf "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d |", l, n / t, cpu * 1e6 / n,
        cc * 1e6 / n, e / n, live / n, i / n, r / n, (e + i + r) / n, b }')
  results+=("$line")
  psql_ -d postgres -c "DROP DATABASE $db"
done
echo
echo "| layout | events/s | machine CPU µs/event | compaction CPU µs/event | events B/event | events B/event after VACUUM FULL | id memory B/event | rollups B/event | total B/event | blocks |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
