#!/usr/bin/env bash
# Every query kind of the gateway, one after the other, uncached: the gateway is
# restarted with CACHE_ENABLED=false for the run and restored after it. One request
# at a time (concurrency 1) for N seconds per kind; prints each kind's count, p50,
# p99 and max (the first, cold request is usually the max), and the rows stored.
# Meant for the data set of seed-skewed (its sources and words), but runs on any.
#   ./load-test/query-kinds.sh [seconds per kind=8] [kinds…]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-8}
shift || true
kinds=("$@")
if [ ${#kinds[@]} -eq 0 ]; then
    kinds=(page filtered source rare-source level-source correlation keyset deep
        search search-rare search-common search-rare-filtered search-common-filtered
        histogram histogram-source stats stats168)
fi
export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
psql_() { psql -h 127.0.0.1 -U "${POSTGRES_USERNAME:-loguser}" -d "${POSTGRES_URL:-logprocessor}" -v ON_ERROR_STOP=1 -qAtX "$@"; }

trap './setup.sh restart gateway >/dev/null' EXIT
CACHE_ENABLED=false ./setup.sh restart gateway >/dev/null
# The total from the day rollup: exact, and no scan of the rows.
rows=$(psql_ -c "SELECT coalesce(sum(events), 0) FROM log_rollup_day WHERE level = '' AND source = ''")
echo "log_events: $rows rows; cache off; ${seconds}s per kind, one request at a time"
printf '%-24s %7s %9s %9s %9s\n' kind requests p50_ms p99_ms max_ms
for kind in "${kinds[@]}"; do
    ./load-test/run.sh --mode query --query-kind "$kind" --duration "$seconds" \
        --concurrency 1 >/dev/null 2>&1
    # The newest report (all names, then the first: `| head` would cut ls off, and
    # pipefail would end the script).
    result=$(ls -t load-test/results/*-query-*.json)
    result=${result%%$'\n'*}
    python3 - "$kind" "$result" <<'PY'
import json, sys
kind, path = sys.argv[1], sys.argv[2]
report = json.load(open(path))
for name, l in report["latency"].items():
    if name == "queries_all_kinds":
        continue
    failed = sum(n for status, n in report["by_status"].items() if not status.startswith("2"))
    note = f"  ({failed} not 2xx: {report['by_status']})" if failed else ""
    print(f"{kind:<24} {l['count']:>7} {l['p50_ms']:>9.1f} {l['p99_ms']:>9.1f} {l['max_ms']:>9.1f}{note}")
PY
done
