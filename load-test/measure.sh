# load-test/measure.sh (sourced by drain.sh and side-by-side.sh): the clocks and
# counters both read, so they read them the same way.
# shellcheck shell=bash

export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
pg_user=${POSTGRES_USERNAME:-loguser}
psql_() { psql -h 127.0.0.1 -U "$pg_user" -d logprocessor -v ON_ERROR_STOP=1 -qAtX "$@"; }
hz=$(getconf CLK_TCK)
# Fails unless the stack's parts a benchmark drives are running.
require_stack() {
  local component
  for component in postgres kafka producer consumer; do
    ./setup.sh pid "$component" >/dev/null || { echo "$component is not running: ./setup.sh up" >&2; exit 1; }
  done
}
now() { date +%s.%N; }
# The machine's CPU ticks (user, nice, system, irq, softirq), every process together.
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
# One process's CPU ticks, all its threads.
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU ticks of every live process whose command name is $1 (PostgreSQL's backends),
# read in one pass (cat goes on past a process that ended meanwhile).
comm_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v c="($1)" '$2 == c {s += $14 + $15} END {print s + 0}'
}
# Events the consumer has stored since it started, from its own counter: polling the
# table instead cost PostgreSQL a scan every time, in the window being measured.
stored_by_consumer() {
  curl -fsS --max-time 2 http://127.0.0.1:8082/actuator/prometheus 2>/dev/null |
    awk '$1 == "log_events_stored_total" {print int($2)} END {print 0}' | head -n 1
}
# Events in log_blocks.
blocks_events() { psql_ -c "SELECT coalesce(sum(events), 0) FROM log_blocks"; }
# Streams with small blocks compaction has still to merge.
small_streams() {
  psql_ -c "SELECT count(*) FROM (SELECT 1 FROM log_blocks WHERE events < 8192
    GROUP BY lane, kafka_partition, source, (min_time AT TIME ZONE 'UTC')::date HAVING count(*) > 1) s"
}
# Fails unless log_blocks holds $1 events, then waits (at most $2 seconds) until
# compaction has no small blocks left to merge.
check_stored_then_compacted() {
  [ "$(blocks_events)" -ge "$1" ] || { echo "log_blocks holds fewer events than were sent" >&2; exit 1; }
  echo "  compaction: until no stream has small blocks left to merge (at most $2 s)"
  local _
  for _ in $(seq "$2"); do
    [ "$(small_streams)" -eq 0 ] && return 0
    sleep 1
  done
}
# Waits until the consumer (started at the beginning of the window) has stored $1
# events, printing progress with the seconds since $2.
wait_until_stored() {
  local n last=-1
  while :; do
    n=$(stored_by_consumer)
    [ "$n" -ge "$1" ] && return 0
    if [ "$n" != "$last" ]; then
      printf '  %5.1f s: stored %d / %d\n' "$(echo "$(now) - $2" | bc -l)" "$n" "$1"
      last=$n
    fi
    sleep 0.2
  done
}
# Microseconds per event of $1 ticks over $2 events.
per_event() { echo "($1) * 1000000 / $hz / $2" | bc -l; }
