# setup/kafka.sh (sourced by setup.sh): the single-node KRaft Kafka: its jars, broker, topics and CLI tools.
# shellcheck shell=bash

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
  wait_for_kafka
  ensure_topics
}

# A broker that was stopped uncleanly (a reboot, kill -9) recovers every partition's
# log before it answers, a log line for each; with thousands of partitions (a machine
# that ran many test suites) that takes minutes. So the wait goes on while its log
# grows, up to 20 minutes, and gives up after 60 s without a new line.
wait_for_kafka() {
  local start=$SECONDS log size last_size=-1 last_change=$SECONDS next_report=15
  log="$(logfile kafka)"
  while ! kafka_ready >/dev/null 2>&1; do
    if ! running_pid kafka >/dev/null; then
      echo "kafka: process exited while starting; last lines of $log:"
      tail -n 30 "$log" 2>/dev/null || true
      return 1
    fi
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    if ((size != last_size)); then
      last_size=$size
      last_change=$SECONDS
    fi
    if ((SECONDS - last_change >= 60 || SECONDS - start >= 1200)); then
      echo "kafka: not ready after $((SECONDS - start))s (its log last grew $((SECONDS - last_change))s ago); last lines of $log:"
      tail -n 30 "$log" 2>/dev/null || true
      return 1
    fi
    if ((SECONDS - start >= next_report)); then
      echo "kafka: not ready yet after $((SECONDS - start))s; its last log line: $(tail -n 1 "$log" | cut -c1-160)"
      next_report=$((next_report + 15))
    fi
    sleep 0.5
  done
  echo "kafka: ready after $((SECONDS - start))s"
}

check_port_free_9093() {
  if port_busy 9093; then
    local pid
    pid="$(listener_pid 9093)"
    echo "kafka: controller port 9093 is already in use by pid ${pid:-?}: $( [[ -n "$pid" ]] && cmdline_of "$pid")" >&2
    exit 1
  fi
}

# The priority topic (FATAL/ERROR) gets partitions of its own count: it carries little.
ensure_topics() {
  local existing t partitions missing=()
  existing="$(kafka_list_topics)"
  for t in "$KAFKA_TOPIC" "$KAFKA_DLQ_TOPIC" "$KAFKA_PRIORITY_TOPIC"; do
    grep -qxF "$t" <<<"$existing" || missing+=("$t")
  done
  for t in "${missing[@]}"; do
    partitions=$KAFKA_PARTITIONS
    [[ $t != "$KAFKA_PRIORITY_TOPIC" ]] || partitions=$KAFKA_PRIORITY_PARTITIONS
    echo "kafka: creating topic $t ($partitions partitions)"
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --create \
      --if-not-exists --topic "$t" --partitions "$partitions" --replication-factor 1
  done
  [[ ${#missing[@]} -gt 0 ]] || echo "kafka: topics $KAFKA_TOPIC, $KAFKA_PRIORITY_TOPIC, $KAFKA_DLQ_TOPIC present"
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

step_kafka() { start_kafka; }

add_bootstrap() {
  local a
  for a in "$@"; do
    [[ "$a" == --bootstrap-server || "$a" == --bootstrap-server=* ]] && return 1
  done
  return 0
}

# kafka-topics | kafka-consumer-groups | kafka-get-offsets <args>: Kafka's own CLI,
# with --bootstrap-server added unless the arguments give one.
cmd_kafka_cli() {
  local cmd=$1
  shift
  local cls
  case $cmd in
    kafka-topics) cls=org.apache.kafka.tools.TopicCommand ;;
    kafka-consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-get-offsets) cls=org.apache.kafka.tools.GetOffsetShell ;;
  esac
  kafka_jars_present || die "Kafka jars missing in $KAFKA_LIBS (run ./setup.sh up)"
  if add_bootstrap "$@"; then
    kafka_tool "$cls" --bootstrap-server "$KAFKA_BOOTSTRAP" "$@"
  else
    kafka_tool "$cls" "$@"
  fi
}
