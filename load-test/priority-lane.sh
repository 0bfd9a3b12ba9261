#!/usr/bin/env bash
# Priority-lane benchmark (#15): with the consumer stopped, 1,000,000 INFO events onto
# log-events, one ERROR through the producer, then the consumer started: how soon is
# the ERROR queryable through the gateway, and how much INFO is still waiting then?
# Restarts the stack's consumer; leaves it running. Flags go to the binary, e.g.
#   ./load-test/priority-lane.sh --backlog 1000000 --max-seconds 300
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/logpipeline/target}"
cargo build --release -q -p load-test --bin priority-lane
exec "$CARGO_TARGET_DIR/release/priority-lane" "$@"
