#!/usr/bin/env bash
# The consumer's half alone, as #29's "consumer + PostgreSQL CPU per event, in a drain"
# counts it: real-shaped lines (corpus-lines) queued in Kafka with the consumer stopped,
# then the consumer started with STORAGE_LAYOUT=blocks and timed until every event is
# in log_blocks. Reports events/s, machine CPU per event over the drain (the producer
# and the generator are idle by then), the consumer's own CPU per event, and then the
# compaction that follows (the consumer's CPU until its small blocks are merged).
# The consumer is put back to its default layout afterwards.
#   ./load-test/drain.sh [lines=300000]
# Extra consumer settings pass through the environment, e.g.
#   CONSUMER_BATCH_MAX_RECORDS=20000 ./load-test/drain.sh
# PERF=1 records the consumer with `perf record -g` during the drain (report in
# load-test/results/drain.perf.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lines=${1:-300000}
# shellcheck source=load-test/measure.sh
source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

require_stack

work=$(mktemp -d)
perf_pid=
cleanup() {
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  echo "consumer: back to its default layout"
  env -u STORAGE_LAYOUT ./setup.sh restart consumer >/dev/null
}
trap cleanup EXIT

target=${CARGO_TARGET_DIR:-target}
cargo build -q --release -p load-test --bin corpus-lines
"$target/release/corpus-lines" --lines "$lines" >"$work/corpus.ndjson"
mkdir -p "$work/bodies"
split -l 5000 -a 4 "$work/corpus.ndjson" "$work/bodies/body-"
bodies=$(find "$work/bodies" -type f | wc -l)

./setup.sh stop consumer >/dev/null
echo "queueing $lines lines in Kafka ($bodies bodies of 5,000; consumer stopped)"
statuses=$(find "$work/bodies" -type f | sort | xargs -P 8 -I{} \
  curl -sS -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/x-ndjson' \
  --data-binary @{} http://127.0.0.1:8081/producer/api/logs/bulk | sort | uniq -c)
grep -qE "^ *$bodies 200$" <<<"$statuses" || { echo "not every body was taken: $statuses" >&2; exit 1; }
events0=$(blocks_events)
target_events=$((events0 + lines))
sleep 2

STORAGE_LAYOUT=blocks MOVE_ROWS_TO_BLOCKS=false ./setup.sh start consumer >/dev/null
consumer=$(./setup.sh pid consumer)
if [ "${PERF:-0}" = 1 ]; then
  perf record -g -o "$work/perf.data" -p "$consumer" >/dev/null 2>&1 &
  perf_pid=$!
fi
kafka=$(./setup.sh pid kafka)
t0=$(now); c0=$(cpu_ticks); p0=$(proc_ticks "$consumer"); g0=$(comm_ticks postgres); k0=$(proc_ticks "$kafka")
wait_until_stored "$lines" "$t0"
t1=$(now); c1=$(cpu_ticks); p1=$(proc_ticks "$consumer"); g1=$(comm_ticks postgres); k1=$(proc_ticks "$kafka")
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; perf_pid=
  mkdir -p load-test/results
  perf report -i "$work/perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null \
    | grep -v '^$' | head -150 >load-test/results/drain.perf.txt
  echo "perf report: load-test/results/drain.perf.txt"
fi
check_stored_then_compacted "$target_events" 180
t2=$(now); c2=$(cpu_ticks); p2=$(proc_ticks "$consumer")

printf '\n| %s real-shaped lines, drain | value |\n|---|---|\n' "$lines"
printf '| events/s until all stored | %.0f |\n' "$(echo "$lines / ($t1 - $t0)" | bc -l)"
printf '| machine CPU per event while storing, µs | %.1f |\n' "$(per_event "$c1 - $c0" "$lines")"
printf '| consumer CPU per event while storing, µs | %.1f |\n' "$(per_event "$p1 - $p0" "$lines")"
printf '| PostgreSQL CPU per event while storing, µs | %.1f |\n' "$(per_event "$g1 - $g0" "$lines")"
printf '| Kafka CPU per event while storing, µs | %.1f |\n' "$(per_event "$k1 - $k0" "$lines")"
printf '| then compaction: %.1f s; machine, consumer CPU per event, µs | %.1f, %.1f |\n' \
  "$(echo "$t2 - $t1" | bc -l)" "$(per_event "$c2 - $c1" "$lines")" "$(per_event "$p2 - $p1" "$lines")"
printf '| consumer RSS, MiB | %d |\n' "$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$consumer/status")"
