# setup/process.sh (sourced by setup.sh): the components and their processes: ports, pid files, launch, wait, stop.
# shellcheck shell=bash

INFRA=(postgres redis kafka prometheus postgres-exporter redis-exporter)
APPS=(producer consumer gateway)

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
  local c=$1 timeout=$2 start pid next_report=15
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
    if ((SECONDS - start >= next_report)); then
      echo "$c: not ready yet after $((SECONDS - start))s (waiting up to ${timeout}s)"
      next_report=$((next_report + 15))
    fi
    sleep 0.5
  done
  echo "$c: ready after $((SECONDS - start))s"
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

# `down`: stop everything, services first, PostgreSQL last; data is kept.
cmd_down() {
  mkdir -p "$RUN_DIR"
  local c
  for c in gateway consumer producer grafana redis-exporter postgres-exporter prometheus kafka redis; do
    if [[ $c == grafana ]] && ! have_grafana; then continue; fi
    stop_component "$c"
  done
  stop_postgres
}
