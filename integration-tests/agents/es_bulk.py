#!/usr/bin/env python3
"""Send documents with the official `elasticsearch` Python client (9.x) and its bulk helper.

client.info() first (what real shippers do at start-up), then
helpers.streaming_bulk(client, actions, raise_on_error=False, raise_on_exception=False,
chunk_size=...). The stream holds --count distinct documents plus repeats:
  * `log.level` alternates between the dotted key {"log.level": ..} and the nested object
    {"log": {"level": ..}}; `service.name` likewise; `trace.id` on every 4th document;
  * every 5th document has an explicit `_id`; every 50th document is sent a second time
    (a separate, identical action with the same `_id`), sometimes right after the first
    and sometimes a chunk later;
  * exactly one document has "@timestamp": "not a date" (a log store must refuse it).
Prints ONE JSON object on stdout. Exit status 1 (message on stderr) when an action other
than the malformed one fails, or when the client itself fails.
"""
import argparse
import json
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

from elasticsearch import Elasticsearch, helpers
from elasticsearch import __versionstr__ as es_version

LEVELS = ["info", "info", "info", "warn", "error", "debug"]


def iso(ts):
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def build_actions(args, run):
    base = datetime.now(timezone.utc) - timedelta(minutes=5)
    malformed_seq = args.count // 2
    docs = []
    for i in range(args.count):
        level = LEVELS[i % len(LEVELS)]
        src = {
            "@timestamp": iso(base + timedelta(milliseconds=i)),
            "message": f"es record seq={i} run={run}",
            "seq": i,
            "labels": {"run": run, "driver": "es_bulk"},
            "host.name": f"host-{i % 3}",
            "http": {"response": {"status_code": 200 if i % 7 else 500}},
            "event.duration": i * 1000,
            "tags": ["agents", "bulk"],
        }
        if i % 2 == 0:
            src["log.level"] = level
        else:
            src["log"] = {"level": level, "logger": "agents.es"}
        if i % 3 == 0:
            src["service"] = {"name": args.service}
        else:
            src["service.name"] = args.service
        if i % 4 == 0:
            src["trace.id"] = uuid.uuid5(uuid.NAMESPACE_OID, f"{run}-{i // 40}").hex
        if i == malformed_seq:
            src["@timestamp"] = "not a date"
            src["message"] = f"es malformed record seq={i} run={run}"
        action = {"_op_type": "index", "_source": src}
        if not args.index_in_path:
            action["_index"] = args.index
        if i % 5 == 0:
            action["_id"] = f"{run}-{i}"
        docs.append(action)

    # Repeats: identical second action for every 50th document (all of which carry an _id).
    stream = list(docs)
    dup_ids = []
    inserts = []
    for i in range(0, args.count, 50):
        if i == malformed_seq:
            continue
        offset = 1 if (i // 50) % 2 == 0 else args.chunk_size + 3
        inserts.append((i + offset, dict(docs[i])))
        dup_ids.append(docs[i]["_id"])
    for pos, action in sorted(inserts, key=lambda p: p[0], reverse=True):
        stream.insert(min(pos + 1, len(stream)), action)
    malformed_index = next(k for k, a in enumerate(stream) if a["_source"]["seq"] == malformed_seq)
    return stream, dup_ids, malformed_index, malformed_seq


def jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        return str(obj)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="e.g. http://127.0.0.1:PORT/producer/es")
    ap.add_argument("--api-key", default="", help="sent as Authorization: ApiKey <key>")
    ap.add_argument("--basic-password", action="store_true",
                    help='send the key as the password of basic auth ("elastic", key) instead')
    ap.add_argument("--index", default="agents-logs")
    ap.add_argument("--index-in-path", action="store_true",
                    help="POST /{index}/_bulk with no _index in the actions (default: /_bulk, _index per action)")
    ap.add_argument("--service", default="agents-es")
    ap.add_argument("--count", type=int, default=10000, help="distinct documents (repeats come on top)")
    ap.add_argument("--chunk-size", type=int, default=500)
    ap.add_argument("--run", default=None)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--client-max-retries", type=int, default=None,
                    help="transport max_retries (client default: 3, on 429/502/503/504)")
    ap.add_argument("--bulk-max-retries", type=int, default=0, help="streaming_bulk max_retries (per-item 429)")
    ap.add_argument("--allow-errors", action="store_true", help="exit 0 whatever the item errors")
    args = ap.parse_args()
    run = args.run or uuid.uuid4().hex[:12]

    kwargs = {"request_timeout": args.timeout}
    if args.client_max_retries is not None:
        kwargs["max_retries"] = args.client_max_retries
    if args.api_key:
        if args.basic_password:
            kwargs["basic_auth"] = ("elastic", args.api_key)
        else:
            kwargs["api_key"] = args.api_key
    client = Elasticsearch(args.url, **kwargs)

    try:
        info = client.info()
    except Exception as e:  # noqa: BLE001 - any client failure is fatal here
        print(f"es_bulk.py: client.info() failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1

    stream, dup_ids, malformed_index, malformed_seq = build_actions(args, run)
    ok = 0
    errors = []
    statuses = Counter()
    bulk_kwargs = {}
    if args.index_in_path:
        bulk_kwargs["index"] = args.index
    try:
        results = helpers.streaming_bulk(
            client,
            stream,
            chunk_size=args.chunk_size,
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=args.bulk_max_retries,
            initial_backoff=0.5,
            max_backoff=2,
            **bulk_kwargs,
        )
        for i, (success, item) in enumerate(results):
            op, detail = next(iter(item.items()))
            status = detail.get("status")
            statuses[str(status)] += 1
            if success:
                ok += 1
            else:
                errors.append({
                    "index_in_stream": i,
                    "status": status,
                    "_id": detail.get("_id"),
                    "error": jsonable(detail.get("error") or detail.get("exception")),
                })
    except Exception as e:  # noqa: BLE001
        print(f"es_bulk.py: streaming_bulk raised {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()

    ids = [a["_id"] for a in stream if "_id" in a]
    unexpected = [e for e in errors if e["index_in_stream"] != malformed_index]
    summary = {
        "client": f"elasticsearch-py {es_version}",
        "run": run,
        "index": args.index,
        "service": args.service,
        "server_version": info.get("version", {}).get("number"),
        "sent_actions": len(stream),
        "distinct_documents": args.count,
        "actions_with_id": len(ids),
        "distinct_ids": len(set(ids)),
        "duplicated_ids": dup_ids,
        "malformed": {"index_in_stream": malformed_index, "seq": malformed_seq},
        "malformed_refused": any(e["index_in_stream"] == malformed_index for e in errors),
        "expected_stored_if_ids_dedup": args.count - 1,
        "expected_stored_if_no_dedup": len(stream) - 1,
        "ok": ok,
        "statuses": dict(statuses),
        "errors": errors[:50],
        "error_count": len(errors),
        "unexpected_error_count": len(unexpected),
    }
    print(json.dumps(summary, sort_keys=True))
    if unexpected and not args.allow_errors:
        print(f"es_bulk.py: {len(unexpected)} unexpected item errors, first: {unexpected[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
