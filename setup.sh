#!/usr/bin/env bash
# Local operations for the log pipeline: brings up PostgreSQL, Redis, a
# single-node KRaft Kafka, Prometheus + exporters, builds the Rust services and
# runs them, all bound to 127.0.0.1, without Docker or systemd.
# Run `./setup.sh help` for the commands and the environment it honours.
# This file holds the settings and the commands; the work is in setup/, one
# sourced file per concern (see the list below).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${HOME:-}" ]]; then
  HOME="$(getent passwd "$(id -u)" | cut -d: -f6)"
  export HOME
fi
# Non-login shells (CI) often lack rustup's PATH entry.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# ---------------------------------------------------------------- settings ---
RUN_DIR="${LOGPIPE_RUN_DIR:-$REPO/.run}"
DATA_DIR="${LOGPIPE_DATA_DIR:-$HOME/.local/share/logpipeline}"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REPO/kafka/pom.xml" | head -n1)"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_LIBS="${KAFKA_LIBS:-$HOME/.cache/logpipeline/kafka-$KAFKA_VERSION/libs}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logpipeline/target}"
BIN_DIR="$CARGO_TARGET_DIR/release"
KAFKA_TOPIC="${KAFKA_TOPIC:-log-events}"
KAFKA_DLQ_TOPIC="${KAFKA_DLQ_TOPIC:-log-events-dlq}"
KAFKA_PRIORITY_TOPIC="${KAFKA_PRIORITY_TOPIC:-log-events-priority}"
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-6}"
KAFKA_PRIORITY_PARTITIONS="${KAFKA_PRIORITY_PARTITIONS:-2}"
KAFKA_BOOTSTRAP="127.0.0.1:9092"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
PG_PORT=5432
PG_USER=loguser
PG_PASSWORD=logpass
PG_DB=logprocessor
SKIP_APP="${SETUP_SKIP_APP:-0}"
[[ "$SKIP_APP" == 0 || "$SKIP_APP" == false ]] && SKIP_APP=0 || SKIP_APP=1
SETUP_LOG="$RUN_DIR/setup.log"
STEP_NOTE="$RUN_DIR/.step-note"

# ------------------------------------------------------------------ pieces ---
# Each file only defines functions (and a few constants of its own), so the
# order below does not matter for correctness; all of them see the settings above.
# shellcheck source=setup/common.sh
source "$REPO/setup/common.sh"     # die, note, as_root, probe, as_root_nofds
# shellcheck source=setup/process.sh
source "$REPO/setup/process.sh"    # components, pid files, launch, wait_for, start/stop, down
# shellcheck source=setup/packages.sh
source "$REPO/setup/packages.sh"   # Debian packages
# shellcheck source=setup/postgres.sh
source "$REPO/setup/postgres.sh"   # cluster, role and database, schema check
# shellcheck source=setup/kafka.sh
source "$REPO/setup/kafka.sh"      # jars, broker, topics, Kafka's CLI tools
# shellcheck source=setup/redis.sh
source "$REPO/setup/redis.sh"      # redis-server
# shellcheck source=setup/prometheus.sh
source "$REPO/setup/prometheus.sh" # prometheus, exporters, grafana
# shellcheck source=setup/services.sh
source "$REPO/setup/services.sh"   # build and start producer, consumer, gateway
# shellcheck source=setup/status.sh
source "$REPO/setup/status.sh"     # status table, URLs
# shellcheck source=setup/steps.sh
source "$REPO/setup/steps.sh"      # the steps of `up` and their runner
# shellcheck source=setup/test.sh
source "$REPO/setup/test.sh"       # the test command

# ----------------------------------------------------------------- commands ---
usage() {
  cat <<EOF
Usage: ./setup.sh [command]

  up (default)            install what is missing, start the infrastructure, build and
                          start the services (idempotent: re-running changes nothing)
  down                    stop everything (services, grafana, exporters, prometheus, kafka,
                          redis, postgres); data is kept
  status                  one line per component; exit code != 0 if something is down
  start|stop|restart <c>  one component
  pid <c>                 print the pid of a running component
  logs <c>                the component's log (follows when stdout is a terminal)
  test [args]             the whole suite: cargo test (the chaos run with its summary
                          shown), then schemathesis on both OpenAPI documents; with args,
                          only cargo test --release --workspace <args>
  kafka-topics ...        Kafka's TopicCommand (--bootstrap-server $KAFKA_BOOTSTRAP added)
  kafka-consumer-groups ... Kafka's ConsumerGroupCommand (same)
  kafka-get-offsets ...   Kafka's GetOffsetShell (same): a topic's offsets per partition
  help                    this text

Components: $(components)

Environment:
  SETUP_SKIP_APP=1     'up' skips build, services and the schema check (steps 7-9);
                       'status' then does not count the services as failures
  LOGPIPE_DATA_DIR     persistent data (Kafka log dirs, redis, prometheus tsdb)   [$DATA_DIR]
  LOGPIPE_RUN_DIR      pid files and logs                                         [$RUN_DIR]
  CARGO_TARGET_DIR     cargo target dir                                           [$CARGO_TARGET_DIR]
  KAFKA_LIBS           Kafka jars (fetched by mvn from kafka/pom.xml)             [$KAFKA_LIBS]
  KAFKA_TOPIC / KAFKA_DLQ_TOPIC   topic names                 [$KAFKA_TOPIC / $KAFKA_DLQ_TOPIC]
  KAFKA_PRIORITY_TOPIC FATAL/ERROR topic, read first by the consumer  [$KAFKA_PRIORITY_TOPIC]
  KAFKA_PARTITIONS / KAFKA_PRIORITY_PARTITIONS   partitions of new topics  [$KAFKA_PARTITIONS / $KAFKA_PRIORITY_PARTITIONS]
  KAFKA_HEAP_OPTS      broker JVM heap                                           [$KAFKA_HEAP_OPTS]
  PG_VERSION           PostgreSQL major version to use          [highest installed]
  RUST_LOG, LOG_FORMAT passed to the services                   [info, json]
  POSTGRES_URL, POSTGRES_USERNAME, POSTGRES_PASSWORD, REDIS_HOST, REDIS_PORT,
  KAFKA_BOOTSTRAP_SERVERS   passed to the services (the README lists every variable)
Detailed output of 'up' goes to $SETUP_LOG.
EOF
}

need_component() {
  [[ $# -ge 1 ]] || die "missing component (one of: $(components))"
  is_component "$1" || die "unknown component '$1' (one of: $(components))"
}

main() {
  local cmd="${1:-up}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) run_steps ;;
    down) cmd_down ;;
    status) cmd_status ;;
    start) need_component "$@"; start_component "$1" ;;
    stop) need_component "$@"; stop_component "$1" ;;
    restart) need_component "$@"; stop_component "$1"; start_component "$1" ;;
    pid)
      need_component "$@"
      running_pid "$1" || { echo "$1: not running" >&2; exit 1; }
      ;;
    logs)
      need_component "$@"
      local f
      f="$(logfile "$1")"
      [[ -f "$f" ]] || die "no log file $f"
      if [[ -t 1 ]]; then tail -n 100 -f "$f"; else tail -n 200 "$f"; fi
      ;;
    test) cmd_test "$@" ;;
    kafka-topics | kafka-consumer-groups | kafka-get-offsets) cmd_kafka_cli "$cmd" "$@" ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

# allow `source setup.sh` (for poking at the functions) without running anything
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
