# setup/common.sh (sourced by setup.sh): small helpers: errors, step notes, root and postgres users, probes.
# shellcheck shell=bash

die() { echo "error: $*" >&2; exit 1; }
note() { printf '%s' "$*" >"$STEP_NOTE"; } # extra text for the step's progress line
now_us() { local t=${EPOCHREALTIME/./}; echo "$((10#$t))"; }

as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
as_postgres() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else (cd / && sudo -u postgres "$@"); fi
}

probe() { curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null; }

# Shell snippet closing every inherited fd above 2 (for daemons).
# shellcheck disable=SC2016 # expanded by the inner bash
CLOSE_FDS='for fd in /proc/$$/fd/*; do fd=${fd##*/}; if ((fd > 2)); then eval "exec $fd>&-"; fi; done'
# as_root, for commands that leave a daemon behind (pg_ctlcluster start)
as_root_nofds() { as_root bash -c "$CLOSE_FDS"'; exec "$@"' _ "$@"; }
