#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (libFuzzer through cargo fuzz) for a bounded time, starting
# from its corpus in the repository, and fails on the first crash. The corpus is fuzzed in a
# scratch copy, so a run leaves the repository as it was; to grow the kept corpus, run a target
# by hand on fuzz/corpus/<target> and minimize it with `cargo fuzz cmin`.
#
#   deploy/local/fuzz.sh [target ...]     POS_FUZZ_SECS=60 (per target, default 30)
#
# cargo fuzz needs the compiler's unstable flags for its sanitizer instrumentation; the one
# installed toolchain allows them with RUSTC_BOOTSTRAP. A crash leaves its input in
# fuzz/artifacts/<target>/: add it to the corpus and a test of its own once fixed.
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"

log() { printf 'fuzz: %s\n' "$*" >&2; }

seconds="${POS_FUZZ_SECS:-30}"
export RUSTC_BOOTSTRAP=1

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo fuzz list)
fi

log "building ${#targets[@]} targets"
cargo fuzz build -O --sanitizer none

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  if [ -d "corpus/$target" ]; then cp -r "corpus/$target/." "$scratch/$target/"; fi
  kept="$(find "corpus/$target" -type f 2>/dev/null | wc -l)"
  out="$scratch/$target.log"
  if ! cargo fuzz run -O --sanitizer none "$target" "$scratch/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    log "$target: CRASHED (input in fuzz/artifacts/$target/)"
    exit 1
  fi
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$out" | grep -oE '[0-9]+$' || echo 0)"
  log "$target: $runs runs in ${seconds}s ($((runs / seconds))/s), corpus $kept kept, $(find "$scratch/$target" -type f | wc -l) after"
done
