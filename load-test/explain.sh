#!/usr/bin/env bash
# The plan of every query kind the gateway runs, as EXPLAIN (ANALYZE, BUFFERS), with
# the statements as the gateway sends them (captured with log_min_duration_statement
# = 0) and its values bound as literals (its first executions get custom plans for
# exactly those values). Windows end now and start 24 h before, as the defaults do.
# The sources and words are those of seed-skewed's data set. Read-only.
#   ./load-test/explain.sh [kind…]   (default: every kind; see the list below)
set -euo pipefail
export PGPASSWORD=${POSTGRES_PASSWORD:-logpass}
psql_() { psql -h 127.0.0.1 -U "${POSTGRES_USERNAME:-loguser}" -d logprocessor -v ON_ERROR_STOP=1 -qAtX "$@"; }

now=$(date -u +%FT%T.%6NZ)
since=$(date -u -d "$now - 24 hours" +%FT%T.%6NZ)
minute=$(date -u -d "$since" +%FT%H:%M:00Z)
next_hour=$(date -u -d "$(date -u -d "$since" +%FT%H:00:00Z) + 1 hour" +%FT%T.%6NZ)
today=$(date -u +%F)
columns='id, level, message, source, "timestamp", metadata, correlation_id, request_id, trace_id'
window="\"timestamp\" >= '$since' AND \"timestamp\" <= '$now'"
newest="ORDER BY \"timestamp\" DESC, id DESC"
# A correlation id and a keyset cursor from the newest rows, as a person would click.
correlation=$(psql_ -c "SELECT correlation_id FROM log_events WHERE $window AND correlation_id IS NOT NULL $newest LIMIT 1")
cursor=$(psql_ -F, -c "SELECT \"timestamp\", id FROM log_events WHERE $window $newest OFFSET 49 LIMIT 1")
cursor_ts=${cursor%,*}
cursor_id=${cursor#*,}
rows=$(psql_ -c "SELECT coalesce(sum(events), 0) FROM log_rollup_day WHERE level = '' AND source = ''")

# A page is its keys first (from the filter's own index), then the rows of those keys.
page() { echo "SELECT \"timestamp\", id FROM log_events WHERE $window AND $1 $newest LIMIT ${2:-50} OFFSET 0"; }
# The second statement of the unfiltered page: the rows of its keys.
rows_of_keys() {
    local keys low high ids
    keys=$(psql_ -F, -c "SELECT min(\"timestamp\"), max(\"timestamp\"), string_agg(id::text, ',') FROM (SELECT \"timestamp\", id FROM log_events WHERE $window $newest LIMIT 50) AS page")
    IFS=, read -r low high ids <<<"$keys"
    echo "SELECT $columns FROM log_events WHERE \"timestamp\" >= '$low' AND \"timestamp\" <= '$high' AND id = ANY('{$ids}')"
}
capped() { echo "SELECT count(*) FROM (SELECT 1 FROM log_events WHERE $window AND $1 LIMIT 10001) AS capped"; }
rollup_sum() { # table levels source from to
    echo "SELECT coalesce(sum(events), 0)::int8 AS n FROM $1 WHERE level = ANY('$2') AND bucket >= '$4' AND bucket < '$5' AND source = '$3'"
}
edge_rows() { echo "SELECT count(*) FROM log_events WHERE \"timestamp\" >= '$minute' AND \"timestamp\" <= '$since' AND $1"; }
search() { echo "search_vector @@ websearch_to_tsquery('english', '$1')"; }

declare -A statements=(
    [page]="$(page true)
$(rows_of_keys)
$(rollup_sum log_rollup_day '{""}' '' "${today}T00:00:00Z" "$(date -u -d "$today + 1 day" +%F)T00:00:00Z")
$(rollup_sum log_rollup_hour '{""}' '' "$next_hour" "${today}T00:00:00Z")
$(edge_rows true)"
    [level]="$(page "level = 'ERROR'")
$(rollup_sum log_rollup_hour '{ERROR}' '' "$next_hour" "${today}T00:00:00Z")
$(edge_rows "level = 'ERROR'")"
    [source]="$(page "source = 'service-000'")
$(rollup_sum log_rollup_minute '{""}' service-000 "$minute" "$next_hour")"
    [rare-source]="$(page "source = 'service-199'")"
    [level-source]="$(page "level = 'ERROR' AND source = 'service-000'")
$(rollup_sum log_rollup_hour '{ERROR}' service-000 "$next_hour" "${today}T00:00:00Z")
$(edge_rows "level = 'ERROR' AND source = 'service-000'")"
    [correlation]="$(page "correlation_id = '$correlation'")
$(capped "correlation_id = '$correlation'")"
    [keyset]="$(page "(\"timestamp\", id) < ('$cursor_ts', '$cursor_id')")"
    [deep]="$(page "level = 'WARN'" 300)
$(page "level = 'ERROR'" 300)"
    [search-rare]="$(page "$(search rare-7)")
$(capped "$(search rare-7)")"
    [search-common]="$(page "$(search database)")
$(capped "$(search database)")"
    [search-rare-filtered]="$(page "level = 'FATAL' AND $(search rare-7)")
$(capped "level = ANY('{ERROR,FATAL}') AND $(search rare-7)")"
    [search-common-filtered]="$(page "level = 'ERROR' AND source = 'service-000' AND $(search database)")
$(capped "level = 'ERROR' AND source = 'service-000' AND $(search database)")"
    [histogram-source]="SELECT bucket, level, sum(events)::int8 AS events FROM log_rollup_minute WHERE bucket >= '$minute' AND bucket < '$now' AND source = 'service-000' AND level <> '' AND (cardinality('{ERROR,FATAL}'::text[]) = 0 OR level = ANY('{ERROR,FATAL}')) GROUP BY bucket, level"
    [stats]="SELECT date_trunc('hour', bucket) AS hour, level, sum(events)::int8 AS n FROM log_rollup_hour WHERE bucket >= '$next_hour' AND bucket < '${today}T00:00:00Z' AND source = '' AND level <> '' GROUP BY 1, 2
SELECT source, sum(events)::int8 AS n FROM log_rollup_hour WHERE level = '' AND bucket >= '$next_hour' AND bucket < '${today}T00:00:00Z' AND source <> '' GROUP BY 1
SELECT sketch FROM log_rollup_hour WHERE bucket >= '$next_hour' AND bucket < '${today}T00:00:00Z' AND level = '' AND source = '' AND sketch IS NOT NULL"
)
order=(page level source rare-source level-source correlation keyset deep search-rare
    search-common search-rare-filtered search-common-filtered histogram-source stats)
kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=("${order[@]}")

echo "log_events: $rows rows; window $since .. $now; correlation id $correlation"
for kind in "${kinds[@]}"; do
    echo
    echo "### $kind"
    while IFS= read -r statement; do
        [ -n "$statement" ] || continue
        echo
        echo "$statement" | sed "s/$columns/…/" | cut -c1-300
        psql_ -c "EXPLAIN (ANALYZE, BUFFERS) $statement"
    done <<<"${statements[$kind]}"
done
