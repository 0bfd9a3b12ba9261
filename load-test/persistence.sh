#!/usr/bin/env bash
# Persistence benchmark: how fast the consumer drains a pre-filled topic into
# PostgreSQL (all indexes, exactly-once transactions).
#   1. stops the consumer, 2. pre-fills the topic with the load generator,
#   3. starts the consumer and samples log_events_stored_total every 5 s until the
#      lag is gone or --max-seconds pass. Prints rows/s per interval, then the fill
#      and drain rates on one line.
# Usage: ./load-test/persistence.sh [fill-seconds=15] [max-seconds=300]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fill=${1:-15}
max=${2:-300}
metric() { curl -fsS --max-time 2 http://127.0.0.1:8082/actuator/prometheus 2>/dev/null | awk -v m="$1" '$1 ~ "^"m {s+=$2} END {print s+0}'; }

./setup.sh stop consumer
echo "pre-filling the topic for ${fill}s (consumer stopped)"
fill_report=$(mktemp)
./load-test/run.sh --mode ingest --endpoint batch --batch-size 500 --duration "$fill" --concurrency 8 >"$fill_report"
fill_rate=$(head -n 1 "$fill_report" | awk '{print $NF}'); rm -f "$fill_report"
echo "fill: $fill_rate events/s"
./setup.sh start consumer   # inherits CONSUMER_INSERT_MODE etc. from this environment
start=$(date +%s.%N)
last_rows=$(metric log_events_stored_total); last_t=$start; first_rows=$last_rows
# Done when the lag is 0 and an interval stored nothing more. (Lag alone reads 0 for
# a moment after the start, before the first fetch.) The rate counts up to the last
# interval that stored rows.
end_rows=$last_rows; end_t=$start
while :; do
  sleep 5
  now=$(date +%s.%N); rows=$(metric log_events_stored_total); lag=$(metric kafka_consumer_lag)
  printf '[%5.0fs] rows/s %8.0f | stored %9d | lag %9d\n' "$(echo "$now - $start" | bc)" \
    "$(echo "($rows - $last_rows) / ($now - $last_t)" | bc -l)" "$rows" "$lag"
  if (( $(echo "$rows > $last_rows" | bc) )); then end_rows=$rows; end_t=$now; fi
  idle=$(echo "$rows == $last_rows" | bc)
  last_rows=$rows; last_t=$now
  if { [[ "$lag" -eq 0 ]] && ((idle)); } || (( $(echo "$now - $start > $max" | bc) )); then break; fi
done
total=$(echo "$end_rows - $first_rows" | bc)
echo "fill events/s: $fill_rate | persisted rows/s: $(echo "$total / ($end_t - $start)" | bc) ($total rows in $(echo "$end_t - $start" | bc) s, CONSUMER_WRITERS=${CONSUMER_WRITERS:-one per core})"
