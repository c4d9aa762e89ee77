#!/usr/bin/env bash
# User-space instructions per round trip of each echo server under callgrind (this
# machine has no hardware counters): the server runs under valgrind, the load
# generator drives it for a few seconds, and the program total is divided by the
# round trips. Kernel time is not counted, which is what isolates the libraries'
# own cost. memcpy is told not to use `rep movsb` (which callgrind counts once per
# byte) so large copies count like the vector loops they are.
#   bench/callgrind.sh BUILD_DIR [SIZE [CONNS [SERVERS...]]]
# Defaults: 1024 bytes, 10 connections, every C server and tide style. The profiles
# stay in BUILD_DIR/callgrind/ for callgrind_annotate.
set -euo pipefail
bdir=$(cd "$1" && pwd)
size=${2:-1024}
conns=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
servers=("$@")
[[ ${#servers[@]} -gt 0 ]] || servers=(epoll libev libuv libevent tide-protocol tide-buffered tide-callbacks tide-streams)
out=$bdir/callgrind
mkdir -p "$out"
export GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=2147483647
argv_of() {
    case $1 in
        epoll) echo ./epoll_echo ;;
        libev) echo ./libev_echo ;;
        libuv) echo ./uv_echo ;;
        libevent) echo ./event_echo ;;
        tide-*) echo tide/examples/echo_server --quiet --style "${1#tide-}" ;;
        *) echo "unknown server $1" >&2; exit 2 ;;
    esac
}
cd "$bdir"
printf '%-16s %10s %12s %10s\n' server round_trips instructions per_rt
for s in "${servers[@]}"; do
    prof=$out/$s-$size-$conns.out
    log=$out/$s.log
    # shellcheck disable=SC2046
    valgrind --tool=callgrind --callgrind-out-file="$prof" $(argv_of "$s") >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do grep -q "^listening on" "$log" && break; sleep 0.1; done
    port=$(grep -m1 "^listening on" "$log" | sed 's/.*://')
    rt=$(./loadgen --port "$port" -c "$conns" -s "$size" --warmup 0 --duration 4 |
        sed 's/.*"round_trips": \([0-9]*\).*/\1/')
    kill -TERM "$pid"
    sleep 0.5
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
    # awk reads to the end: leaving early would break the pipe (a failure under pipefail).
    ir=$(callgrind_annotate "$prof" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n++ {gsub(",", "", $1); print $1}')
    printf '%-16s %10d %12d %10d\n' "$s" "$rt" "$ir" $((ir / rt))
done
