#!/usr/bin/env bash
# Runs every check and test of the workspace against real PostgreSQL, RabbitMQ and Redis,
# starting (and if needed installing) them first.
set -euo pipefail
cd "$(dirname "$0")/../.."

deploy/local/servers.sh
deploy/local/sweep-test-leftovers.sh
deploy/local/smtp.sh
deploy/local/tools.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo deny --locked check licenses bans sources
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

# Every fuzz target (fuzz/) for a bounded time from its kept corpus.
POS_FUZZ_SECS="${POS_FUZZ_SECS:-30}" deploy/local/fuzz.sh
