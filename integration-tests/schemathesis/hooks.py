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


# A replay re-publishes a stored dead letter: schemathesis runs against the stack, whose
# dead letters may be a user's, so its replays are pointed where nothing can match.
# One replay goes to an id no dead letter has (the answer is the documented 404, after
# the body's validation), and a replay by filter gets a window in 1970 (the answer is
# the documented 200 with nothing replayed). Everything else about the requests stays
# as generated. The replay itself is tested in tests/api/admin_dead_letters.rs.
NO_SUCH_DEAD_LETTER = 9_007_199_254_740_991


@schemathesis.hook
def map_case(ctx, case):
    if case.method.upper() != "POST" or "/admin/dead-letters" not in case.path:
        return case
    if case.path.endswith("/{id}/replay"):
        case.path_parameters = {**(case.path_parameters or {}), "id": NO_SUCH_DEAD_LETTER}
    elif case.path.endswith("/dead-letters/replay") and isinstance(case.body, dict):
        case.body = {**case.body, "from": "1970-01-01T00:00:00Z", "to": "1970-01-01T00:00:01Z"}
    return case
