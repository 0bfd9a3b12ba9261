# setup/prometheus.sh (sourced by setup.sh): Prometheus, its PostgreSQL and Redis exporters, and Grafana if installed.
# shellcheck shell=bash

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

step_prometheus() {
  start_prometheus
  start_postgres_exporter
  start_redis_exporter
}

step_grafana() {
  if have_grafana; then
    start_grafana
  else
    note "skipped"
  fi
}
