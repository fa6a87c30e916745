#!/usr/bin/env bash
# Installs the tools the tests run but do not start as servers, from Debian's packages when
# they are missing: Prometheus and promtool (alert rules and dashboards are tested against them),
# Chromium, Node.js and npm (the web cabinet's browser tests drive Debian's Chromium with
# playwright-core; no browser is ever downloaded), and the browser tests' node modules.
# Safe to run again.
set -euo pipefail

log() { printf 'tools: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
# Russian locale data for Chromium: date fields read дд.мм.гггг as staff see them.
[ -f /usr/lib/chromium/locales/ru.pak ] || missing+=(chromium-l10n)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The package's own service is not wanted: each test starts a Prometheus of its own.
log "prometheus: $(prometheus --version 2>&1 | head -n 1)"
log "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"

# The browser tests' node project: exactly its lock file's versions.
browser_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/services/web/browser"
if [ ! -f "$browser_dir/node_modules/.package-lock.json" ] ||
  ! cmp -s "$browser_dir/package-lock.json" "$browser_dir/node_modules/.package-lock.json.source" 2>/dev/null; then
  log "npm ci in services/web/browser"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$browser_dir/package-lock.json" "$browser_dir/node_modules/.package-lock.json.source"
fi
