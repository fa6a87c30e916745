#!/usr/bin/env bash
# Starts a real SMTP server (aiosmtpd) on loopback for the notify tests when none answers,
# installing aiosmtpd from PyPI first when it is missing. Messages land in
# $POS_TEST_SMTP_DIR/<recipient>/<uuid>.eml so tests can count what arrived.
# Safe to run again: a server that answers is left alone.
set -euo pipefail
cd "$(dirname "$0")"

PORT=${POS_TEST_SMTP_PORT:-2525}
DIR=${POS_TEST_SMTP_DIR:-/tmp/pos-smtp}

log() { printf 'smtp: %s\n' "$*" >&2; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if answers "$PORT"; then log "smtp already answers on 127.0.0.1:$PORT"; exit 0; fi

if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  log "installing aiosmtpd"
  # Debian's python refuses user installs without the flag; the package is test-only.
  python3 -m pip install --quiet --user aiosmtpd 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages aiosmtpd
fi

mkdir -p "$DIR"
nohup python3 smtp_sink.py --port "$PORT" --dir "$DIR" >"$DIR.log" 2>&1 &
echo $! >"$DIR.pid"

deadline=$((SECONDS + 30))
until answers "$PORT"; do
  if ((SECONDS > deadline)); then log "smtp did not answer on port $PORT (see $DIR.log)"; exit 1; fi
  sleep 0.5
done
log "smtp answers on 127.0.0.1:$PORT, messages in $DIR"
