#!/usr/bin/env bash
# Starts PostgreSQL, RabbitMQ and Redis on loopback when they are not already answering,
# installing them with apt first when they are missing, and waits until each answers.
# Safe to run again: servers that answer are left alone.
set -euo pipefail

log() { printf 'servers: %s\n' "$*" >&2; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds
  local name=$1 port=$2 deadline=$((SECONDS + $3))
  until answers "$port"; do
    if ((SECONDS > deadline)); then log "$name did not answer on port $port"; return 1; fi
    sleep 1
  done
  log "$name answers on 127.0.0.1:$port"
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_install() {
  log "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
  answers 5432 && { log "postgresql already answers"; return; }
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Tests connect as postgres over loopback without a password: trust loopback only.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for postgresql 5432 60
}

start_redis() {
  answers 6379 && { log "redis already answers"; return; }
  command -v redis-server >/dev/null || apt_install redis-server
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for redis 6379 30
}

start_rabbitmq() {
  answers 5672 && { log "rabbitmq already answers"; return; }
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  $SUDO rabbitmq-server -detached
  $SUDO timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
  wait_for rabbitmq 5672 120
}

start_postgres
start_redis
start_rabbitmq
