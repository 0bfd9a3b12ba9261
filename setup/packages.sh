# setup/packages.sh (sourced by setup.sh): the Debian packages the stack needs and the step that installs them.
# shellcheck shell=bash

PACKAGES=(postgresql redis-server prometheus prometheus-postgres-exporter prometheus-redis-exporter
  kcat openjdk-17-jre-headless maven cmake pkg-config libssl-dev libpq-dev libcurl4-openssl-dev
  zlib1g-dev curl build-essential iproute2 python3-venv chromium chromium-driver fonts-dejavu-core
  bsdutils rsyslog rsyslog-elasticsearch
  libivykis0 libnet1 libpcre3 libwrap0)
# bsdutils (logger), rsyslog and syslog-ng are the real senders of the syslog and agent
# tests. syslog-ng's own packages conflict with rsyslog's (each is the system's log
# daemon), so `./setup.sh test` unpacks them instead (setup/test.sh); the libraries
# above are what its binary links.

step_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" == "ii "* ]] || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    # keep the Debian packages from starting their own (systemd/sysv) daemons on our ports
    local policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
      as_root chmod 755 /usr/sbin/policy-rc.d
      policy_created=1
    fi
    as_root mkdir -p /usr/share/man/man1 # openjdk's postinst needs it on slim images
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } 3>&- || rc=$?
    if ((policy_created)); then as_root rm -f /usr/sbin/policy-rc.d; fi
    ((rc == 0)) || return $rc
    note "installed ${#missing[@]}: ${missing[*]}"
  else
    echo "all ${#PACKAGES[@]} packages present"
  fi
  if [[ $SKIP_APP == 0 ]] && ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found in PATH (nor in ~/.cargo/bin). Install Rust with rustup (https://rustup.rs):"
    echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"
    return 1
  fi
}
