#!/usr/bin/env bash
# Removes what earlier test runs left on the local servers: PostgreSQL schemas and RabbitMQ
# queues named by pos_platform::testing::unique (`<word>_t<12 hex digits>`). Tests remove their
# own as they finish; this catches those of runs that were killed.
set -euo pipefail

pattern='^[a-z0-9_]+_t[0-9a-f]{12}'

if command -v psql >/dev/null; then
  export PGOPTIONS='--client-min-messages=warning'
  schemas=$(psql -h 127.0.0.1 -U postgres -d postgres -Atc \
    "SELECT nspname FROM pg_namespace WHERE nspname ~ '${pattern}'" 2>/dev/null || true)
  for schema in $schemas; do
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" >/dev/null
  done
  [ -z "$schemas" ] || echo "sweep: dropped $(echo "$schemas" | wc -l) test schemas" >&2
fi

if command -v rabbitmqctl >/dev/null; then
  queues=$(timeout 60 rabbitmqctl -q list_queues name 2>/dev/null | grep -E "$pattern" || true)
  for queue in $queues; do
    timeout 30 rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
  done
  [ -z "$queues" ] || echo "sweep: deleted $(echo "$queues" | wc -l) test queues" >&2
fi
# Broker nodes of a test's own (testing::RabbitNode / RabbitCluster): `pos-test-<id>@localhost`,
# with their files under the temporary directory.
# Erlang's port mapper lists every running node by name.
if command -v rabbitmqctl >/dev/null && command -v epmd >/dev/null; then
  nodes=$(epmd -names 2>/dev/null | awk '$1 == "name" && $2 ~ /^pos-test-/ {print $2}' || true)
  for node in $nodes; do
    timeout 60 rabbitmqctl -n "$node@localhost" stop >/dev/null 2>&1 || true
  done
  [ -z "$nodes" ] || echo "sweep: stopped $(echo "$nodes" | wc -l) test broker nodes" >&2
fi
rm -rf "${TMPDIR:-/tmp}"/pos-rabbitmq-* 2>/dev/null || true

# Network hosts of the replicas test: namespaces `pos-<id>-<k>` and bridges `posbr<id>`.
if command -v ip >/dev/null; then
  for netns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^pos-' || true); do
    ip netns delete "$netns" 2>/dev/null || true
  done
  for bridge in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^posbr' || true); do
    ip link delete "$bridge" 2>/dev/null || true
  done
fi
exit 0
