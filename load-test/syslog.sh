#!/usr/bin/env bash
# Syslog over TCP against /bulk (#33): the same real-shaped lines (corpus-lines: sixteen
# systems' formats, skewed sources and levels) sent to a producer of the benchmark's own,
# once as RFC 5424 octet-counted frames over CONCURRENCY TCP connections, once as NDJSON
# bodies of BATCH lines to /bulk over as many HTTP connections.
#
# The target is a producer of its own (release binary, 127.0.0.1:18082, syslog on
# 127.0.0.1:15514, fresh topics syslog-bench-<time>, no consumer, no rate limit), so
# nothing is stored and the topics are deleted at the end. The sender (Python) sends
# bytes built before the clock starts, so its own CPU stays small; it is reported.
# Per protocol, over the load window only: lines/s (syslog: until the producer counted
# every line accepted by Kafka; /bulk: until the last answer, each given after Kafka's
# acknowledgement), the producer's CPU µs a line, the sender's CPU.
#
#   ./load-test/syslog.sh [lines] [concurrency] [batch]     (default 200000 4 5000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logpipeline/target}"
LINES="${1:-200000}"
CONCURRENCY="${2:-4}"
BATCH="${3:-5000}"
PORT="${SYSLOG_BENCH_PORT:-18082}"
SYSLOG_PORT="${SYSLOG_BENCH_SYSLOG_PORT:-15514}"

cargo build --release -q -p log-producer -p load-test
BIN="$CARGO_TARGET_DIR/release"
TOPIC="syslog-bench-$(date +%s)"
RUN="$(mktemp -d /tmp/syslog-bench.XXXXXX)"
# shellcheck source=load-test/bench-producer.sh
source load-test/bench-producer.sh

echo "syslog bench: $LINES lines, $CONCURRENCY connections, topics $TOPIC(-priority)"
"$BIN/corpus-lines" --lines "$LINES" --span-seconds 600 >"$RUN/lines.ndjson"
bench_producer_start SYSLOG_TCP_ADDR="127.0.0.1:$SYSLOG_PORT"

python3 - "$RUN/lines.ndjson" "$BENCH_PRODUCER_PID" "$PORT" "$SYSLOG_PORT" "$CONCURRENCY" "$BATCH" <<'PY'
import http.client, json, os, resource, socket, sys, threading, time, urllib.request

path, pid, port, syslog_port, concurrency, batch = sys.argv[1:]
port, syslog_port, concurrency, batch = int(port), int(syslog_port), int(concurrency), int(batch)
events = [json.loads(line) for line in open(path)]
ticks = os.sysconf("SC_CLK_TCK")

def producer_cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks

def sender_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def metric(name, labels):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/producer/actuator/prometheus").read().decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and all(l in line for l in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0

SEVERITY = {"FATAL": 2, "ERROR": 3, "WARN": 4, "INFO": 6, "DEBUG": 7, "TRACE": 7}

def frame(event):
    pri = 8 + SEVERITY[event["level"]]  # facility user
    msg = f"<{pri}>1 {event['timestamp']} bench-host {event['source']} - - - {event['message']}".encode()
    return str(len(msg)).encode() + b" " + msg

def run(name, work, done):
    before_producer, before_sender, started = producer_cpu(), sender_cpu(), time.monotonic()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
    for t in threads: t.start()
    for t in threads: t.join()
    while not done():
        if time.monotonic() - started > 300:
            sys.exit(f"{name}: not every line accepted within 300 s")
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    producer = producer_cpu() - before_producer
    sender = sender_cpu() - before_sender
    return {"name": name, "rate": len(events) / elapsed, "producer_us": producer / len(events) * 1e6,
            "producer_cores": producer / elapsed, "sender_cores": sender / elapsed}

# Syslog: each connection sends its share of the frames, built before the clock starts.
shares = [b"".join(frame(e) for e in events[i::concurrency]) for i in range(concurrency)]
accepted_before = metric("log_syslog_messages_total", ['outcome="accepted"', 'transport="tcp"'])
def send_syslog(i):
    with socket.create_connection(("127.0.0.1", syslog_port)) as s:
        s.sendall(shares[i])
def all_accepted():
    return metric("log_syslog_messages_total", ['outcome="accepted"', 'transport="tcp"']) - accepted_before >= len(events)
syslog = run("syslog TCP (RFC 5424, octet-counted)", send_syslog, all_accepted)
failed = metric("log_syslog_messages_total", ['outcome="malformed"', 'transport="tcp"']) \
    + metric("log_syslog_messages_total", ['outcome="invalid"', 'transport="tcp"'])
del shares

# /bulk: NDJSON bodies of `batch` lines, built before the clock starts.
bodies = ["\n".join(json.dumps(e) for e in events[i:i + batch]).encode() for i in range(0, len(events), batch)]
lock, next_body, refused = threading.Lock(), [0], [0]
def send_bulk(_):
    connection = http.client.HTTPConnection("127.0.0.1", port)
    while True:
        with lock:
            if next_body[0] >= len(bodies): break
            body = bodies[next_body[0]]; next_body[0] += 1
        connection.request("POST", "/producer/api/logs/bulk", body, {"Content-Type": "application/x-ndjson"})
        answer = connection.getresponse(); answer.read()
        if answer.status != 200:
            with lock: refused[0] += 1
bulk = run(f"/bulk (NDJSON, {batch} lines a body)", send_bulk, lambda: True)

print(f"{'protocol':<38} {'lines/s':>9} {'vs /bulk':>8} {'producer µs/line':>17} {'producer cores':>15} {'sender cores':>13}")
for r in (bulk, syslog):
    print(f"{r['name']:<38} {r['rate']:>9.0f} {r['rate'] / bulk['rate']:>8.0%} {r['producer_us']:>17.1f} {r['producer_cores']:>15.2f} {r['sender_cores']:>13.2f}")
print(f"syslog lines malformed or invalid: {failed:.0f}; /bulk bodies refused: {refused[0]}")
PY
