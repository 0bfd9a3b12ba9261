# setup/steps.sh (sourced by setup.sh): the named steps of `./setup.sh up` and the runner printing their progress.
# shellcheck shell=bash

# The steps of `up`, in order, as "name:function"; the name is what the progress
# line shows and what the rules below go by.
UP_STEPS=(
  "packages:step_packages"
  "kafka jars:step_kafka_jars"
  "postgres:step_postgres"
  "redis:step_redis"
  "kafka:step_kafka"
  "prometheus + exporters:step_prometheus"
  "build:step_build"
  "services:step_services"
  "schema check:step_schema"
  "grafana:step_grafana"
)
# The steps SETUP_SKIP_APP=1 leaves out: everything about the Rust services.
APP_STEPS=(build services "schema check")

# Is step $1 one of the app steps?
is_app_step() {
  local s
  for s in "${APP_STEPS[@]}"; do [[ "$s" == "$1" ]] && return 0; done
  return 1
}

run_steps() {
  local n=${#UP_STEPS[@]} i name fn t0 t1 dt rc pad result total0
  total0=$(now_us)
  mkdir -p "$RUN_DIR"
  echo "=== $(date '+%F %T') setup.sh up (SETUP_SKIP_APP=$SKIP_APP) ===" >>"$SETUP_LOG"
  for ((i = 0; i < n; i++)); do
    name=${UP_STEPS[i]%%:*}
    fn=${UP_STEPS[i]#*:}
    printf -v pad '%*s' $((24 - ${#name})) ''
    pad=${pad// /.}
    if [[ $SKIP_APP == 1 ]] && is_app_step "$name"; then
      printf '[%2d/%d] %s %s %s\n' $((i + 1)) "$n" "$name" "$pad" "skipped (SETUP_SKIP_APP=1)"
      continue
    fi
    echo "--- step $((i + 1))/$n: $name ($(date '+%T'))" >>"$SETUP_LOG"
    rm -f "$STEP_NOTE"
    t0=$(now_us)
    set +e
    (set -e; "$fn") 3>&1 >>"$SETUP_LOG" 2>&1
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
