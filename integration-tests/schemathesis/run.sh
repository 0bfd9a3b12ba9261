#!/usr/bin/env bash
# Schema fuzzing: schemathesis (from PyPI) against the running producer's and gateway's
# /v3/api-docs. Fails on any 5xx, any undocumented status code or content type, and any
# response that does not match its documented schema.
#
# Usage: integration-tests/schemathesis/run.sh     (the stack must be up: ./setup.sh)
# Env:   SCHEMATHESIS_MAX_EXAMPLES (default 100 per operation and phase)
#
# The live tail (/gateway/api/query/tail) is left out: every valid request to it is an
# endless event stream, which a fuzzer's request can only end by timing out. Its
# parameters, errors and stream are tested in integration-tests/tests/api/tail.rs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${LOGPIPELINE_CACHE:-$HOME/.cache/logpipeline}/schemathesis-venv"
version=4.32.5

if [[ "$("$venv/bin/st" --version 2>/dev/null)" != *"$version"* ]]; then
  echo "schemathesis: installing $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
status=0
for docs in http://127.0.0.1:8081/producer/v3/api-docs http://127.0.0.1:8080/gateway/v3/api-docs; do
  echo "schemathesis: $docs"
  excluded=()
  [[ $docs == *gateway* ]] && excluded=(--exclude-path /gateway/api/query/tail)
  "$venv/bin/st" run "$docs" \
    --checks "$checks" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" \
    --workers 2 \
    --request-timeout 30 \
    --wait-for-schema 30 \
    --no-color \
    "${excluded[@]}" \
    || status=$?
done
exit "$status"
