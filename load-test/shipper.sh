#!/usr/bin/env bash
# File shipper benchmark (#16): N plain-text lines appended to a temporary file as fast
# as awk writes them, while log-shipper follows it and ships to the stack's producer
# (a unique source, so nothing else is counted). Reports, over the load window only:
#   - lines/s read and acknowledged by the producer (the shipper's own metrics),
#   - lines/s from the first line written to the last row stored (PostgreSQL count),
#   - the shipper's CPU seconds (utime+stime from /proc) and peak RSS (VmHWM),
#   - the end-to-end lag from a line written to its row queryable, over single lines.
# Needs the stack (./setup.sh up). Leaves the rows (source shipper-bench-*) in the
# stack's database and removes its temporary files.
#   ./load-test/shipper.sh [lines] [lag samples]
# SINK=1 measures the shipper alone: a local sink answers every /bulk with 200 at once
# (python3, reading and discarding the body) instead of the producer; no rows, no lag.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logpipeline/target}"
LINES="${1:-1000000}"
SAMPLES="${2:-20}"
PRODUCER="${PRODUCER_URL:-http://127.0.0.1:8081}"
export PGPASSWORD="${POSTGRES_PASSWORD:-logpass}"
PSQL=(psql -h 127.0.0.1 -U "${POSTGRES_USERNAME:-loguser}" -d logprocessor -Atq)

cargo build --release -q -p log-shipper
BIN="$CARGO_TARGET_DIR/release/log-shipper"
WORK="$(mktemp -d /tmp/shipper-bench.XXXXXX)"
SOURCE="shipper-bench-$(date +%s)-$$"
SHIPPER_PID=""
SINK_PID=""
cleanup() {
    if [[ -n "$SINK_PID" ]]; then
        kill "$SINK_PID" 2>/dev/null || true
    fi
    if [[ -n "$SHIPPER_PID" ]] && kill -0 "$SHIPPER_PID" 2>/dev/null; then
        kill "$SHIPPER_PID"
        wait "$SHIPPER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
metric() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
rows() { "${PSQL[@]}" -c "SELECT count(*) FROM log_events WHERE source = '$SOURCE'"; }
cpu_seconds() {
    # Fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name): utime, stime.
    local ticks
    ticks="$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$SHIPPER_PID/stat")"
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [[ "${SINK:-0}" == 1 ]]; then
    SINK_PORT="$(free_port)"
    python3 - "$SINK_PORT" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"status":"completed","errors":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
    SINK_PID=$!
    PRODUCER="http://127.0.0.1:$SINK_PORT"
    SAMPLES=0
    sleep 0.5
fi
METRICS_PORT="$(free_port)"
touch "$WORK/app.log"
"$BIN" --path "$WORK/app.log" --state-dir "$WORK/state" --producer-url "$PRODUCER" \
    --source "$SOURCE" --start-at beginning --metrics-port "$METRICS_PORT" \
    >"$WORK/shipper.log" 2>&1 &
SHIPPER_PID=$!
until [[ -n "$(metric shipper_lines_read_total)" ]]; do sleep 0.1; done
echo "log-shipper pid $SHIPPER_PID, source $SOURCE, $LINES lines"

CPU0="$(cpu_seconds)"
T0="$(now)"
TS="$(date -u +%Y-%m-%dT%H:%M:%S.000Z)"
awk -v n="$LINES" -v ts="$TS" 'BEGIN {
    split("INFO INFO INFO DEBUG INFO WARN INFO ERROR", lvl, " ");
    for (i = 0; i < n; i++)
        printf "%s %s [worker-%d] request %d served in %d ms path=/api/items/%d\n",
            ts, lvl[i % 8 + 1], i % 8, i, i % 97, i;
}' >>"$WORK/app.log"
T_WRITTEN="$(now)"
until [[ "$(metric shipper_events_sent_total)" == "$LINES" ]]; do sleep 0.05; done
T_SENT="$(now)"
CPU1="$(cpu_seconds)"
if [[ "${SINK:-0}" == 1 ]]; then
    T_STORED="$T_SENT"
else
    until [[ "$(rows)" == "$LINES" ]]; do sleep 0.5; done
    T_STORED="$(now)"
fi
BYTES="$(stat -c %s "$WORK/app.log")"
WIRE="$(metric shipper_bytes_sent_total)"

# Lag: one line at a time, written, then polled for until its row is there.
LAGS=()
for ((i = 1; i <= SAMPLES; i++)); do
    MARK="lag-probe-$i-$$"
    W="$(now)"
    echo "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ) INFO $MARK" >>"$WORK/app.log"
    until [[ "$("${PSQL[@]}" -c "SELECT count(*) FROM log_events WHERE source = '$SOURCE' AND message LIKE '%$MARK'")" == "1" ]]; do
        sleep 0.01
    done
    LAGS+=("$(awk -v a="$W" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')")
    sleep 0.2
done
RSS_KB="$(awk '/^VmHWM/ { print $2 }' "/proc/$SHIPPER_PID/status")"

awk -v n="$LINES" -v t0="$T0" -v tw="$T_WRITTEN" -v ts="$T_SENT" -v tr="$T_STORED" \
    -v sink="${SINK:-0}" -v c0="$CPU0" -v c1="$CPU1" -v rss="$RSS_KB" -v bytes="$BYTES" -v wire="$WIRE" 'BEGIN {
    printf "written by awk:          %.2f s\n", tw - t0;
    printf "read and acknowledged:   %.2f s  -> %.0f lines/s (%.1f MiB/s of file)\n", ts - t0, n / (ts - t0), bytes / (ts - t0) / 1048576;
    if (sink != 1)
        printf "stored (rows counted):   %.2f s  -> %.0f lines/s end to end\n", tr - t0, n / (tr - t0);
    printf "shipper CPU:             %.2f s over the send window (%.0f%% of one core)\n", c1 - c0, 100 * (c1 - c0) / (ts - t0);
    printf "shipper peak RSS:        %.1f MiB\n", rss / 1024;
    printf "on the wire (zstd):      %.1f MiB for %.1f MiB of file\n", wire / 1048576, bytes / 1048576;
}'
if [[ "$SAMPLES" -gt 0 ]]; then
    printf '%s\n' "${LAGS[@]}" | sort -n | awk '{ a[NR] = $1 } END {
        printf "lag write -> queryable:  median %.3f s, p90 %.3f s, max %.3f s (%d samples)\n",
            a[int((NR + 1) / 2)], a[int(NR * 0.9 + 0.5)], a[NR], NR;
    }'
fi
