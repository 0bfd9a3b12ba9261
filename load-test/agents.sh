#!/usr/bin/env bash
# The agent protocols against /bulk (#19): the same events, BATCH per request from
# CONCURRENCY connections for DURATION seconds, through /bulk (NDJSON), OTLP/HTTP
# (protobuf), the Elasticsearch _bulk API (NDJSON pairs) and Loki push (snappy
# protobuf), one after the other in one run.
#
# The target is a producer of the benchmark's own (release binary, 127.0.0.1:18081,
# fresh topics agents-bench-<time>, no consumer, no rate limit), so nothing is stored,
# nothing else competes on its topic, and the topics are deleted at the end. Per endpoint, over
# the load window only: accepted records/s, the ratio to /bulk, the producer's CPU
# seconds per 1,000 records, and the load generator's own CPU. The generator sends 64
# bodies built before the clock starts (--prebuilt-bodies), so it spends almost no CPU
# of its own on the two cores the producer needs; the records repeat, which is fine
# with no consumer behind the topic.
#
#   ./load-test/agents.sh [duration s] [batch] [concurrency]     (default 15 1000 8)
# GZIP=1 gzips the bodies the agents gzip (/bulk, OTLP, _bulk; Loki is snappy already).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logpipeline/target}"
DURATION="${1:-15}"
BATCH="${2:-1000}"
CONCURRENCY="${3:-8}"
PORT="${AGENTS_BENCH_PORT:-18081}"
GZIP_FLAG=()
[[ "${GZIP:-0}" == 1 ]] && GZIP_FLAG=(--gzip)

cargo build --release -q -p log-producer -p load-test
BIN="$CARGO_TARGET_DIR/release"
TOPIC="agents-bench-$(date +%s)"
RUN="$(mktemp -d /tmp/agents-bench.XXXXXX)"
RESULTS="$RUN/results"
mkdir -p "$RESULTS"
PRODUCER_PID=""
cleanup() {
    if [[ -n "$PRODUCER_PID" ]] && kill -0 "$PRODUCER_PID" 2>/dev/null; then
        kill "$PRODUCER_PID"
        wait "$PRODUCER_PID" 2>/dev/null || true
    fi
    ./setup.sh kafka-topics --delete --topic "$TOPIC" >/dev/null 2>&1 || true
    ./setup.sh kafka-topics --delete --topic "$TOPIC-priority" >/dev/null 2>&1 || true
    rm -rf "$RUN"
}
trap cleanup EXIT

echo "agents bench: topics $TOPIC(-priority), producer on 127.0.0.1:$PORT"
./setup.sh kafka-topics --create --topic "$TOPIC" --partitions 3 >/dev/null
./setup.sh kafka-topics --create --topic "$TOPIC-priority" --partitions 2 >/dev/null
# No rate limit to speak of: one client sends everything, and the point is what each
# protocol costs, not the limit (200,000 events/s by default).
KAFKA_TOPIC="$TOPIC" KAFKA_PRIORITY_TOPIC="$TOPIC-priority" SERVER_PORT="$PORT" \
    RATE_LIMIT_EVENTS_PER_SECOND=100000000 RATE_LIMIT_BURST=100000000 \
    LOG_FORMAT=json RUST_LOG=warn "$BIN/log-producer" >"$RUN/producer.log" 2>&1 &
PRODUCER_PID=$!
echo "$PRODUCER_PID" >"$RUN/producer.pid"
# The report samples the services whose pid files are in the run dir: this producer,
# and the stack's Kafka.
cp .run/kafka.pid "$RUN/" 2>/dev/null || true
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/producer/actuator/health" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/producer/actuator/health" >/dev/null \
    || { echo "the benchmark's producer did not come up:"; cat "$RUN/producer.log"; exit 1; }

TIMEFORMAT='%U %S'
for endpoint in bulk otlp es-bulk loki; do
    echo "--- $endpoint: ${DURATION}s, $BATCH per request, $CONCURRENCY connections ${GZIP_FLAG[*]}"
    generator_cpu="$({ time "$BIN/load-test" --mode ingest --endpoint "$endpoint" \
        --batch-size "$BATCH" --duration "$DURATION" --concurrency "$CONCURRENCY" \
        --prebuilt-bodies 64 \
        "${GZIP_FLAG[@]}" --producer-url "http://127.0.0.1:$PORT" \
        --run-dir "$RUN" --results-dir "$RESULTS/$endpoint" >"$RUN/$endpoint.out" 2>&1; } 2>&1)"
    grep -E '^\[ *[0-9]+s\]' "$RUN/$endpoint.out" | tail -n 3
    reports=("$RESULTS/$endpoint"/*.json)
    echo "$endpoint ${reports[0]} $generator_cpu" >>"$RUN/index"
done

python3 - "$RUN/index" "$DURATION" <<'EOF'
import json, sys
rows = []
for line in open(sys.argv[1]):
    endpoint, path, user, system = line.split()
    report = json.load(open(path))
    producer = report["services"]["producer"]
    ok = report["ok"]
    rows.append((endpoint, report["throughput_per_second"], ok, report["failed"],
                 producer["cpu_seconds"], producer["cpu_cores"],
                 float(user) + float(system), report["elapsed_seconds"]))
bulk = next(r for r in rows if r[0] == "bulk")[1]
print()
print("| endpoint | records/s | vs /bulk | failed | producer CPU s per 1,000 records "
      "| producer cores | generator CPU cores |")
print("|---|---|---|---|---|---|---|")
for endpoint, rate, ok, failed, cpu, cores, gen, elapsed in rows:
    per_k = cpu / ok * 1000 if ok else float("nan")
    print(f"| {endpoint} | {rate:,.0f} | {rate / bulk:.0%} | {failed} | {per_k:.4f} "
          f"| {cores:.2f} | {gen / elapsed:.2f} |")
EOF
