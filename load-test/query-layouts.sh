#!/usr/bin/env bash
# Every query kind over rows and over event blocks: the same seed-skewed events (the
# query benchmarks' word soup, its sources and words; 7 days back) written into a
# scratch database per layout through the consumer's own batch transaction, blocks
# compacted, then query-kinds.sh run with the gateway pointed at each database (cache
# off, one request at a time). Prints each layout's table and restores the gateway.
#   ./load-test/query-layouts.sh [events=2000000] [seconds per kind=5]
#   LAYOUTS=blocks ./load-test/query-layouts.sh    # one layout only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
events=${1:-2000000}
seconds=${2:-5}
export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
# VACUUM as a non-superuser warns about every shared catalog it may not touch.
export PGOPTIONS='-c client_min_messages=error'
pg_user=${POSTGRES_USERNAME:-loguser}
psql_() { psql -h 127.0.0.1 -U "$pg_user" -v ON_ERROR_STOP=1 -qAtX "$@"; }

target=${CARGO_TARGET_DIR:-target}
echo "building seed-skewed and load-test (release)"
cargo build -q --release -p load-test --bins
seeder="$target/release/seed-skewed"

# Back to the stack's own database whatever happens.
trap 'env -u POSTGRES_URL ./setup.sh restart gateway >/dev/null' EXIT
for layout in ${LAYOUTS:-rows blocks}; do
  db="bench_query_${layout}"
  url="postgres://127.0.0.1:5432/$db"
  psql_ -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  echo "== $layout: seeding $events events"
  compact=()
  [ "$layout" = blocks ] && compact=(--compact)
  RUST_LOG=warn "$seeder" --rows "$events" --storage-layout "$layout" "${compact[@]}" --postgres-url "$url" \
    | grep -v '^done' || true
  psql_ -d "$db" -c "VACUUM ANALYZE" >/dev/null
  echo "== $layout: query kinds"
  POSTGRES_URL="$url" ./load-test/query-kinds.sh "$seconds"
done
# The gateway lets go of the scratch databases before they are dropped.
env -u POSTGRES_URL ./setup.sh restart gateway >/dev/null
for layout in ${LAYOUTS:-rows blocks}; do
  psql_ -d postgres -c "DROP DATABASE bench_query_${layout}"
done
