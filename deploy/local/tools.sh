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

# The JSON API's contract tests: PyPI's openapi-spec-validator checks the OpenAPI document and
# schemathesis fuzzes the live server (services/web/tests/it/openapi.rs), from a virtualenv
# under target/ so that nothing is installed system-wide.
venv="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/openapi-venv"
schemathesis_version="4.32.5"
if [ ! -x "$venv/bin/openapi-spec-validator" ] ||
  ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$schemathesis_version"; then
  log "pip install openapi-spec-validator schemathesis into target/openapi-venv"
  python3 -m venv "$venv" 2>/dev/null || {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q --disable-pip-version-check "openapi-spec-validator==0.7.2" "schemathesis==$schemathesis_version"
fi
log "schemathesis: $("$venv/bin/schemathesis" --version 2>&1 | head -n 1)"

# cargo deny (licences, bans, sources: deny.toml) and cargo fuzz (fuzz/, deploy/local/fuzz.sh),
# built from crates.io when missing.
for tool in cargo-deny cargo-fuzz; do
  if ! command -v "$tool" >/dev/null; then
    log "cargo install $tool"
    cargo install --locked --quiet "$tool"
  fi
done
log "$(cargo deny --version 2>&1 | head -n 1), $(cargo fuzz --version 2>&1 | head -n 1)"
