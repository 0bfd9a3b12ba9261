#!/usr/bin/env bash
# Builds the load generator (release) and runs it against the stack ./setup.sh started.
# Every flag is forwarded, e.g.:
#   ./load-test/run.sh --mode ingest --endpoint batch --batch-size 500 --duration 20
#   ./load-test/run.sh --mode query --duration 15 --concurrency 16
#   ./load-test/run.sh --mode e2e --rate 5000 --duration 20
#   ./load-test/run.sh --mode mixed --rate 20000 --query-rate 200 --duration 20
# Reports (JSON and Markdown) go to load-test/results/. LOAD_TEST_DEBUG=1 prints each
# transport error (reset, broken pipe, …) as it happens.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logpipeline/target}"
cargo build --release -q -p load-test
exec "$CARGO_TARGET_DIR/release/load-test" "$@"
