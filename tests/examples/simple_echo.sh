#!/usr/bin/env bash
# Smoke test of examples/simple_echo_protocol: one client (bash's /dev/tcp) sends a
# message, expects "echo:" + message back and disconnects; the server must then print
# its three lines, close itself and exit 0.
#   simple_echo.sh PATH_TO_simple_echo_protocol
set -euo pipefail

program=$1
scale=${TIDE_TEST_TIMEOUT_MULTIPLIER:-1}
wait_s=$((10 * ${scale%%.*}))
fail() { echo "simple_echo: FAILED: $*" >&2; exit 1; }

work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"' EXIT

mkfifo "$work/out"
"$program" --host 127.0.0.1 --port 0 >"$work/out" &
pid=$!
exec 3<"$work/out"
IFS= read -r -t "$wait_s" -u 3 first || fail "no 'Serving on' line within ${wait_s} s"
echo "server: $first"
[[ $first == "Serving on 127.0.0.1:"* ]] || fail "unexpected first line '$first'"
port=${first##*:}

message="hello tide"
expected="echo:$message"
exec 4<>"/dev/tcp/127.0.0.1/$port"
printf '%s' "$message" >&4
IFS= read -r -t "$wait_s" -N "${#expected}" -u 4 reply || fail "no complete reply within ${wait_s} s (got '${reply:-}')"
echo "client: sent '$message', received '$reply'"
[[ $reply == "$expected" ]] || fail "expected '$expected'"
exec 4>&-

# The server closes after its client left: its output ends, then the process does.
lines=()
while IFS= read -r -t "$wait_s" -u 3 line; do
    echo "server: $line"
    lines+=("$line")
done
status=0
wait "$pid" || status=$?
pid=
want=("Connection received!" "$message" "Connection lost! Closing server...")
[[ "${lines[*]}" == "${want[*]}" ]] || fail "server printed '${lines[*]}', expected '${want[*]}'"
[[ $status -eq 0 ]] || fail "the server exited with status $status"
echo "simple_echo: ok"
