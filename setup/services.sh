# setup/services.sh (sourced by setup.sh): the three Rust services: building and starting them.
# shellcheck shell=bash

app_binary() {
  case "$1" in
    producer) echo "$BIN_DIR/log-producer" ;; consumer) echo "$BIN_DIR/log-consumer" ;;
    gateway) echo "$BIN_DIR/api-gateway" ;;
  esac
}

start_app() {
  local c=$1 bin pid
  bin="$(app_binary "$c")"
  [[ -x "$bin" ]] || die "$c: binary $bin not found (build with ./setup.sh up)"
  if pid="$(running_pid "$c")"; then
    if [[ "$bin" -nt "$(pidfile "$c")" ]]; then
      echo "$c: binary was rebuilt, restarting"
      stop_component "$c"
    else
      echo "$c: already running (pid $pid)"
    fi
  fi
  if ! running_pid "$c" >/dev/null && check_port_free "$c"; then
    launch "$c" env \
      RUST_LOG="${RUST_LOG:-info}" LOG_FORMAT="${LOG_FORMAT:-json}" \
      POSTGRES_URL="${POSTGRES_URL:-postgres://127.0.0.1:$PG_PORT/$PG_DB}" \
      POSTGRES_USERNAME="${POSTGRES_USERNAME:-$PG_USER}" POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-$PG_PASSWORD}" \
      REDIS_HOST="${REDIS_HOST:-127.0.0.1}" REDIS_PORT="${REDIS_PORT:-6379}" \
      KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$KAFKA_BOOTSTRAP}" \
      KAFKA_TOPIC="$KAFKA_TOPIC" KAFKA_DLQ_TOPIC="$KAFKA_DLQ_TOPIC" KAFKA_PRIORITY_TOPIC="$KAFKA_PRIORITY_TOPIC" \
      "$bin"
  fi
  wait_for "$c" 60 probe "$(ready_url "$c")"
}

step_build() {
  command -v cargo >/dev/null 2>&1 || { echo "cargo not found; install Rust with rustup (https://rustup.rs)"; return 1; }
  local start=$SECONDS next=30 pid rc=0
  echo "build: cargo build --release --workspace --bins (CARGO_TARGET_DIR=$CARGO_TARGET_DIR; a cold build takes ~7 minutes)" >&3
  (cd "$REPO" && exec cargo build --release --workspace --bins) 3>&- &
  pid=$!
  # a background job ignores SIGINT: take cargo down with us on Ctrl-C
  trap 'kill -TERM "$pid" 2>/dev/null; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS - start >= next)); then
      echo "        still building ($((SECONDS - start))s)" >&3
      next=$((next + 30))
    fi
    sleep 0.5
  done
  wait "$pid" || rc=$?
  trap - INT TERM
  ((rc == 0)) || return $rc
  local b
  for b in log-producer log-consumer api-gateway; do
    [[ -x "$BIN_DIR/$b" ]] || { echo "binary $BIN_DIR/$b missing after build"; return 1; }
  done
}

step_services() {
  start_app producer
  start_app consumer
  start_app gateway
}
