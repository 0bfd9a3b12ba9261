# load-test/bench-producer.sh (sourced by agents.sh and syslog.sh): a producer of a
# benchmark's own. The caller sets BIN (release binaries), RUN (a scratch dir), TOPIC
# and PORT, then calls bench_producer_start with any extra settings (VAR=value). The
# producer gets fresh topics TOPIC and TOPIC-priority and no rate limit to speak of
# (one client sends everything, and the point is what a protocol costs, not the
# limit); on exit it prints how many records each partition got, is stopped by its
# pid, its topics deleted and RUN removed. PRODUCER_BIN runs another build of the
# producer (an older commit's, to compare).
# shellcheck shell=bash

BENCH_PRODUCER_PID=""
trap bench_cleanup EXIT

bench_cleanup() {
    if [[ -n "$BENCH_PRODUCER_PID" ]] && kill -0 "$BENCH_PRODUCER_PID" 2>/dev/null; then
        kill "$BENCH_PRODUCER_PID"
        wait "$BENCH_PRODUCER_PID" 2>/dev/null || true
    fi
    if [[ -n "$BENCH_PRODUCER_PID" ]]; then
        echo "records per partition (topic:partition:end offset):"
        ./setup.sh kafka-get-offsets --topic "$TOPIC" 2>/dev/null | sed 's/^/  /' || true
    fi
    ./setup.sh kafka-topics --delete --topic "$TOPIC" >/dev/null 2>&1 || true
    ./setup.sh kafka-topics --delete --topic "$TOPIC-priority" >/dev/null 2>&1 || true
    rm -rf "$RUN"
}

bench_producer_start() {
    ./setup.sh kafka-topics --create --topic "$TOPIC" --partitions 3 >/dev/null
    ./setup.sh kafka-topics --create --topic "$TOPIC-priority" --partitions 2 >/dev/null
    env KAFKA_TOPIC="$TOPIC" KAFKA_PRIORITY_TOPIC="$TOPIC-priority" SERVER_PORT="$PORT" \
        RATE_LIMIT_EVENTS_PER_SECOND=100000000 RATE_LIMIT_BURST=100000000 \
        LOG_FORMAT=json RUST_LOG=warn "$@" "${PRODUCER_BIN:-$BIN/log-producer}" >"$RUN/producer.log" 2>&1 &
    BENCH_PRODUCER_PID=$!
    echo "$BENCH_PRODUCER_PID" >"$RUN/producer.pid"
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$PORT/producer/actuator/health" >/dev/null && return 0
        sleep 0.1
    done
    echo "the benchmark's producer did not come up:"
    cat "$RUN/producer.log"
    exit 1
}
