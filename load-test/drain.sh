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
export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
pg_user=${POSTGRES_USERNAME:-loguser}
psql_() { psql -h 127.0.0.1 -U "$pg_user" -d logprocessor -v ON_ERROR_STOP=1 -qAtX "$@"; }
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU ticks of every live process whose command name is $1 (PostgreSQL's backends).
comm_ticks() {
  local f sum=0 t
  for f in /proc/[0-9]*/stat; do
    t=$(awk -v c="($1)" '$2 == c {print $14 + $15}' "$f" 2>/dev/null) || continue
    sum=$((sum + ${t:-0}))
  done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
now() { date +%s.%N; }

for component in postgres kafka producer consumer; do
  ./setup.sh pid "$component" >/dev/null || { echo "$component is not running: ./setup.sh up" >&2; exit 1; }
done

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

blocks_events() { psql_ -c "SELECT coalesce(sum(events), 0) FROM log_blocks"; }
small_streams() {
  psql_ -c "SELECT count(*) FROM (SELECT 1 FROM log_blocks WHERE events < 8192
    GROUP BY lane, kafka_partition, source, (min_time AT TIME ZONE 'UTC')::date HAVING count(*) > 1) s"
}

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
# Progress from the consumer's own counter (it started at 0): polling the table
# instead cost PostgreSQL a scan every time, in the window being measured.
stored_metric() {
  curl -fsS --max-time 2 http://127.0.0.1:8082/actuator/prometheus 2>/dev/null |
    awk '$1 == "log_events_stored_total" {print int($2)} END {print 0}' | head -n 1
}
last=-1
while :; do
  n=$(stored_metric)
  [ "$n" -ge "$lines" ] && break
  if [ "$n" != "$last" ]; then printf "  %5.1f s: stored %d / %d\n" "$(echo "$(now) - $t0" | bc -l)" "$n" "$lines"; last=$n; fi
  sleep 0.2
done
t1=$(now); c1=$(cpu_ticks); p1=$(proc_ticks "$consumer"); g1=$(comm_ticks postgres); k1=$(proc_ticks "$kafka")
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; perf_pid=
  mkdir -p load-test/results
  perf report -i "$work/perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null \
    | grep -v '^$' | head -150 >load-test/results/drain.perf.txt
  echo "perf report: load-test/results/drain.perf.txt"
fi
[ "$(blocks_events)" -ge "$target_events" ] || { echo "log_blocks holds fewer events than were sent" >&2; exit 1; }
echo "  compaction: until no stream has small blocks left to merge (at most 180 s)"
for _ in $(seq 180); do
  [ "$(small_streams)" -eq 0 ] && break
  sleep 1
done
t2=$(now); c2=$(cpu_ticks); p2=$(proc_ticks "$consumer")

per_event() { echo "($1) * 1000000 / $hz / $lines" | bc -l; }
printf '\n| %s real-shaped lines, drain | value |\n|---|---|\n' "$lines"
printf '| events/s until all stored | %.0f |\n' "$(echo "$lines / ($t1 - $t0)" | bc -l)"
printf '| machine CPU per event while storing, µs | %.1f |\n' "$(per_event "$c1 - $c0")"
printf '| consumer CPU per event while storing, µs | %.1f |\n' "$(per_event "$p1 - $p0")"
printf '| PostgreSQL CPU per event while storing, µs | %.1f |\n' "$(per_event "$g1 - $g0")"
printf '| Kafka CPU per event while storing, µs | %.1f |\n' "$(per_event "$k1 - $k0")"
printf '| then compaction: %.1f s; machine, consumer CPU per event, µs | %.1f, %.1f |\n' \
  "$(echo "$t2 - $t1" | bc -l)" "$(per_event "$c2 - $c1")" "$(per_event "$p2 - $p1")"
printf '| consumer RSS, MiB | %d |\n' "$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$consumer/status")"
