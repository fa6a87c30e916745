#!/usr/bin/env bash
# Installs the tools the tests run but do not start as servers, from Debian's packages when
# they are missing: Prometheus and promtool (alert rules and dashboards are tested against them).
# Safe to run again.
set -euo pipefail

log() { printf 'tools: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)

if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The package's own service is not wanted: each test starts a Prometheus of its own.
log "prometheus: $(prometheus --version 2>&1 | head -n 1)"
