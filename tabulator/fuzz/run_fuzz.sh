#!/usr/bin/env bash
# Runs the tabulator fuzz target for a bounded time.
# Usage: run_fuzz.sh FUZZER CORPUS_DIR SEEDS_DIR SECONDS
# The corpus directory (in the build tree) grows between runs; seeds are never modified.
# Exits non-zero when libFuzzer finds a crash, a leak or undefined behaviour.
set -euo pipefail

fuzzer=$1
corpus=$2
seeds=$3
seconds=$4

mkdir -p "$corpus"
cd "$corpus"
exec "$fuzzer" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$corpus" "$seeds"
