#!/bin/bash
# Two relay binaries at the same workloads, alternated (docs/benchmarks.md, "Profile-guided
# build"): ROUNDS rounds of `relay-bench suite --relay A` then `--relay B` (the relay
# alone, portable mode), one line per run and workload: the relay's CPU per delivered
# packet and CPU %, loss, and "other": what the rest of the machine used during that
# suite run (all cores' busy time less the suite's and the relay's), in % of one core.
# Then, per workload, the mean of B's us/pkt over the mean of A's.
# Usage: benches/ab-suite.sh A B [ROUNDS] [suite args...]  (as root, from the workspace
# root after `cargo build --release -p relay-benches`; default suite args:
# --workloads w1,w2 --w2-viewers 1000 --window 15). JSON of each run in target/bench/ab/.
set -euo pipefail
a=$1 b=$2 rounds=${3:-2}
shift $(($# < 3 ? $# : 3))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--workloads w1,w2 --w2-viewers 1000 --window 15)
bench=target/release/relay-bench
out=target/bench/ab
mkdir -p "$out"
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
hz=$(getconf CLK_TCK)
TIMEFORMAT='%R %U %S'
for round in $(seq 1 "$rounds"); do
    for side in A B; do
        bin=$a
        [ $side = B ] && bin=$b
        json=$out/$side-$round.json
        b0=$(busy)
        # bash's `time` counts the suite and the relay it waits for.
        t=$({ time "$bench" suite --relay "$bin" --servers relay --no-xdp "${args[@]}" \
            --json "$json" > "$out/$side-$round.log" 2>&1; } 2>&1)
        b1=$(busy)
        other=$(echo "$t" | awk -v b0="$b0" -v b1="$b1" -v hz="$hz" \
            '{printf "%.0f", ((b1 - b0) / hz - $2 - $3) / $1 * 100}')
        jq -r --arg side $side --arg round "$round" --arg other "$other" \
            '.runs[] | [$side, $round, "\(.workload) \(.viewers)", .us_per_packet,
             .cpu_percent, .loss * 100, $other] | @tsv' "$json"
    done
done | tee "$out/runs.tsv" | awk -F'\t' 'BEGIN {
        print "side  round  workload viewers  us/pkt  CPU %  loss %  other %"
    } {
        printf "%-4s  %5s  %-16s  %6.2f  %5.1f  %6.3f  %7s\n", $1, $2, $3, $4, $5, $6, $7
        sum[$3, $1] += $4; n[$3, $1]++; seen[$3] = 1
    } END {
        for (w in seen) printf "%s: B/A us per packet %.3f\n", w, (sum[w, "B"] / n[w, "B"]) / (sum[w, "A"] / n[w, "A"])
    }'
