#!/bin/bash
# The long fuzz runs (docs/architecture.md, Fuzzing): each TARGET to 10 M inputs or 30
# minutes, whichever comes first, one at a time, niced; new inputs go to a scratch
# directory (the checked-in corpus is read, not written), crashes to another. Build
# first: RELAY_EBPF=off cargo +nightly-2026-05-20 fuzz build -s none -a
set -eu
cd "$(dirname "$0")/.."
out=${FUZZ_OUT:-/tmp/fuzz}
bin=fuzz/target/x86_64-unknown-linux-gnu/release
for t in "$@"; do
  mkdir -p "$out/new/$t" "$out/crashes/$t"
  echo "== $t start $(date -u +%FT%TZ)" >> "$out/summary.log"
  rc=0
  nice -n 10 "$bin/$t" -runs=10000000 -max_total_time=1800 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/crashes/$t/" \
    "$out/new/$t" "fuzz/corpus/$t" > "$out/$t.log" 2>&1 || rc=$?
  echo "== $t rc=$rc end $(date -u +%FT%TZ)" >> "$out/summary.log"
  grep -E "INITED|DONE|^Done [0-9]+ runs|stat::average_exec_per_sec" "$out/$t.log" >> "$out/summary.log" || true
done
