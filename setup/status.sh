# setup/status.sh (sourced by setup.sh): the status table (state and health per component) and the URL list.
# shellcheck shell=bash

if [[ -t 1 ]]; then
  C_OK=$'\e[32m' C_BAD=$'\e[31m' C_DIM=$'\e[2m' C_OFF=$'\e[0m'
else
  C_OK='' C_BAD='' C_DIM='' C_OFF=''
fi

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
  kafka       $KAFKA_BOOTSTRAP  (topics: $KAFKA_TOPIC, $KAFKA_PRIORITY_TOPIC, $KAFKA_DLQ_TOPIC; ./setup.sh kafka-topics --list)
EOF
  if have_grafana; then echo "  grafana     http://127.0.0.1:3000 (admin/admin)"; fi
  echo "  logs        $RUN_DIR/<component>.log   (./setup.sh logs <component>)"
}
