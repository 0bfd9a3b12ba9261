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
# The box is shared and noisy, so the four endpoints are run in ROUNDS rounds (default
# 3), each round in a different order, and the table gives each endpoint's median run
# (records/s and CPU), with the range of its records/s.
#
#   ./load-test/agents.sh [duration s] [batch] [concurrency]     (default 10 1000 8)
# GZIP=1 gzips the bodies the agents gzip (/bulk, OTLP, _bulk; Loki is snappy already).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logpipeline/target}"
DURATION="${1:-10}"
BATCH="${2:-1000}"
CONCURRENCY="${3:-8}"
PORT="${AGENTS_BENCH_PORT:-18081}"
ROUNDS="${ROUNDS:-3}"
GZIP_FLAG=()
[[ "${GZIP:-0}" == 1 ]] && GZIP_FLAG=(--gzip)

cargo build --release -q -p log-producer -p load-test
BIN="$CARGO_TARGET_DIR/release"
TOPIC="agents-bench-$(date +%s)"
RUN="$(mktemp -d /tmp/agents-bench.XXXXXX)"
RESULTS="$RUN/results"
mkdir -p "$RESULTS"
# shellcheck source=load-test/bench-producer.sh
source load-test/bench-producer.sh

echo "agents bench: topics $TOPIC(-priority), producer on 127.0.0.1:$PORT"
# shellcheck disable=SC2119 # no extra settings: the script's own arguments are not the producer's
bench_producer_start
# The report samples the services whose pid files are in the run dir: this producer,
# and the stack's Kafka.
cp .run/kafka.pid "$RUN/" 2>/dev/null || true

TIMEFORMAT='%U %S'
ENDPOINTS=(bulk otlp es-bulk loki)
for round in $(seq 1 "$ROUNDS"); do
    for k in 0 1 2 3; do
        # Each round starts one endpoint later, so none always runs first or last.
        endpoint="${ENDPOINTS[$(((k + round - 1) % 4))]}"
        echo "--- round $round/$ROUNDS, $endpoint: ${DURATION}s, $BATCH per request, $CONCURRENCY connections ${GZIP_FLAG[*]}"
        out="$RESULTS/$endpoint-$round"
        generator_cpu="$({ time "$BIN/load-test" --mode ingest --endpoint "$endpoint" \
            --batch-size "$BATCH" --duration "$DURATION" --concurrency "$CONCURRENCY" \
            --prebuilt-bodies 64 \
            "${GZIP_FLAG[@]}" --producer-url "http://127.0.0.1:$PORT" \
            --run-dir "$RUN" --results-dir "$out" >"$out.out" 2>&1; } 2>&1)"
        grep -E '^accepted events/s' "$out.out" || tail -n 5 "$out.out"
        reports=("$out"/*.json)
        echo "$endpoint ${reports[0]} $generator_cpu" >>"$RUN/index"
    done
done

python3 - "$RUN/index" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    endpoint, path, user, system = line.split()
    report = json.load(open(path))
    producer = report["services"]["producer"]
    ok = report["ok"]
    runs.setdefault(endpoint, []).append({
        "rate": report["throughput_per_second"],
        "failed": report["failed"],
        "per_k": producer["cpu_seconds"] / ok * 1000 if ok else float("nan"),
        "cores": producer["cpu_cores"],
        "generator": (float(user) + float(system)) / report["elapsed_seconds"],
    })
def median(endpoint, key):
    return statistics.median(r[key] for r in runs[endpoint])
bulk = median("bulk", "rate")
print()
print("| endpoint | records/s (median) | range | vs /bulk | failed | producer CPU s "
      "per 1,000 records | producer cores | generator cores |")
print("|---|---|---|---|---|---|---|---|")
for endpoint in ["bulk", "otlp", "es-bulk", "loki"]:
    rates = [r["rate"] for r in runs[endpoint]]
    rate = median(endpoint, "rate")
    print(f"| {endpoint} | {rate:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | "
          f"{rate / bulk:.0%} | {sum(r['failed'] for r in runs[endpoint])} | "
          f"{median(endpoint, 'per_k'):.4f} | {median(endpoint, 'cores'):.2f} | "
          f"{median(endpoint, 'generator'):.2f} |")
EOF
