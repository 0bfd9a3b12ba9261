#!/usr/bin/env bash
# Side by side with VictoriaLogs (../shared/peers/victorialogs/), one system at a time on
# this box: the same real-shaped lines (corpus-lines: sixteen systems' formats, skewed)
# POSTed as NDJSON in 5,000-line bodies, 8 at a time, into
#   - VictoriaLogs' /insert/jsonline (a fresh data directory);
#   - our producer's /producer/api/logs/bulk, stored by the stack's consumer restarted
#     with STORAGE_LAYOUT=blocks (set back to its default afterwards).
# For each: events/s from the first body sent until every event is stored and
# countable (VictoriaLogs: its count query; ours: the consumer's stored counter, then
# the events in log_blocks checked once), machine CPU per event over that window
# (every process: Kafka, PostgreSQL, the services, curl; ours split by process too),
# and disk per event (VictoriaLogs: its data directory after a graceful stop; ours: the
# blocks written, once compaction has run, and what the id memory and the rollups grew
# by; Kafka's log directories' growth apart, which retention keeps only as a buffer).
# Query latencies are not compared yet: the gateway does not read blocks (#29).
#   ./load-test/side-by-side.sh [lines=1000000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lines=${1:-1000000}
peer=../shared/peers/victorialogs
data_dir=${LOGPIPE_DATA_DIR:-$HOME/.local/share/logpipeline}
# shellcheck source=load-test/measure.sh
source "$(dirname "${BASH_SOURCE[0]}")/measure.sh"

./setup.sh status >/dev/null 2>&1 || true
require_stack

work=$(mktemp -d)
vl_pid=
cleanup() {
  if [ -n "$vl_pid" ]; then kill "$vl_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  if [ -n "${restore_consumer:-}" ]; then
    echo "consumer: back to its default layout"
    env -u STORAGE_LAYOUT ./setup.sh restart consumer >/dev/null
  fi
}
trap cleanup EXIT

target=${CARGO_TARGET_DIR:-target}
echo "building corpus-lines (release)"
cargo build -q --release -p load-test --bin corpus-lines
echo "generating $lines lines"
"$target/release/corpus-lines" --lines "$lines" > "$work/corpus.ndjson"
mkdir -p "$work/bodies"
split -l 5000 -a 4 "$work/corpus.ndjson" "$work/bodies/body-"
bodies=$(find "$work/bodies" -type f | wc -l)
echo "$lines lines, $(du -m "$work/corpus.ndjson" | cut -f1) MiB, $bodies bodies"

# Sends every body to $1, 8 at a time; fails unless every answer is 200.
send_all() {
  local statuses
  statuses=$(find "$work/bodies" -type f | sort | xargs -P 8 -I{} \
    curl -sS -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/x-ndjson' \
    --data-binary @{} "$1" | sort | uniq -c)
  if ! grep -qE "^ *$bodies 200$" <<<"$statuses"; then
    echo "not every body was taken: $statuses" >&2
    return 1
  fi
}

# Polls VictoriaLogs' count until it reaches $1, printing progress.
wait_for_vl() {
  local n last=-1
  while :; do
    n=$(vl_count)
    [ "$n" -ge "$1" ] && return 0
    if [ "$n" != "$last" ]; then echo "  stored $n / $1"; last=$n; fi
    sleep 0.2
  done
}

declare -A rate cpu disk extra

# ---- VictoriaLogs ----
echo "== VictoriaLogs"
"$peer/build.sh" >/dev/null
vl_pid=$("$peer/run.sh" "$work/vl")
vl_count() {
  curl -fsS http://127.0.0.1:9428/select/logsql/query --data-urlencode 'query=* | stats count() as n' |
    sed -E 's/.*"n":"?([0-9]+)"?.*/\1/' | grep -E '^[0-9]+$' || echo 0
}
t0=$(now); c0=$(cpu_ticks)
send_all 'http://127.0.0.1:9428/insert/jsonline?_stream_fields=source&_msg_field=message&_time_field=timestamp'
wait_for_vl "$lines"
t1=$(now); c1=$(cpu_ticks)
rate[vl]=$(echo "$lines / ($t1 - $t0)" | bc -l)
cpu[vl]=$(per_event "$c1 - $c0" "$lines")
extra[vl]="peak RSS $(awk '/^VmHWM/ {printf "%d MiB", $2 / 1024}' "/proc/$vl_pid/status")"
# Recent data sits in memory parts (searchable, not yet written): a graceful stop
# writes them, then the directory holds everything.
kill "$vl_pid"
while kill -0 "$vl_pid" 2>/dev/null; do sleep 0.2; done
vl_pid=
disk[vl]=$(echo "$(du -sb "$work/vl" | cut -f1) / $lines" | bc -l)

# ---- ours ----
echo "== log pipeline (STORAGE_LAYOUT=blocks)"
restore_consumer=1
STORAGE_LAYOUT=blocks MOVE_ROWS_TO_BLOCKS=false ./setup.sh restart consumer >/dev/null
# The id memory and the rollups only grow; log_blocks reuses the space compaction
# freed, so its share is the size of the blocks written since the start (their rows
# with the payload as stored, the filters, the summary), counted row by row.
pg_bytes() {
  psql_ -c "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
    WHERE c.relkind = 'r' AND c.relname ~ '^log_(event_ids|rollup)'"
}
new_block_bytes() { psql_ -c "SELECT coalesce(sum(pg_column_size(b.*)), 0) FROM log_blocks b WHERE block_id > $1"; }
kafka_bytes() { du -sb "$data_dir"/kafka/data/log-events-* 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
events0=$(blocks_events); pg0=$(pg_bytes); kafka0=$(kafka_bytes)
block0=$(psql_ -c "SELECT coalesce(max(block_id), 0) FROM log_blocks")
target_events=$((events0 + lines))
producer=$(./setup.sh pid producer); consumer=$(./setup.sh pid consumer); kafka=$(./setup.sh pid kafka)
processes() { echo "$(proc_ticks "$producer") $(proc_ticks "$kafka") $(proc_ticks "$consumer") $(comm_ticks postgres)"; }
t0=$(now); c0=$(cpu_ticks); read -r pr0 k0 co0 pg_0 < <(processes)
send_all 'http://127.0.0.1:8081/producer/api/logs/bulk' &
sender=$!
wait_until_stored "$lines" "$t0"
wait "$sender"
t1=$(now); c1=$(cpu_ticks); read -r pr1 k1 co1 pg_1 < <(processes)
check_stored_then_compacted "$target_events" 120
psql_ -c "VACUUM log_blocks" >/dev/null 2>&1 || true
rate[ours]=$(echo "$lines / ($t1 - $t0)" | bc -l)
cpu[ours]=$(per_event "$c1 - $c0" "$lines")
split_cpu=$(printf 'producer %.1f, Kafka %.1f, consumer %.1f, PostgreSQL %.1f' \
  "$(per_event "$pr1 - $pr0" "$lines")" "$(per_event "$k1 - $k0" "$lines")" \
  "$(per_event "$co1 - $co0" "$lines")" "$(per_event "$pg_1 - $pg_0" "$lines")")
disk[ours]=$(echo "($(pg_bytes) - $pg0 + $(new_block_bytes "$block0")) / $lines" | bc -l)
kafka_per_event=$(echo "($(kafka_bytes) - $kafka0) / $lines" | bc -l)
rss() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$(./setup.sh pid "$1")/status"; }
extra[ours]=$(printf 'RSS now: producer %s, consumer %s, Kafka %s MiB; Kafka log %.1f B/event' \
  "$(rss producer)" "$(rss consumer)" "$(rss kafka)" "$kafka_per_event")

echo
echo "| $lines real-shaped lines | VictoriaLogs | ours (blocks) | ours / VictoriaLogs |"
echo "|---|---|---|---|"
printf '| ingest until all stored, events/s | %.0f | %.0f | %.2f× |\n' "${rate[vl]}" "${rate[ours]}" \
  "$(echo "${rate[ours]} / ${rate[vl]}" | bc -l)"
printf '| machine CPU per event, µs | %.1f | %.1f | %.2f× |\n' "${cpu[vl]}" "${cpu[ours]}" \
  "$(echo "${cpu[ours]} / ${cpu[vl]}" | bc -l)"
echo "| of which, µs an event | | $split_cpu | |"
printf '| disk per event, B (ours: PostgreSQL) | %.1f | %.1f | %.2f× |\n' "${disk[vl]}" "${disk[ours]}" \
  "$(echo "${disk[ours]} / ${disk[vl]}" | bc -l)"
echo "| other | ${extra[vl]} | ${extra[ours]} | |"
