#!/usr/bin/env bash
# The live tail under load: the load generator ingests at a fixed rate for a while with
# no tail stream open, then again with N streams open (half of them filtered to
# ERROR, half following everything), back to back. For each run it prints the ingest
# throughput, the CPU the gateway and PostgreSQL used over the load window, what the
# streams received, and the tail's latency: marked events sent every second during the
# load, timed from the producer's answer to their arrival on a stream of their own.
# Targets 127.0.0.1 only; every curl and the load stop by themselves.
#   ./load-test/tail-load.sh [clients=32] [seconds=30] [rate=10000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
clients=${1:-32}
seconds=${2:-30}
rate=${3:-10000}
(( clients <= 64 && seconds <= 300 )) || { echo "at most 64 clients and 300 s" >&2; exit 2; }
gw=http://127.0.0.1:8080/gateway/api/query
producer=http://127.0.0.1:8081/producer/api/logs
tick=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# CPU ticks (user + system) of the processes given.
ticks() { local total=0 pid; for pid in "$@"; do
  [[ -r /proc/$pid/stat ]] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$total"; }
# PostgreSQL's ticks since `pg_mark`: per process alive at both ends, plus all of any
# process started since (a backend that exited in between takes its share with it).
declare -A pg_at_mark
pg_mark() { local pid; pg_at_mark=(); for pid in $(pgrep -u postgres postgres); do pg_at_mark[$pid]=$(ticks "$pid"); done; }
pg_since_mark() { local total=0 pid now; for pid in $(pgrep -u postgres postgres); do
  now=$(ticks "$pid"); total=$((total + now - ${pg_at_mark[$pid]:-0})); done; echo "$total"; }
gateway_pid=$(./setup.sh pid gateway)

run() { # $1: streams to open
  local streams=$1 i probe=tail-probe-$RANDOM$RANDOM
  rm -f "$work"/stream.* "$work"/cpu.* "$work/latency"
  for ((i = 0; i < streams; i++)); do
    local filter="level=ERROR"; ((i % 2)) && filter=""
    # shellcheck disable=SC2016 # expanded by the inner shell
    /usr/bin/time -f '%U %S' -o "$work/cpu.$i" bash -c 'curl -sN --max-time "$1" "$2" | grep -c "^data:" >"$3"' \
      _ $((seconds + 15)) "$gw/tail?$filter" "$work/stream.$i" &
  done
  # The probe stream: one marked event a second, timed from the producer's 200.
  curl -sN --max-time $((seconds + 15)) "$gw/tail?source=$probe" | while IFS= read -r line; do
    [[ $line == data:* ]] || continue
    sent=$(sed -n 's/.*"message":"probe \([0-9]*\)".*/\1/p' <<<"$line")
    [[ -n $sent && -f $work/answered.$sent ]] && echo $(( $(date +%s%3N) - $(cat "$work/answered.$sent") )) >>"$work/latency"
  done &
  sleep 2
  pg_mark
  local gw0 t0; gw0=$(ticks "$gateway_pid"); t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$work/loadgen.cpu" ./load-test/run.sh --mode ingest --endpoint batch \
    --batch-size 100 --rate "$rate" --duration "$seconds" --concurrency 8 >"$work/report" &
  local load=$!
  for ((i = 0; i < seconds; i++)); do
    local n; n=$(date +%s%N)
    curl -s -o /dev/null -XPOST "$producer/ingest" -H 'Content-Type: application/json' \
      -d "{\"level\":\"INFO\",\"message\":\"probe $n\",\"source\":\"$probe\"}"
    date +%s%3N >"$work/answered.$n"
    sleep 1
  done
  wait "$load"
  local gw1 pg t1; gw1=$(ticks "$gateway_pid"); pg=$(pg_since_mark); t1=$(date +%s.%N)
  sleep 3 # the last probes' way through
  local window; window=$(echo "$t1 - $t0" | bc -l)
  wait  # every curl ends by its --max-time
  local received=0 f clients_cpu=0
  for f in "$work"/stream.*; do [[ -f $f ]] && received=$((received + $(cat "$f"))); done
  for f in "$work"/cpu.*; do [[ -f $f ]] && clients_cpu=$(echo "$clients_cpu + $(tail -n 1 "$f" | awk '{print $1 + $2}')" | bc -l); done
  printf 'streams %2d | ingest %s events/s | load generator %.2f cores, tail clients %.2f | gateway %.2f cores | PostgreSQL %.2f cores | events sent to streams %d | tail latency ms (n=%d) p50 %s max %s\n' \
    "$streams" "$(head -n 1 "$work/report" | awk '{print $NF}')" \
    "$(echo "$(tail -n 1 "$work/loadgen.cpu" | awk '{print $1 + $2}') / $window" | bc -l)" \
    "$(echo "$clients_cpu / $window" | bc -l)" \
    "$(echo "($gw1 - $gw0) / $tick / $window" | bc -l)" "$(echo "$pg / $tick / $window" | bc -l)" \
    "$received" "$(wc -l <"$work/latency" 2>/dev/null || echo 0)" \
    "$(sort -n "$work/latency" 2>/dev/null | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "-")}')" \
    "$(sort -n "$work/latency" 2>/dev/null | tail -n 1)"
}

echo "ingest at $rate events/s for ${seconds}s: without tail streams, then with $clients"
run 0
run "$clients"
