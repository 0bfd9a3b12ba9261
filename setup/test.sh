# setup/test.sh (sourced by setup.sh): `./setup.sh test`, the whole suite (cargo test, chaos runs, schemathesis).
# shellcheck shell=bash

# test [args]: with args, only `cargo test --release --workspace <args>`; without,
# the whole suite. Runs from the repository, whatever the caller's directory.
cmd_test() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup (https://rustup.rs)"
  cd "$REPO" || exit
  install_agent_clients
  build_otel_collector
  unpack_syslog_ng
  drop_test_topics
  if (($#)); then
    echo "+ CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo test --release --workspace $*"
    local rc=0
    cargo test --release --workspace "$@" || rc=$?
    drop_test_databases
    drop_test_topics
    return "$rc"
  fi
  # The whole suite: everything but the chaos run, then the chaos run with its
  # output shown (its summary is the point), then the two tests that kill the
  # stack's consumer again with one writer instead of the default (one per core),
  # then schemathesis on both API documents. The takeover test runs the release
  # binary itself, so the binaries are built first.
  echo "+ CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --release --workspace --bins"
  cargo build --release --workspace --bins
  echo "+ CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo test --release --workspace -- --skip survives_the_chaos"
  cargo test --release --workspace -- --skip survives_the_chaos
  echo "+ cargo test --release -p integration-tests --test chaos -- --nocapture"
  cargo test --release -p integration-tests --test chaos -- --nocapture
  echo "+ CONSUMER_WRITERS=1: the crash and chaos runs again"
  # (exported for the run too: both tests start the consumer again themselves)
  local rc=0
  CONSUMER_WRITERS=1 "$REPO/setup.sh" restart consumer
  CONSUMER_WRITERS=1 cargo test --release -p integration-tests --test consumer_crash --test chaos \
    -- --nocapture || rc=$?
  env -u CONSUMER_WRITERS "$REPO/setup.sh" restart consumer
  ((rc == 0)) || exit "$rc"
  drop_test_databases
  drop_test_topics
  echo "+ integration-tests/schemathesis/run.sh"
  "$REPO/integration-tests/schemathesis/run.sh"
}

# Each test binary works in a database of its own (logtest_<pid>_…); once the run is
# over, none of them is in use.
drop_test_databases() {
  local db
  for db in $(psql_app -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'logtest\_%'"); do
    psql_app -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  done
}

# Every test names its topics with a UUID (`unique` in tests/api/helpers.rs), so
# none of the stack's own topics matches. Dropped before a run too: a run that
# failed left its topics, and a broker holding thousands of partitions is slow to
# start again after an unclean stop.
drop_test_topics() {
  local pattern='.*-[0-9a-f]{32}.*' count
  count="$(kafka_list_topics | grep -cE "^$pattern\$" || true)"
  ((count > 0)) || return 0
  echo "+ deleting $count test topics left in Kafka"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --delete --topic "$pattern" || echo "(could not delete the test topics; carrying on)"
}

# The agents' client libraries that tests/agents.rs drives (OpenTelemetry SDK,
# elasticsearch, a Loki client, protobuf and snappy), pinned in
# integration-tests/agents/requirements.txt, in a virtualenv of their own. Reinstalled
# only when the requirements change.
install_agent_clients() {
  local venv="${AGENTS_VENV:-${LOGPIPELINE_CACHE:-$HOME/.cache/logpipeline}/agents-venv}"
  local requirements="$REPO/integration-tests/agents/requirements.txt"
  local stamp="$venv/.requirements.sha256"
  local want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  export AGENTS_VENV="$venv"
  if [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  echo "agents: installing the pinned client libraries into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
}

# The OpenTelemetry Collector that tests/otelcol.rs runs, built from its Go modules by
# ocb, the official builder, from integration-tests/agents/otelcol-builder.yaml (pinned
# module versions), in ~/.cache/logpipeline/otelcol. Built again only when the manifest
# changes (~3 minutes on two cores, plus the modules' download on a new machine).
OCB_VERSION=v0.165.0
build_otel_collector() {
  local dir="${LOGPIPELINE_CACHE:-$HOME/.cache/logpipeline}/otelcol"
  local manifest="$REPO/integration-tests/agents/otelcol-builder.yaml"
  local stamp="$dir/.manifest.sha256"
  local want
  want="$(cat "$manifest" <(echo "$OCB_VERSION") | sha256sum | cut -d' ' -f1)"
  export OTELCOL_BIN="$dir/build/otelcol-logpipeline"
  if [[ -x "$OTELCOL_BIN" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  # Non-login shells (CI) may lack Go's PATH entry, as they may lack rustup's.
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "go not found: the OpenTelemetry Collector's test builds it from its Go modules"
  echo "agents: building the OpenTelemetry Collector with ocb $OCB_VERSION into $dir (a few minutes)"
  mkdir -p "$dir"
  GOBIN="$dir/bin" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
  # ocb writes to the manifest's output_path (build), relative to where it runs.
  (cd "$dir" && "$dir/bin/builder" --config "$manifest" >"$dir/build.log" 2>&1) || {
    tail -n 30 "$dir/build.log"
    die "ocb could not build the Collector (log: $dir/build.log)"
  }
  echo "$want" >"$stamp"
}

# syslog-ng for tests/syslog_ng.rs: Debian's syslog-ng-core conflicts with rsyslog (both
# provide the system's log daemon), so its packages are downloaded and unpacked into
# ~/.cache/logpipeline/syslog-ng, never installed; the binary runs from there with its
# own module path. The libraries it links are in setup/packages.sh.
SYSLOG_NG_PACKAGES=(syslog-ng-core syslog-ng-mod-http syslog-ng-scl)
unpack_syslog_ng() {
  local dir="${LOGPIPELINE_CACHE:-$HOME/.cache/logpipeline}/syslog-ng"
  export SYSLOG_NG_ROOT="$dir/root"
  if [[ -x "$SYSLOG_NG_ROOT/usr/sbin/syslog-ng" ]]; then
    return 0
  fi
  echo "agents: unpacking syslog-ng (${SYSLOG_NG_PACKAGES[*]}) into $dir"
  rm -rf "$dir"
  mkdir -p "$dir/debs"
  # (As root, apt warns that it downloads unsandboxed: harmless here.)
  (cd "$dir/debs" && apt-get download "${SYSLOG_NG_PACKAGES[@]}")
  local deb
  for deb in "$dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$SYSLOG_NG_ROOT"
  done
  [[ -x "$SYSLOG_NG_ROOT/usr/sbin/syslog-ng" ]] || die "syslog-ng did not unpack into $SYSLOG_NG_ROOT"
}
