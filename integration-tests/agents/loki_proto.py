#!/usr/bin/env python3
"""Push logs to a Loki-compatible endpoint the way Promtail does: protobuf + snappy.

Compiles the vendored push.proto (Loki's pkg/push/push.proto) at run time with
grpc_tools.protoc into a temporary directory, builds logproto.PushRequest messages with
Prometheus-style label strings ({job="NAME", level="error", run="..."}, sorted, ", "
separated, as Promtail formats them), entries with a google.protobuf.Timestamp, a line and,
for every third entry, structuredMetadata; serializes, compresses with snappy BLOCK (raw)
format (python-snappy's snappy.compress, like Go's snappy.Encode) and POSTs with
Content-Type: application/x-protobuf and NO Content-Encoding header, as Promtail's client
does. Basic auth carries the key as the password.

--post-twice posts every request body twice (byte-identical retry).
Prints ONE JSON object on stdout; exit status 1 when a POST is not answered 2xx.
"""
import argparse
import importlib
import importlib.resources
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter

import requests
import snappy
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
LEVELS = ["info", "info", "info", "warn", "error"]


def compile_push_proto(proto_path):
    """protoc --python_out into a temp dir; returns the imported push_pb2 module."""
    out = tempfile.mkdtemp(prefix="loki-push-proto-")
    proto_dir = os.path.dirname(os.path.abspath(proto_path))
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")  # google/protobuf/timestamp.proto
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{well_known}",
        f"--python_out={out}",
        os.path.basename(proto_path),
    ])
    if rc != 0:
        raise RuntimeError(f"protoc failed with status {rc} for {proto_path}")
    sys.path.insert(0, out)
    try:
        module_name = os.path.splitext(os.path.basename(proto_path))[0] + "_pb2"
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(out)


def label_string(labels):
    # Promtail: fmt.Sprintf("%s=%q", name, value), sorted, joined by ", ", wrapped in {}.
    return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


def build_requests(pb, args, run):
    base_ns = time.time_ns() - 60 * 1_000_000_000
    per_stream = Counter()
    sm_entries = 0
    bodies = []
    for start in range(0, args.count, args.batch_size):
        req = pb.PushRequest()
        streams = {}
        for i in range(start, min(start + args.batch_size, args.count)):
            level = LEVELS[i % len(LEVELS)]
            labels = label_string({"job": args.job, "level": level, "run": run})
            stream = streams.get(labels)
            if stream is None:
                stream = req.streams.add()
                stream.labels = labels
                streams[labels] = stream
            entry = stream.entries.add()
            ts_ns = base_ns + i * 1_000_000  # 1 ms apart, strictly increasing per stream
            entry.timestamp.seconds = ts_ns // 1_000_000_000
            entry.timestamp.nanos = ts_ns % 1_000_000_000
            entry.line = f"loki proto record seq={i} run={run} level={level}"
            if i % 3 == 0:
                sm = entry.structuredMetadata.add()
                sm.name, sm.value = "trace_id", uuid.uuid5(uuid.NAMESPACE_OID, f"{run}-{i // 10}").hex
                sm = entry.structuredMetadata.add()
                sm.name, sm.value = "seq", str(i)
                sm_entries += 1
            per_stream[labels] += 1
        raw = req.SerializeToString()
        bodies.append((raw, snappy.compress(raw), sum(len(s.entries) for s in req.streams)))
    return bodies, per_stream, sm_entries, base_ns


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="e.g. http://127.0.0.1:PORT/producer/loki/api/v1/push")
    ap.add_argument("--api-key", default="", help="sent as the password of basic auth")
    ap.add_argument("--user", default="loki", help="basic auth user name")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=1000, help="entries per request")
    ap.add_argument("--job", default="agents-loki-proto")
    ap.add_argument("--run", default=None)
    ap.add_argument("--tenant", default=None, help="X-Scope-OrgID header (Promtail sends it only if set)")
    ap.add_argument("--proto", default=os.path.join(HERE, "push.proto"))
    ap.add_argument("--post-twice", action="store_true", help="POST every body twice")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--allow-failures", action="store_true")
    args = ap.parse_args()
    run = args.run or uuid.uuid4().hex[:12]

    try:
        pb = compile_push_proto(args.proto)
    except Exception as e:  # noqa: BLE001
        print(f"loki_proto.py: cannot compile {args.proto}: {e}", file=sys.stderr)
        return 2
    bodies, per_stream, sm_entries, base_ns = build_requests(pb, args, run)

    headers = {"Content-Type": "application/x-protobuf"}
    if args.tenant:
        headers["X-Scope-OrgID"] = args.tenant
    auth = (args.user, args.api_key) if args.api_key else None
    statuses = []
    failures = []
    with requests.Session() as session:
        for n, (raw, body, entries) in enumerate(bodies):
            for attempt in range(2 if args.post_twice else 1):
                try:
                    resp = session.post(args.url, data=body, headers=headers, auth=auth, timeout=args.timeout)
                except requests.RequestException as e:
                    statuses.append(None)
                    failures.append({"request": n, "attempt": attempt, "error": repr(e)})
                    continue
                statuses.append(resp.status_code)
                if resp.status_code // 100 != 2:
                    failures.append({"request": n, "attempt": attempt, "status": resp.status_code,
                                     "body": resp.text[:300]})

    summary = {
        "client": "requests + protobuf (runtime-compiled Loki push.proto) + python-snappy block format",
        "run": run,
        "job": args.job,
        "sent_entries": args.count,
        "requests": len(bodies),
        "posts": len(statuses),
        "post_twice": args.post_twice,
        "streams": dict(per_stream),
        "structured_metadata_entries": sm_entries,
        "first_ts_ns": base_ns,
        "last_ts_ns": base_ns + (args.count - 1) * 1_000_000,
        "body_bytes": [len(b) for _, b, _ in bodies],
        "raw_bytes": [len(r) for r, _, _ in bodies],
        "statuses": dict(Counter(str(s) for s in statuses)),
        "failures": failures[:20],
    }
    print(json.dumps(summary, sort_keys=True))
    if failures and not args.allow_failures:
        print(f"loki_proto.py: {len(failures)} POSTs failed, first: {failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
