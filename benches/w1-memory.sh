#!/bin/bash
# W1's memory by hand (docs/benchmarks.md, section 10): the relay BIN serves 64 RTP
# paths on loopback, `relay-bench publish` sends the ~2 Mbit/s clip to each, and 128 sink
# viewers (2 per path) watch; 40 s after they start joining, one line:
#   TAG rss= anon= file= (kB, /proc/PID/smaps_rollup) hist= (bytes, the relay's
#   relay_track_history_bytes) cpu= (clock ticks over the last 30 s) faults/s= loss
# Usage: benches/w1-memory.sh BIN TAG [VAR=value ...]   (the VARs go to the relay, e.g.
# MALLOC_CONF=dirty_decay_ms:1000). Run from the workspace root after
# `cargo build --release -p relay-benches`; with HEAP=1 it also saves the relay's heap
# profile as w1-heap-TAG.pb.gz. Uses ports 18889, 18189, 19998, 19999 and 30000-30127.
set -euo pipefail
relay=$1 tag=$2
shift 2
bench=target/release/relay-bench
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
{
    printf 'logLevel: warn\nwebrtcAddress: 127.0.0.1:18889\n'
    printf 'webrtcLocalUDPAddress: 127.0.0.1:18189\nworkers: 1\nkeyframeCache: no\n'
    printf 'metrics: yes\nmetricsAddress: 127.0.0.1:19998\n'
    printf 'pprof: yes\npprofAddress: 127.0.0.1:19999\npaths:\n'
    for i in $(seq 0 63); do
        port=$((30000 + 2 * i))
        sdp="v=0\\r\\no=- 0 0 IN IP4 127.0.0.1\\r\\ns=w1\\r\\nc=IN IP4 127.0.0.1\\r\\nt=0 0\\r\\n"
        sdp+="m=video $port RTP/AVP 96\\r\\na=rtpmap:96 H264/90000\\r\\n"
        sdp+="a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\\r\\n"
        printf '  cam%d:\n    source: udp+rtp://127.0.0.1:%d\n    rtpSDP: "%s"\n' "$i" "$port" "$sdp"
    done
} > "$dir/w1.yml"
env "$@" "$relay" serve -c "$dir/w1.yml" > "$dir/relay.log" 2>&1 &
relay_pid=$!
sleep 1
"$bench" publish --target 127.0.0.1:30000 --streams 64 --duration 70 > "$dir/publish.log" 2>&1 &
publish_pid=$!
sleep 3
"$bench" swarm --whep 'http://127.0.0.1:18889/cam{stream}/whep' --streams 64 --viewers 128 \
    --mode sink --duration 45 > "$dir/swarm.log" 2>&1 &
swarm_pid=$!
stat() { awk '{print $14 + $15, $10}' "/proc/$relay_pid/stat"; }
sleep 10
read -r cpu1 faults1 <<< "$(stat)"
sleep 30
read -r cpu2 faults2 <<< "$(stat)"
rollup() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$relay_pid/smaps_rollup"; }
rss=$(rollup Rss) anon=$(rollup Anonymous) file=$(rollup Pss_File)
hist=$(curl -s 127.0.0.1:19998/metrics | awk '/^relay_track_history_bytes/ {s += $2} END {print s}')
if [ -n "${HEAP:-}" ]; then curl -s -o "w1-heap-$tag.pb.gz" 127.0.0.1:19999/debug/pprof/heap; fi
wait "$swarm_pid" || true
kill "$publish_pid" "$relay_pid" 2>/dev/null || true
wait "$relay_pid" 2>/dev/null || true
loss=$(grep -o '"loss":[0-9.e-]*' "$dir/swarm.log" || echo '"loss":unknown')
echo "$tag rss=$rss anon=$anon file=$file hist=$hist cpu=$((cpu2 - cpu1))" \
    "faults/s=$(((faults2 - faults1) / 30)) $loss $*"
