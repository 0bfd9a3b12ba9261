#!/usr/bin/env python3
"""Tiny wire-capture server for the agent driver scripts (stdlib only).

Binds 127.0.0.1 on a free port (or --port), prints {"port": N} as one JSON line on
stdout once listening (and writes the port to --port-file if given), then logs every
request as one JSON line to --log (method, path, headers, body length, the first 300
bytes as text and hex, and, with --body-dir, the full raw body to a file).

It answers the way the real servers do, closely enough for the clients:
  * OTLP  (path contains /v1/logs):   200, empty body, Content-Type application/x-protobuf
                                        (or "{}" application/json when the request was JSON)
  * ES    (path under /es, or --es-root ""): X-Elastic-Product: Elasticsearch on every answer
        (unless --no-product-header); GET/HEAD / -> info doc; GET /_license; index template
        calls -> {"acknowledged": true}; POST/PUT [/{index}]/_bulk -> a bulk answer with one
        item per action.
  * Loki  (path contains /loki/):        204
Per-item bulk failures: --item-fail-count N [--item-fail-status 429] (HTTP 200, errors: true).
Failure injection: --fail-status S --fail-count N [--retry-after SECS] [--fail-match SUBSTR]
makes the first N requests whose path contains SUBSTR (and are not GET/HEAD) answer S
(N = -1: all of them). The process exits by itself after --max-seconds.
"""
import argparse
import gzip
import json
import os
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ES_INFO = {
    "name": "x",
    "cluster_name": "x",
    "cluster_uuid": "x",
    "version": {
        "number": "8.17.0",
        "build_flavor": "default",
        "lucene_version": "9.12.0",
        "minimum_wire_compatibility_version": "7.17.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "You Know, for Search",
}

ES_LICENSE = {
    "license": {
        "status": "active",
        "uid": "00000000-0000-0000-0000-000000000000",
        "type": "basic",
        "issue_date_in_millis": 0,
        "max_nodes": 1000,
        "issued_to": "x",
        "issuer": "elasticsearch",
        "start_date_in_millis": -1,
    }
}


def decode_body(raw, encoding):
    enc = (encoding or "").lower().strip()
    try:
        if enc == "gzip":
            return gzip.decompress(raw)
        if enc == "deflate":
            return zlib.decompress(raw)
    except Exception:  # noqa: BLE001 - a capture server reports, it does not judge
        return raw
    return raw


def bulk_items(body, path):
    """One item per action of an NDJSON bulk body, as Elasticsearch answers."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    default_index = None
    if len(parts) >= 2 and parts[-1] == "_bulk" and not parts[-2].startswith("_") and parts[-2] != "es":
        default_index = parts[-2]
    lines = [ln for ln in body.decode("utf-8", "replace").split("\n") if ln.strip()]
    items = []
    i = 0
    while i < len(lines):
        try:
            action = json.loads(lines[i])
        except ValueError:
            items.append({"index": {"status": 400, "error": {"type": "parse_exception", "reason": "bad action line"}}})
            i += 1
            continue
        op, meta = next(iter(action.items())) if action else ("index", {})
        meta = meta or {}
        i += 1 if op == "delete" else 2
        doc_id = meta.get("_id") or uuid.uuid4().hex[:20]
        items.append(
            {
                op: {
                    "_index": meta.get("_index", default_index),
                    "_id": doc_id,
                    "_version": 1,
                    "result": "deleted" if op == "delete" else "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": len(items),
                    "_primary_term": 1,
                    "status": 200 if op == "delete" else 201,
                }
            }
        )
    return items


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "capture/1"

    def log_message(self, fmt, *args):  # silence default stderr logging
        pass

    # ---- helpers -------------------------------------------------------
    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _record(self, raw):
        srv = self.server
        with srv.lock:
            srv.seq += 1
            seq = srv.seq
        entry = {
            "seq": seq,
            "t": round(time.time(), 3),
            "method": self.command,
            "path": self.path,
            "request_line": self.requestline,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(raw),
            "body_head_text": raw[:300].decode("utf-8", "replace"),
            "body_head_hex": raw[:300].hex(),
        }
        if srv.body_dir:
            fname = os.path.join(srv.body_dir, f"{seq:05d}.bin")
            with open(fname, "wb") as f:
                f.write(raw)
            entry["body_file"] = fname
        with srv.lock:
            with open(srv.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        return entry

    def _send(self, status, body=b"", ctype=None, extra=None):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj, extra=None):
        self._send(status, json.dumps(obj).encode(), "application/json", extra)

    def _should_fail(self):
        srv = self.server
        if not srv.fail_status or self.command in ("GET", "HEAD"):
            return False
        if srv.fail_match and srv.fail_match not in self.path:
            return False
        with srv.lock:
            if srv.fail_count == 0:
                return False
            if srv.fail_count > 0:
                srv.fail_count -= 1
        return True

    # ---- dispatch ------------------------------------------------------
    def _handle(self):
        raw = self._read_body()
        self._record(raw)
        srv = self.server
        path = self.path.split("?")[0]
        is_es = srv.es_root is not None and (path == srv.es_root or path.startswith(srv.es_root + "/") or srv.es_root == "")
        es_hdr = {"X-Elastic-Product": "Elasticsearch"} if (is_es and not srv.no_product_header) else {}

        if self._should_fail():
            extra = dict(es_hdr)
            if srv.retry_after is not None:
                extra["Retry-After"] = str(srv.retry_after)
            status = srv.fail_status
            if is_es:
                self._json(status, {"error": {"type": "injected", "reason": f"injected {status}"}, "status": status}, extra)
            else:
                self._send(status, f"injected {status}\n".encode(), "text/plain", extra)
            return

        if "/v1/logs" in path or "/v1/traces" in path or "/v1/metrics" in path:
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                self._send(200, b"{}", "application/json")
            else:
                self._send(200, b"", "application/x-protobuf")
            return

        if "/loki/" in path:
            self._send(204)
            return

        if is_es:
            sub = path[len(srv.es_root):] if srv.es_root else path
            sub = sub or "/"
            if sub in ("/", ""):
                self._json(200, ES_INFO, es_hdr)
            elif sub.startswith("/_license"):
                self._json(200, ES_LICENSE, es_hdr)
            elif sub.endswith("/_bulk") and self.command in ("POST", "PUT"):
                body = decode_body(raw, self.headers.get("Content-Encoding"))
                items = bulk_items(body, sub)
                errors = False
                with srv.lock:
                    for item in items:
                        if srv.item_fail_count == 0:
                            break
                        srv.item_fail_count -= 1
                        detail = next(iter(item.values()))
                        detail.pop("result", None)
                        detail["status"] = srv.item_fail_status
                        detail["error"] = {"type": "es_rejected_execution_exception", "reason": "injected item failure"}
                        errors = True
                self._json(200, {"took": 1, "errors": errors, "items": items}, es_hdr)
            elif "_index_template" in sub or "_component_template" in sub or "_template" in sub:
                if self.command in ("PUT", "POST", "DELETE"):
                    self._json(200, {"acknowledged": True}, es_hdr)
                elif self.command == "HEAD":
                    self._send(404, b"", None, es_hdr)
                else:
                    self._json(404, {"error": {"type": "resource_not_found_exception"}, "status": 404}, es_hdr)
            else:
                self._json(200, {}, es_hdr)
            return

        self._send(200, b"", "text/plain")

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _handle


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log", required=True, help="JSON lines file, one per request")
    ap.add_argument("--body-dir", help="save every full raw body here")
    ap.add_argument("--es-root", default="/producer/es", help='path prefix served as Elasticsearch ("" = everything)')
    ap.add_argument("--no-product-header", action="store_true")
    ap.add_argument("--fail-status", type=int, default=0)
    ap.add_argument("--fail-count", type=int, default=0)
    ap.add_argument("--fail-match", default="")
    ap.add_argument("--retry-after", type=int, default=None)
    ap.add_argument("--item-fail-status", type=int, default=429, help="status of injected bulk item failures")
    ap.add_argument("--item-fail-count", type=int, default=0, help="the first N bulk items fail (per-item, HTTP 200)")
    ap.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args()

    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.seq = 0
    srv.log_path = args.log
    srv.body_dir = args.body_dir
    if args.body_dir:
        os.makedirs(args.body_dir, exist_ok=True)
    srv.es_root = args.es_root.rstrip("/") if args.es_root else ""
    srv.no_product_header = args.no_product_header
    srv.fail_status = args.fail_status
    srv.fail_count = args.fail_count
    srv.fail_match = args.fail_match
    srv.retry_after = args.retry_after
    srv.item_fail_status = args.item_fail_status
    srv.item_fail_count = args.item_fail_count
    port = srv.server_address[1]
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(port))
    print(json.dumps({"port": port}), flush=True)
    t = threading.Timer(args.max_seconds, srv.shutdown)
    t.daemon = True
    t.start()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
