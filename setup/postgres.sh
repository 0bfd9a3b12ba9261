# setup/postgres.sh (sourced by setup.sh): the PostgreSQL cluster, the app role and database, the schema check.
# shellcheck shell=bash

pg_version() {
  if [[ -n "${PG_VERSION:-}" ]]; then
    echo "$PG_VERSION"
    return 0
  fi
  local v best=""
  for v in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x "$v" ]] || continue
    v="${v#/usr/lib/postgresql/}"
    v="${v%%/*}"
    if [[ -z "$best" ]] || ((v > best)); then best=$v; fi
  done
  [[ -n "$best" ]] || return 1
  echo "$best"
}

psql_su() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"; }
psql_app() {
  PGPASSWORD="$PG_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" "$@"
}

start_postgres() {
  local v restart=0 cur conf want
  v="$(pg_version)" || die "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres)"
  if ! pg_lsclusters -h | awk -v v="$v" '$1==v && $2=="main" {f=1} END {exit !f}'; then
    echo "creating cluster $v/main on port $PG_PORT"
    as_root_nofds pg_createcluster "$v" main --port "$PG_PORT"
  fi
  # listen only on 127.0.0.1 (Debian's default 'localhost' also binds ::1);
  # a conf.d drop-in keeps postgresql.conf untouched
  conf="/etc/postgresql/$v/main/conf.d/logpipeline.conf"
  want="# written by $REPO/setup.sh
listen_addresses = '127.0.0.1'"
  if [[ "$(as_root cat "$conf" 2>/dev/null)" != "$want" ]]; then
    echo "writing $conf"
    as_root mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$want" | as_root tee "$conf" >/dev/null
    as_root chown postgres:postgres "$conf"
    restart=1
  fi
  cur="$(pg_conftool -s "$v" main show port 2>/dev/null || true)"
  if [[ "$cur" != "$PG_PORT" ]]; then
    echo "setting port=$PG_PORT (was '$cur')"
    as_root pg_conftool "$v" main set port "$PG_PORT"
    restart=1
  fi
  if running_pid postgres >/dev/null; then
    if ((restart)); then
      as_root_nofds pg_ctlcluster "$v" main restart
    else
      echo "postgres $v/main already running"
    fi
  else
    check_port_free postgres || true
    as_root_nofds pg_ctlcluster "$v" main start
  fi
  wait_for postgres 30 pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
}

ensure_pg_app_db() {
  local v hba
  v="$(pg_version)"
  if [[ "$(psql_su -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]]; then
    echo "creating role $PG_USER"
    psql_su -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASSWORD'"
  fi
  # The test suite gives each test binary a database of its own (logtest_<pid>_…),
  # so no test touches the rows in $PG_DB: the app role may create databases.
  if [[ "$(psql_su -Atc "SELECT rolcreatedb FROM pg_roles WHERE rolname = '$PG_USER'")" != t ]]; then
    echo "granting $PG_USER CREATEDB (for the test suite's own databases)"
    psql_su -c "ALTER ROLE $PG_USER CREATEDB"
  fi
  if [[ "$(psql_su -Atc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    echo "creating database $PG_DB"
    psql_su -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
  if ! psql_app -Atc 'SELECT 1' >/dev/null 2>&1; then
    # Either the password is not what we expect or pg_hba does not allow
    # password logins over TCP: fix both, then re-check.
    echo "password login over TCP failed; resetting password and pg_hba entry"
    psql_su -c "ALTER ROLE $PG_USER WITH LOGIN PASSWORD '$PG_PASSWORD'"
    hba="/etc/postgresql/$v/main/pg_hba.conf"
    if ! as_root grep -Eq "^host[[:space:]]+($PG_DB|all)[[:space:]]+($PG_USER|all)[[:space:]]+127\.0\.0\.1/32[[:space:]]+(scram-sha-256|md5)" "$hba"; then
      as_root sed -i "1i host $PG_DB $PG_USER 127.0.0.1/32 scram-sha-256" "$hba"
    fi
    as_root_nofds pg_ctlcluster "$v" main reload
    sleep 1
    psql_app -Atc 'SELECT 1' >/dev/null
  fi
  echo "postgres: $PG_USER@127.0.0.1:$PG_PORT/$PG_DB ok"
}

stop_postgres() {
  local v
  v="$(pg_version)" || return 0
  if running_pid postgres >/dev/null; then
    as_root pg_ctlcluster "$v" main stop 3>&-
    echo "postgres: stopped"
  else
    echo "postgres: not running"
  fi
}

step_postgres() {
  start_postgres
  ensure_pg_app_db
}

step_schema() {
  local dir="$REPO/migrations" d name v found missing=()
  psql_app -Atc "SELECT to_regclass('public.log_events') IS NOT NULL" | grep -qx t ||
    { echo "table log_events does not exist in $PG_DB"; return 1; }
  [[ -d "$dir" ]] || { echo "no migrations directory at $dir"; return 1; }
  found="$(psql_app -Atc 'SELECT version FROM __diesel_schema_migrations')"
  local n=0
  for d in "$dir"/*/; do
    [[ -d "$d" ]] || continue
    name="$(basename "$d")"
    v="${name%%_*}"
    v="${v//-/}"
    n=$((n + 1))
    grep -qxF "$v" <<<"$found" || missing+=("$name ($v)")
  done
  if ((${#missing[@]})); then
    echo "migrations not applied: ${missing[*]}"
    return 1
  fi
  echo "log_events present; all $n migrations applied"
  note "$n migrations applied"
}
