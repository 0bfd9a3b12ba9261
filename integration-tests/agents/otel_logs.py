#!/usr/bin/env python3
"""Send logs over OTLP/HTTP with the real OpenTelemetry Python SDK and exporter.

Default mode: LoggerProvider(Resource(service.name)) + BatchLogRecordProcessor(OTLPLogExporter,
gzip) + LoggingHandler on a stdlib logger. Records are logged inside spans of an SDK
TracerProvider (no span exporter), so each record carries a trace id / span id.

--export-twice N: N records are collected with an in-memory exporter into one batch of
ReadableLogRecord, then OTLPLogExporter.export(batch) is called twice with that very batch
(what a client retry of the same request looks like on the wire).

--read-again N: as --export-twice, but before the second export every record's observed
time is set anew (what a Collector reading its file again after a restart sends).

Prints ONE JSON object on stdout. Exit status 1 (message on stderr) when an export failed,
unless --allow-export-failure.
"""
import argparse
import json
import logging
import sys
import time
import uuid
import warnings
from collections import Counter

warnings.filterwarnings("ignore", category=DeprecationWarning)

from opentelemetry.exporter.otlp.proto.http import Compression  # noqa: E402
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # noqa: E402
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler  # noqa: E402
from opentelemetry.sdk._logs.export import (  # noqa: E402
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

# Python level name -> OTel severity_text as the SDK's LoggingHandler maps it.
OTEL_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


class RecordingExporter(OTLPLogExporter):
    """The real OTLPLogExporter; only remembers the outcome of every export() call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = []  # (batch_size, success)

    def export(self, batch):
        result = super().export(batch)
        self.outcomes.append((len(batch), result == LogRecordExportResult.SUCCESS))
        return result


class DriverError(Exception):
    pass


def make_exporter(args):
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    return RecordingExporter(
        endpoint=f"{args.endpoint.rstrip('/')}/v1/logs",
        compression=Compression.Gzip,
        headers=headers,
        timeout=args.timeout,
    )


def log_records(pylogger, tracer, count, spans, run, start_seq=0):
    """Log `count` records spread over `spans` consecutive spans; returns the summary parts."""
    trace_ids = Counter()
    levels = Counter()
    exceptions = 0
    spans = max(1, min(spans, count)) if count else 1
    seq = start_seq
    for k in range(spans):
        n_in_span = count // spans + (1 if k < count % spans else 0)
        with tracer.start_as_current_span(f"agents-otel-span-{k}") as span:
            trace_hex = format(span.get_span_context().trace_id, "032x")
            for _ in range(n_in_span):
                extra = {
                    "run": run,
                    "seq": seq,
                    "component": "otel-driver",
                    "span_index": k,
                    "even": seq % 2 == 0,
                    "ratio": seq / 7.0,
                }
                if seq % 97 == 13:
                    try:
                        raise ValueError(f"simulated failure seq={seq}")
                    except ValueError:
                        pylogger.exception("operation failed seq=%d run=%s", seq, run, extra=extra)
                    exceptions += 1
                    level = "ERROR"
                elif seq % 10 < 6:
                    pylogger.info("otel record seq=%d run=%s", seq, run, extra=extra)
                    level = "INFO"
                elif seq % 10 < 8:
                    pylogger.warning("otel record seq=%d run=%s (slow)", seq, run, extra=extra)
                    level = "WARNING"
                else:
                    pylogger.error("otel record seq=%d run=%s (bad)", seq, run, extra=extra)
                    level = "ERROR"
                levels[OTEL_SEVERITY_TEXT.get(level, level)] += 1
                trace_ids[trace_hex] += 1
                seq += 1
    return trace_ids, levels, exceptions


def run_handler_mode(args, run):
    resource = Resource.create({"service.name": args.service})
    tracer_provider = TracerProvider(resource=resource)
    tracer = tracer_provider.get_tracer("agents.otel_logs")
    exporter = make_exporter(args)
    provider = LoggerProvider(resource=resource)
    # The default queue (2048) drops records when a burst outruns the exporter; size it so
    # that every record logged here is exported.
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter,
            max_queue_size=max(2048, args.count + 16),
            max_export_batch_size=args.batch_size,
            schedule_delay_millis=200,
        )
    )
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    pylogger = logging.getLogger(args.logger_name)
    pylogger.setLevel(logging.DEBUG)
    pylogger.propagate = False
    pylogger.addHandler(handler)
    try:
        trace_ids, levels, exceptions = log_records(pylogger, tracer, args.count, args.spans, run)
    finally:
        flushed = provider.force_flush(timeout_millis=int(args.timeout * 1000 * 4))
        pylogger.removeHandler(handler)
        provider.shutdown()
        tracer_provider.shutdown()
    return {
        "mode": "handler",
        "sent": args.count,
        "run": run,
        "service": args.service,
        "trace_ids": dict(trace_ids),
        "levels": dict(levels),
        "exceptions": exceptions,
        "flushed": flushed,
        "export_calls": len(exporter.outcomes),
        "export_failed_records": sum(n for n, ok in exporter.outcomes if not ok),
        "export_ok_records": sum(n for n, ok in exporter.outcomes if ok),
    }


def run_export_twice_mode(args, run):
    n = args.export_twice or args.read_again
    resource = Resource.create({"service.name": args.service})
    tracer_provider = TracerProvider(resource=resource)
    tracer = tracer_provider.get_tracer("agents.otel_logs")
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    pylogger = logging.getLogger(args.logger_name + ".twice")
    pylogger.setLevel(logging.DEBUG)
    pylogger.propagate = False
    pylogger.addHandler(handler)
    try:
        trace_ids, levels, exceptions = log_records(pylogger, tracer, n, args.spans, run)
    finally:
        pylogger.removeHandler(handler)
    batch = list(memory.get_finished_logs())  # Sequence[ReadableLogRecord]
    if len(batch) != n:
        raise DriverError(f"expected {n} records in the in-memory batch, got {len(batch)}")
    exporter = make_exporter(args)
    first = exporter.export(batch)
    if args.read_again:
        # What an agent that reads its file again sends: the same records, each with a
        # new observed time (when it was read), as the SDK stamps at emit.
        time.sleep(0.01)
        for record in batch:
            record.log_record.observed_timestamp = time.time_ns()
    results = [first, exporter.export(batch)]
    exporter.shutdown()
    provider.shutdown()
    tracer_provider.shutdown()
    return {
        "mode": "read_again" if args.read_again else "export_twice",
        "sent": n,
        "exports": 2,
        "export_results": [r.name for r in results],
        "run": run,
        "service": args.service,
        "trace_ids": dict(trace_ids),
        "levels": dict(levels),
        "exceptions": exceptions,
        "export_calls": len(exporter.outcomes),
        "export_failed_records": sum(k for k, ok in exporter.outcomes if not ok),
        "export_ok_records": sum(k for k, ok in exporter.outcomes if ok),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True, help="base, e.g. http://127.0.0.1:PORT/producer (/v1/logs is appended)")
    ap.add_argument("--api-key", default="", help="sent as Authorization: Bearer <key> (omitted when empty)")
    ap.add_argument("--service", default="agents-otel")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--spans", type=int, default=4, help="records are spread over this many spans (trace ids)")
    ap.add_argument("--batch-size", type=int, default=512, help="BatchLogRecordProcessor max_export_batch_size")
    ap.add_argument("--run", default=None, help="run id put in every record (default: random)")
    ap.add_argument("--logger-name", default="agents.otel")
    ap.add_argument("--timeout", type=float, default=10.0, help="exporter timeout per export, seconds")
    ap.add_argument("--export-twice", type=int, metavar="N", default=0,
                    help="build one batch of N records and export() it twice")
    ap.add_argument("--read-again", type=int, metavar="N", default=0,
                    help="as --export-twice, the second time with every observed time new")
    ap.add_argument("--allow-export-failure", action="store_true",
                    help="exit 0 even if an export failed (for wire experiments)")
    args = ap.parse_args()
    run = args.run or uuid.uuid4().hex[:12]
    # The exporter reports failures through the 'opentelemetry' loggers; show them on stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.export_twice or args.read_again:
            summary = run_export_twice_mode(args, run)
        else:
            summary = run_handler_mode(args, run)
    except DriverError as e:
        print(f"otel_logs.py: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, sort_keys=True))
    if summary["export_failed_records"] and not args.allow_export_failure:
        print(f"otel_logs.py: {summary['export_failed_records']} records failed to export", file=sys.stderr)
        return 1
    if summary["export_ok_records"] + summary["export_failed_records"] < summary["sent"] * summary.get("exports", 1):
        print("otel_logs.py: not every record reached the exporter (dropped in the SDK?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
