"""Schemathesis hooks for the log pipeline's OpenAPI documents.

`/bulk` takes NDJSON: the document describes its body as a list of events, and this
serializer writes that list one JSON object per line, as a real client would.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    items = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(item) for item in items).encode()
