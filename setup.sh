#!/usr/bin/env bash
# Local operations for the log pipeline: brings up PostgreSQL, Redis, a
# single-node KRaft Kafka, Prometheus + exporters, builds the Rust services and
# runs them, all bound to 127.0.0.1, without Docker or systemd.
# Run `./setup.sh help` for the commands and the environment it honours.
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
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-6}"
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

PACKAGES=(postgresql redis-server prometheus prometheus-postgres-exporter prometheus-redis-exporter
  kcat openjdk-17-jre-headless maven cmake pkg-config libssl-dev libpq-dev libcurl4-openssl-dev
  zlib1g-dev curl build-essential iproute2 python3-venv)

INFRA=(postgres redis kafka prometheus postgres-exporter redis-exporter)
APPS=(producer consumer gateway)

# ----------------------------------------------------------------- helpers ---
if [[ -t 1 ]]; then
  C_OK=$'\e[32m' C_BAD=$'\e[31m' C_DIM=$'\e[2m' C_OFF=$'\e[0m'
else
  C_OK='' C_BAD='' C_DIM='' C_OFF=''
fi

die() { echo "error: $*" >&2; exit 1; }
note() { printf '%s' "$*" >"$STEP_NOTE"; } # extra text for the step's progress line
now_us() { local t=${EPOCHREALTIME/./}; echo "$((10#$t))"; }

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
as_postgres() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else (cd / && sudo -u postgres "$@"); fi
}

have_grafana() { command -v grafana-server >/dev/null 2>&1; }

components() {
  local all=("${INFRA[@]}" "${APPS[@]}")
  have_grafana && all+=(grafana)
  echo "${all[@]}"
}

is_component() {
  local c
  for c in $(components); do [[ "$c" == "$1" ]] && return 0; done
  return 1
}

port_of() {
  case "$1" in
    kafka) echo 9092 ;; postgres) echo "$PG_PORT" ;; redis) echo 6379 ;; prometheus) echo 9090 ;;
    postgres-exporter) echo 9187 ;; redis-exporter) echo 9121 ;; producer) echo 8081 ;;
    consumer) echo 8082 ;; gateway) echo 8080 ;; grafana) echo 3000 ;;
  esac
}

# Health URL used by `status` (HTTP components only).
health_url() {
  case "$1" in
    producer) echo "http://127.0.0.1:8081/producer/actuator/health" ;;
    consumer) echo "http://127.0.0.1:8082/actuator/health" ;;
    gateway) echo "http://127.0.0.1:8080/gateway/actuator/health" ;;
    prometheus) echo "http://127.0.0.1:9090/-/ready" ;;
    postgres-exporter) echo "http://127.0.0.1:9187/metrics" ;;
    redis-exporter) echo "http://127.0.0.1:9121/metrics" ;;
    grafana) echo "http://127.0.0.1:3000/api/health" ;;
  esac
}

# Liveness URL waited for by `up`/`start`.
ready_url() {
  case "$1" in
    producer) echo "http://127.0.0.1:8081/producer/api/logs/health" ;;
    consumer) echo "http://127.0.0.1:8082/actuator/health" ;;
    gateway) echo "http://127.0.0.1:8080/gateway/api/query/health" ;;
    *) health_url "$1" ;;
  esac
}

probe() { curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null; }

pidfile() { echo "$RUN_DIR/$1.pid"; }
logfile() {
  if [[ "$1" == postgres ]]; then
    echo "/var/log/postgresql/postgresql-$(pg_version)-main.log"
  else
    echo "$RUN_DIR/$1.log"
  fi
}

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# Does process $2 look like our component $1?
cmdline_matches() {
  local c=$1 pid=$2 cmd argv0
  cmd="$(cmdline_of "$pid")" || return 1
  [[ -n "$cmd" ]] || return 1
  argv0="${cmd%% *}"
  argv0="${argv0##*/}"
  case "$c" in
    kafka) [[ "$argv0" == java && "$cmd" == *" kafka.Kafka $DATA_DIR/kafka/server.properties"* ]] ;;
    redis) [[ "$argv0" == redis-server* ]] ;; # redis rewrites its title to "redis-server 127.0.0.1:6379"
    prometheus) [[ "$argv0" == prometheus && "$cmd" == *"--storage.tsdb.path=$DATA_DIR/prometheus"* ]] ;;
    postgres-exporter) [[ "$argv0" == prometheus-postgres-exporter ]] ;;
    redis-exporter) [[ "$argv0" == prometheus-redis-exporter ]] ;;
    producer | consumer | gateway)
      local bin
      bin="$(app_binary "$c")"
      [[ "$argv0" == "${bin##*/}" || " $cmd" == *" $bin "* ]]
      ;;
    grafana) [[ "$argv0" == grafana-server || "$argv0" == grafana ]] ;;
    *) return 1 ;;
  esac
}

# Prints the pid of a running component; removes stale pid files.
running_pid() {
  local c=$1 f pid
  if [[ "$c" == postgres ]]; then
    local v
    v="$(pg_version)" || return 1
    as_root pg_ctlcluster "$v" main status >/dev/null 2>&1 || return 1
    head -n1 "/var/lib/postgresql/$v/main/postmaster.pid" 2>/dev/null || as_root head -n1 "/var/lib/postgresql/$v/main/postmaster.pid"
    return 0
  fi
  f="$(pidfile "$c")"
  [[ -f "$f" ]] || return 1
  pid="$(head -n1 "$f" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && cmdline_matches "$c" "$pid"; then
    echo "$pid"
    return 0
  fi
  rm -f "$f"
  return 1
}

# pid listening on 127.0.0.1:<port> (or any address), if any.
listener_pid() {
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}

port_busy() { [[ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]]; }

# Before starting: if our program already listens on the port (e.g. started
# from another clone of this repo), adopt it; if something else does, fail.
check_port_free() {
  local c=$1 port pid
  port="$(port_of "$c")"
  port_busy "$port" || return 0
  pid="$(listener_pid "$port")"
  if [[ -n "$pid" ]] && cmdline_matches "$c" "$pid"; then
    echo "$pid" >"$(pidfile "$c")"
    echo "$c: adopted already running instance (pid $pid) listening on $port"
    return 1
  fi
  echo "$c: port $port is already in use by pid ${pid:-?}: $( [[ -n "$pid" ]] && cmdline_of "$pid")" >&2
  echo "  (a system service? stop it, e.g. 'systemctl disable --now <unit>', then re-run)" >&2
  exit 1
}

# Shell snippet closing every inherited fd above 2 (for daemons).
# shellcheck disable=SC2016 # expanded by the inner bash
CLOSE_FDS='for fd in /proc/$$/fd/*; do fd=${fd##*/}; if ((fd > 2)); then eval "exec $fd>&-"; fi; done'
# as_root, for commands that leave a daemon behind (pg_ctlcluster start)
as_root_nofds() { as_root bash -c "$CLOSE_FDS"'; exec "$@"' _ "$@"; }

# launch <component> <cmd...>: start in its own session, detached, with a pid file.
launch() {
  local c=$1 f lf
  shift
  f="$(pidfile "$c")"
  lf="$(logfile "$c")"
  rm -f "$f"
  echo "=== $(date '+%F %T') starting $c: $*" >>"$lf"
  # The inner bash writes its own pid and execs the program (same pid), so the
  # pid file is right even if setsid had to fork. All fds above 2 are closed
  # (fd 3 is the terminal of setup.sh's steps; a CI runner may pass others) so
  # daemons do not hold CI pipes open. No ( ... & ) wrapper: bash would keep a
  # subshell waiting on the daemon.
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  setsid nohup bash -c "$CLOSE_FDS"'; cd "$0" && echo $$ >"$1" && shift && exec "$@"' "$REPO" "$f" "$@" </dev/null >>"$lf" 2>&1 &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s "$f" ]] && break
    sleep 0.1
  done
  [[ -s "$f" ]] || { echo "$c: did not start (no pid file)"; return 1; }
  echo "$c: started pid $(cat "$f"), log $lf"
}

# wait_for <component> <timeout-s> <cmd...>: poll until cmd succeeds; fail
# early if the component's process exits.
wait_for() {
  local c=$1 timeout=$2 start pid
  shift 2
  start=$SECONDS
  while ! "$@" >/dev/null 2>&1; do
    if [[ "$c" != postgres ]] && ! pid="$(running_pid "$c")"; then
      echo "$c: process exited while starting; last lines of $(logfile "$c"):"
      tail -n 30 "$(logfile "$c")" 2>/dev/null || true
      return 1
    fi
    if ((SECONDS - start >= timeout)); then
      echo "$c: not ready after ${timeout}s; last lines of $(logfile "$c"):"
      tail -n 30 "$(logfile "$c")" 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
  echo "$c: ready after $((SECONDS - start))s"
}

# --------------------------------------------------------------- postgres ---
pg_version() {
  if [[ -n "${PG_VERSION:-}" ]]; then
    echo "$PG_VERSION"
    return 0
  fi
  local v best=""
  for v in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x "$v" ]] || continue
    v="${v#/usr/lib/postgresql/}"
    v="${v%%/*}"
    if [[ -z "$best" ]] || ((v > best)); then best=$v; fi
  done
  [[ -n "$best" ]] || return 1
  echo "$best"
}

psql_su() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"; }
psql_app() {
  PGPASSWORD="$PG_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" "$@"
}

start_postgres() {
  local v restart=0 cur conf want
  v="$(pg_version)" || die "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres)"
  if ! pg_lsclusters -h | awk -v v="$v" '$1==v && $2=="main" {f=1} END {exit !f}'; then
    echo "creating cluster $v/main on port $PG_PORT"
    as_root_nofds pg_createcluster "$v" main --port "$PG_PORT"
  fi
  # listen only on 127.0.0.1 (Debian's default 'localhost' also binds ::1);
  # a conf.d drop-in keeps postgresql.conf untouched
  conf="/etc/postgresql/$v/main/conf.d/logpipeline.conf"
  want="# written by $REPO/setup.sh
listen_addresses = '127.0.0.1'"
  if [[ "$(as_root cat "$conf" 2>/dev/null)" != "$want" ]]; then
    echo "writing $conf"
    as_root mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$want" | as_root tee "$conf" >/dev/null
    as_root chown postgres:postgres "$conf"
    restart=1
  fi
  cur="$(pg_conftool -s "$v" main show port 2>/dev/null || true)"
  if [[ "$cur" != "$PG_PORT" ]]; then
    echo "setting port=$PG_PORT (was '$cur')"
    as_root pg_conftool "$v" main set port "$PG_PORT"
    restart=1
  fi
  if running_pid postgres >/dev/null; then
    if ((restart)); then
      as_root_nofds pg_ctlcluster "$v" main restart
    else
      echo "postgres $v/main already running"
    fi
  else
    check_port_free postgres || true
    as_root_nofds pg_ctlcluster "$v" main start
  fi
  wait_for postgres 30 pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
}

ensure_pg_app_db() {
  local v hba
  v="$(pg_version)"
  if [[ "$(psql_su -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]]; then
    echo "creating role $PG_USER"
    psql_su -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'"
  fi
  if [[ "$(psql_su -Atc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    echo "creating database $PG_DB"
    psql_su -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
  if ! psql_app -Atc 'SELECT 1' >/dev/null 2>&1; then
    # Either the password is not what we expect or pg_hba does not allow
    # password logins over TCP: fix both, then re-check.
    echo "password login over TCP failed; resetting password and pg_hba entry"
    psql_su -c "ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD'"
    hba="/etc/postgresql/$v/main/pg_hba.conf"
    if ! as_root grep -Eq "^host[[:space:]]+($PG_DB|all)[[:space:]]+($PG_USER|all)[[:space:]]+127\.0\.0\.1/32[[:space:]]+(scram-sha-256|md5)" "$hba"; then
      as_root sed -i "1i host $PG_DB $PG_USER 127.0.0.1/32 scram-sha-256" "$hba"
    fi
    as_root_nofds pg_ctlcluster "$v" main reload
    sleep 1
    psql_app -Atc 'SELECT 1' >/dev/null
  fi
  echo "postgres: $PG_USER@127.0.0.1:$PG_PORT/$PG_DB ok"
}

stop_postgres() {
  local v
  v="$(pg_version)" || return 0
  if running_pid postgres >/dev/null; then
    as_root pg_ctlcluster "$v" main stop 3>&-
    echo "postgres: stopped"
  else
    echo "postgres: not running"
  fi
}

# ------------------------------------------------------------------- kafka ---
kafka_tool() {
  local cls=$1
  shift
  java -XX:TieredStopAtLevel=1 -Xshare:auto -Xmx256m -cp "$KAFKA_LIBS/*" \
    -Dlog4j2.configurationFile="$REPO/kafka/tools-log4j2.properties" "$cls" "$@"
}

kafka_list_topics() {
  timeout 30 java -XX:TieredStopAtLevel=1 -Xshare:auto -Xmx256m -cp "$KAFKA_LIBS/*" \
    -Dlog4j2.configurationFile="$REPO/kafka/tools-log4j2.properties" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --list
}

kafka_jars_present() { compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; }

kafka_port_open() { (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; }
kafka_ready() { kafka_port_open && kafka_list_topics >/dev/null; }

start_kafka() {
  local dir="$DATA_DIR/kafka" props new id
  kafka_jars_present || die "Kafka jars missing in $KAFKA_LIBS (run ./setup.sh up)"
  mkdir -p "$dir/data"
  props="$dir/server.properties"
  new="$(sed "s|@LOG_DIR@|$dir/data|g" "$REPO/kafka/server.properties")"
  if [[ ! -f "$props" || "$(cat "$props")" != "$new" ]]; then
    printf '%s\n' "$new" >"$props"
    echo "kafka: wrote $props"
  fi
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    if running_pid kafka >/dev/null; then die "kafka is running but $dir/data/meta.properties is missing"; fi
    id="$(kafka_tool kafka.tools.StorageTool random-uuid | tail -n1)"
    echo "kafka: formatting $dir/data with cluster id $id"
    kafka_tool kafka.tools.StorageTool format -t "$id" -c "$props" --standalone
  fi
  if running_pid kafka >/dev/null; then
    echo "kafka: already running (pid $(running_pid kafka))"
  elif check_port_free kafka && check_port_free_9093; then
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
    launch kafka java $KAFKA_HEAP_OPTS -cp "$KAFKA_LIBS/*" \
      -Dlog4j2.configurationFile="$REPO/kafka/log4j2.properties" kafka.Kafka "$props"
  fi
  wait_for kafka 60 kafka_ready
  ensure_topics
}

check_port_free_9093() {
  if port_busy 9093; then
    local pid
    pid="$(listener_pid 9093)"
    echo "kafka: controller port 9093 is already in use by pid ${pid:-?}: $( [[ -n "$pid" ]] && cmdline_of "$pid")" >&2
    exit 1
  fi
}

ensure_topics() {
  local existing t missing=()
  existing="$(kafka_list_topics)"
  for t in "$KAFKA_TOPIC" "$KAFKA_DLQ_TOPIC"; do
    grep -qxF "$t" <<<"$existing" || missing+=("$t")
  done
  for t in "${missing[@]}"; do
    echo "kafka: creating topic $t ($KAFKA_PARTITIONS partitions)"
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --create \
      --if-not-exists --topic "$t" --partitions "$KAFKA_PARTITIONS" --replication-factor 1
  done
  [[ ${#missing[@]} -gt 0 ]] || echo "kafka: topics $KAFKA_TOPIC, $KAFKA_DLQ_TOPIC present"
}

# ------------------------------------------------------- simple components ---
start_redis() {
  mkdir -p "$DATA_DIR/redis"
  if running_pid redis >/dev/null; then
    echo "redis: already running (pid $(running_pid redis))"
  elif check_port_free redis; then
    launch redis redis-server --bind 127.0.0.1 --port 6379 --dir "$DATA_DIR/redis" \
      --save "" --appendonly no --daemonize no
  fi
  wait_for redis 30 redis_ping
}
redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == PONG ]]; }

start_prometheus() {
  mkdir -p "$DATA_DIR/prometheus"
  local pid
  if pid="$(running_pid prometheus)"; then
    if [[ "$REPO/prometheus/prometheus.yml" -nt "$(pidfile prometheus)" || "$REPO/prometheus/alerts.yml" -nt "$(pidfile prometheus)" ]]; then
      echo "prometheus: config changed, reloading"
      curl -fsS --max-time 5 -X POST http://127.0.0.1:9090/-/reload
      touch "$(pidfile prometheus)"
    else
      echo "prometheus: already running (pid $pid)"
    fi
  elif check_port_free prometheus; then
    launch prometheus prometheus --config.file="$REPO/prometheus/prometheus.yml" \
      --storage.tsdb.path="$DATA_DIR/prometheus" --web.listen-address=127.0.0.1:9090 --web.enable-lifecycle
  fi
  wait_for prometheus 60 probe "$(ready_url prometheus)"
}

start_postgres_exporter() {
  if running_pid postgres-exporter >/dev/null; then
    echo "postgres-exporter: already running (pid $(running_pid postgres-exporter))"
  elif check_port_free postgres-exporter; then
    launch postgres-exporter env \
      DATA_SOURCE_NAME="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB?sslmode=disable" \
      prometheus-postgres-exporter --web.listen-address=127.0.0.1:9187
  fi
  wait_for postgres-exporter 30 probe "$(ready_url postgres-exporter)"
}

start_redis_exporter() {
  if running_pid redis-exporter >/dev/null; then
    echo "redis-exporter: already running (pid $(running_pid redis-exporter))"
  elif check_port_free redis-exporter; then
    launch redis-exporter prometheus-redis-exporter -redis.addr redis://127.0.0.1:6379 \
      -web.listen-address 127.0.0.1:9121
  fi
  wait_for redis-exporter 30 probe "$(ready_url redis-exporter)"
}

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
      KAFKA_TOPIC="$KAFKA_TOPIC" KAFKA_DLQ_TOPIC="$KAFKA_DLQ_TOPIC" \
      "$bin"
  fi
  wait_for "$c" 60 probe "$(ready_url "$c")"
}

start_grafana() {
  have_grafana || { echo "grafana: not installed"; return 0; }
  local home=/usr/share/grafana
  mkdir -p "$DATA_DIR/grafana"
  if running_pid grafana >/dev/null; then
    echo "grafana: already running (pid $(running_pid grafana))"
  elif check_port_free grafana; then
    launch grafana env GRAFANA_DASHBOARDS_DIR="$REPO/grafana/dashboards" \
      GF_PATHS_PROVISIONING="$REPO/grafana/provisioning" GF_PATHS_DATA="$DATA_DIR/grafana" \
      GF_PATHS_LOGS="$RUN_DIR" GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT=3000 \
      grafana-server --homepath "$home"
  fi
  wait_for grafana 60 probe "$(ready_url grafana)"
}

start_component() {
  mkdir -p "$RUN_DIR"
  case "$1" in
    postgres)
      start_postgres
      ensure_pg_app_db
      ;;
    redis) start_redis ;;
    kafka) start_kafka ;;
    prometheus) start_prometheus ;;
    postgres-exporter) start_postgres_exporter ;;
    redis-exporter) start_redis_exporter ;;
    producer | consumer | gateway) start_app "$1" ;;
    grafana) start_grafana ;;
    *) die "unknown component '$1' (one of: $(components))" ;;
  esac
}

stop_component() {
  local c=$1 pid i
  if [[ "$c" == postgres ]]; then
    stop_postgres
    return 0
  fi
  if ! pid="$(running_pid "$c")"; then
    echo "$c: not running"
    rm -f "$(pidfile "$c")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$c: still alive after 30s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$(pidfile "$c")"
  echo "$c: stopped (pid $pid)"
}

# ------------------------------------------------------------------ status ---
status_line() {
  local c=$1 state health port pid colour
  port="$(port_of "$c")"
  if pid="$(running_pid "$c" 2>/dev/null)"; then
    state=up
    case "$c" in
      postgres) pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && health="ok (pg_isready)" || health="FAIL (pg_isready)" ;;
      redis) redis_ping && health="ok (PONG)" || health="FAIL (redis-cli ping)" ;;
      kafka) kafka_list_topics >/dev/null 2>&1 && health="ok (topics listed)" || health="FAIL (topic list)" ;;
      *) probe "$(health_url "$c")" && health="ok ($(health_url "$c"))" || health="FAIL ($(health_url "$c"))" ;;
    esac
  else
    pid=-
    state=down
    health=-
    if [[ $SKIP_APP == 1 ]] && [[ " ${APPS[*]} " == *" $c "* ]]; then state=skipped; fi
  fi
  if [[ "$state" == up && "$health" == ok* ]]; then colour=$C_OK
  elif [[ "$state" == skipped ]]; then colour=$C_DIM
  else colour=$C_BAD; fi
  printf '%-18s %s%-8s%s %-6s %-8s %s\n' "$c" "$colour" "$state" "$C_OFF" "$port" "$pid" "$health"
  [[ "$state" == skipped ]] || [[ "$state" == up && "$health" == ok* ]]
}

cmd_status() {
  local c bad=0
  printf '%-18s %-8s %-6s %-8s %s\n' COMPONENT STATE PORT PID HEALTH
  for c in $(components); do
    status_line "$c" || bad=1
  done
  return $bad
}

print_urls() {
  cat <<EOF

URLs:
  producer    http://127.0.0.1:8081/producer/api/logs     (health: /producer/actuator/health)
  consumer    http://127.0.0.1:8082/actuator/health
  gateway     http://127.0.0.1:8080/gateway/api/query     (health: /gateway/actuator/health)
  prometheus  http://127.0.0.1:9090                        (alerts: /alerts, targets: /targets)
  postgres    postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
  redis       redis://127.0.0.1:6379
  kafka       $KAFKA_BOOTSTRAP  (topics: $KAFKA_TOPIC, $KAFKA_DLQ_TOPIC; ./setup.sh kafka-topics --list)
EOF
  if have_grafana; then echo "  grafana     http://127.0.0.1:3000 (admin/admin)"; fi
  echo "  logs        $RUN_DIR/<component>.log   (./setup.sh logs <component>)"
}

# -------------------------------------------------------------------- steps ---
step_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" == "ii "* ]] || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    # keep the Debian packages from starting their own (systemd/sysv) daemons on our ports
    local policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
      as_root chmod 755 /usr/sbin/policy-rc.d
      policy_created=1
    fi
    as_root mkdir -p /usr/share/man/man1 # openjdk's postinst needs it on slim images
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } 3>&- || rc=$?
    if ((policy_created)); then as_root rm -f /usr/sbin/policy-rc.d; fi
    ((rc == 0)) || return $rc
    note "installed ${#missing[@]}: ${missing[*]}"
  else
    echo "all ${#PACKAGES[@]} packages present"
  fi
  if [[ $SKIP_APP == 0 ]] && ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found in PATH (nor in ~/.cargo/bin). Install Rust with rustup (https://rustup.rs):"
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
    return 1
  fi
}

step_kafka_jars() {
  if kafka_jars_present; then
    echo "kafka $KAFKA_VERSION jars present in $KAFKA_LIBS"
    return 0
  fi
  local tmp="$KAFKA_LIBS.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$KAFKA_LIBS")"
  mvn -B -q -f "$REPO/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime 3>&-
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  kafka_jars_present
  note "downloaded $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars"
}

step_postgres() {
  start_postgres
  ensure_pg_app_db
}
step_redis() { start_redis; }
step_kafka() { start_kafka; }
step_prometheus() {
  start_prometheus
  start_postgres_exporter
  start_redis_exporter
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

step_schema() {
  local dir="$REPO/migrations" d name v found missing=()
  psql_app -Atc "SELECT to_regclass('public.log_events') IS NOT NULL" | grep -qx t ||
    { echo "table log_events does not exist in $PG_DB"; return 1; }
  [[ -d "$dir" ]] || { echo "no migrations directory at $dir"; return 1; }
  found="$(psql_app -Atc 'SELECT version FROM __diesel_schema_migrations')"
  local n=0
  for d in "$dir"/*/; do
    [[ -d "$d" ]] || continue
    name="$(basename "$d")"
    v="${name%%_*}"
    v="${v//-/}"
    n=$((n + 1))
    grep -qxF "$v" <<<"$found" || missing+=("$name ($v)")
  done
  if ((${#missing[@]})); then
    echo "migrations not applied: ${missing[*]}"
    return 1
  fi
  echo "log_events present; all $n migrations applied"
  note "$n migrations applied"
}

step_grafana() {
  if have_grafana; then
    start_grafana
  else
    note "skipped"
  fi
}

run_steps() {
  local names=(packages "kafka jars" postgres redis kafka "prometheus + exporters" build services "schema check" grafana)
  local fns=(step_packages step_kafka_jars step_postgres step_redis step_kafka step_prometheus step_build step_services step_schema step_grafana)
  local n=${#names[@]} i name t0 t1 dt rc pad result total0
  total0=$(now_us)
  mkdir -p "$RUN_DIR"
  echo "=== $(date '+%F %T') setup.sh up (SETUP_SKIP_APP=$SKIP_APP) ===" >>"$SETUP_LOG"
  for ((i = 0; i < n; i++)); do
    name=${names[i]}
    printf -v pad '%*s' $((24 - ${#name})) ''
    pad=${pad// /.}
    if [[ $SKIP_APP == 1 ]] && ((i >= 6 && i <= 8)); then
      printf '[%2d/%d] %s %s %s\n' $((i + 1)) "$n" "$name" "$pad" "skipped (SETUP_SKIP_APP=1)"
      continue
    fi
    echo "--- step $((i + 1))/$n: $name ($(date '+%T'))" >>"$SETUP_LOG"
    rm -f "$STEP_NOTE"
    t0=$(now_us)
    set +e
    (set -e; "${fns[i]}") 3>&1 >>"$SETUP_LOG" 2>&1
    rc=$?
    set -e
    t1=$(now_us)
    dt=$(((t1 - t0) / 100000))
    result=ok
    [[ -s "$STEP_NOTE" ]] && result="$(cat "$STEP_NOTE")"
    [[ "$result" == skipped ]] || [[ $result == ok ]] || result="ok, $result"
    if ((rc != 0)); then
      printf '[%2d/%d] %s %s %sFAILED%s (%d.%ds)\n' $((i + 1)) "$n" "$name" "$pad" "$C_BAD" "$C_OFF" $((dt / 10)) $((dt % 10))
      echo "FAILED: $name — see $SETUP_LOG"
      echo "----- last 20 lines of $SETUP_LOG -----"
      tail -n 20 "$SETUP_LOG"
      exit 1
    fi
    printf '[%2d/%d] %s %s %s (%d.%ds)\n' $((i + 1)) "$n" "$name" "$pad" "$result" $((dt / 10)) $((dt % 10))
    if [[ "$name" == grafana ]] && ! have_grafana; then
      echo "grafana: not installed on this machine (dashboards are in grafana/; import them into any Grafana)"
    fi
  done
  rm -f "$STEP_NOTE"
  dt=$((($(now_us) - total0) / 100000))
  echo "done in $((dt / 10)).$((dt % 10))s"
  echo
  cmd_status || true
  print_urls
}

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

add_bootstrap() {
  local a
  for a in "$@"; do
    [[ "$a" == --bootstrap-server || "$a" == --bootstrap-server=* ]] && return 1
  done
  return 0
}

main() {
  local cmd="${1:-up}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
    up) run_steps ;;
    down)
      mkdir -p "$RUN_DIR"
      local c
      for c in gateway consumer producer grafana redis-exporter postgres-exporter prometheus kafka redis; do
        if [[ $c == grafana ]] && ! have_grafana; then continue; fi
        stop_component "$c"
      done
      stop_postgres
      ;;
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
    test)
      command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup (https://rustup.rs)"
      cd "$REPO"
      if (($#)); then
        echo "+ CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo test --release --workspace $*"
        exec cargo test --release --workspace "$@"
      fi
      # The whole suite: everything but the chaos run, then the chaos run with its
      # output shown (its summary is the point), then the two tests that kill the
      # stack's consumer again with one writer instead of the default (one per core),
      # then schemathesis on both API documents. The takeover test runs the release
      # binary itself, so the binaries are built first.
      echo "+ CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release --workspace --bins"
      cargo build --release --workspace --bins
      echo "+ CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo test --release --workspace -- --skip survives_the_chaos"
      cargo test --release --workspace -- --skip survives_the_chaos
      echo "+ cargo test --release -p integration-tests --test chaos -- --nocapture"
      cargo test --release -p integration-tests --test chaos -- --nocapture
      echo "+ CONSUMER_WRITERS=1: the crash and chaos runs again"
      # (exported for the run too: both tests start the consumer again themselves)
      local rc=0
      CONSUMER_WRITERS=1 "$REPO/setup.sh" restart consumer
      CONSUMER_WRITERS=1 cargo test --release -p integration-tests --test consumer_crash --test chaos \
        -- --nocapture || rc=$?
      env -u CONSUMER_WRITERS "$REPO/setup.sh" restart consumer
      ((rc == 0)) || exit "$rc"
      echo "+ integration-tests/schemathesis/run.sh"
      "$REPO/integration-tests/schemathesis/run.sh"
      ;;
    kafka-topics | kafka-consumer-groups)
      local cls=org.apache.kafka.tools.TopicCommand
      [[ $cmd == kafka-consumer-groups ]] && cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
      kafka_jars_present || die "Kafka jars missing in $KAFKA_LIBS (run ./setup.sh up)"
      if add_bootstrap "$@"; then
        kafka_tool "$cls" --bootstrap-server "$KAFKA_BOOTSTRAP" "$@"
      else
        kafka_tool "$cls" "$@"
      fi
      ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

# allow `source setup.sh` (for poking at the functions) without running anything
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
