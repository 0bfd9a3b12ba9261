#!/usr/bin/env python3
"""Push logs to a Loki-compatible JSON push endpoint with `python-logging-loki` (PyPI).

logging_loki.LokiHandler(url, tags={...}, auth=(user, key), version="1") on a stdlib
logger. That client sends one POST per log record, synchronously, body
  {"streams": [{"stream": {<tags>, "severity": <level>, "logger": <name>}, "values": [[<ns>, <line>]]}]}
and treats only HTTP 204 as success (anything else, 200 included, is an error; it never
retries). Errors reach logging.Handler.handleError; this script counts them.

Prints ONE JSON object on stdout; exit status 1 when any push failed.
"""
import argparse
import json
import logging
import sys
import uuid
import warnings
from collections import Counter

import logging_loki

warnings.filterwarnings("ignore", category=DeprecationWarning)


class CountingLokiHandler(logging_loki.LokiHandler):
    """The real LokiHandler; only counts the records whose push failed."""

    failed = 0
    last_error = None

    def handleError(self, record):  # noqa: N802 - logging API name
        self.failed += 1
        self.last_error = repr(sys.exc_info()[1])
        self.emitter.close()  # what LokiHandler.handleError does, minus the traceback print


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="e.g. http://127.0.0.1:PORT/producer/loki/api/v1/push")
    ap.add_argument("--api-key", default="", help="sent as the password of basic auth")
    ap.add_argument("--user", default="loki", help="basic auth user name")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--job", default="agents-loki-json")
    ap.add_argument("--run", default=None)
    ap.add_argument("--logger-name", default="agents.loki_json")
    ap.add_argument("--allow-failures", action="store_true")
    args = ap.parse_args()
    run = args.run or uuid.uuid4().hex[:12]

    handler = CountingLokiHandler(
        url=args.url,
        tags={"job": args.job, "run": run},
        auth=(args.user, args.api_key) if args.api_key else None,
        version="1",
    )
    pylogger = logging.getLogger(args.logger_name)
    pylogger.setLevel(logging.DEBUG)
    pylogger.propagate = False
    pylogger.addHandler(handler)

    severities = Counter()
    components = Counter()
    try:
        for i in range(args.count):
            component = "api" if i % 3 else "worker"  # extra per-record label via extra={"tags": ...}
            extra = {"tags": {"component": component}}
            if i % 10 < 6:
                pylogger.info("loki json record seq=%d run=%s", i, run, extra=extra)
                severities["info"] += 1
            elif i % 10 < 8:
                pylogger.warning("loki json record seq=%d run=%s", i, run, extra=extra)
                severities["warning"] += 1
            else:
                pylogger.error("loki json record seq=%d run=%s", i, run, extra=extra)
                severities["error"] += 1
            components[component] += 1
    finally:
        pylogger.removeHandler(handler)
        handler.flush()
        handler.close()
        handler.emitter.close()

    summary = {
        "client": "python-logging-loki (LokiHandler, emitter v1)",
        "run": run,
        "job": args.job,
        "logger": args.logger_name,
        "sent": args.count,
        "requests": args.count,
        "failed": handler.failed,
        "last_error": handler.last_error,
        "labels": {"job": args.job, "run": run, "logger": args.logger_name,
                   "severity": "<info|warning|error>", "component": "<api|worker>"},
        "severity": dict(severities),
        "component": dict(components),
        "line_format": "loki json record seq={seq} run={run}",
    }
    print(json.dumps(summary, sort_keys=True))
    if handler.failed and not args.allow_failures:
        print(f"loki_json.py: {handler.failed} pushes failed, last: {handler.last_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
