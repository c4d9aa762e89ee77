#!/usr/bin/env bash
# The echo demo: starts examples/echo_server on a free loopback port, has
# examples/echo_client_protocol talk to it a few times, then stops the server with
# SIGTERM and checks that it shut down cleanly (exit status 0).
#
#   examples/demo.sh [BIN_DIR]     (BIN_DIR holds the built examples; default build/examples)
#
# Exits non-zero if any exchange fails. Every wait is bounded.
set -euo pipefail

bin=${1:-build/examples}
server=$bin/echo_server
client=$bin/echo_client_protocol
for program in "$server" "$client"; do
    [[ -x $program ]] || { echo "demo: $program not found; build first (scripts/demo does)" >&2; exit 1; }
done

# Scaled like the test suite's own deadlines (the sanitizer build is slower).
scale=${TIDE_TEST_TIMEOUT_MULTIPLIER:-1}
wait_s=$((10 * ${scale%%.*}))

work=$(mktemp -d)
server_pid=
# shellcheck disable=SC2317 # called through the trap
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The server's output goes through a FIFO: its first line tells the port; the rest is
# collected by a background reader and shown at the end (two processes printing at
# once would interleave their lines in random order).
mkfifo "$work/server.out"
"$server" --host 127.0.0.1 --port 0 >"$work/server.out" &
server_pid=$!
exec 3<"$work/server.out"
if ! IFS= read -r -t "$wait_s" -u 3 first || [[ $first != "listening on "* ]]; then
    echo "demo: the server did not say where it listens within ${wait_s} s" >&2
    exit 1
fi
address=${first#listening on }
port=${address##*:}
echo "server: $first"
cat <&3 >"$work/server.log" &
reader_pid=$!
exec 3<&-

status=0
for message in "Hello World!" "tide speaks asyncio's protocols" "one more, then goodbye"; do
    echo "client: connecting to $address"
    if ! timeout "$((2 * wait_s))" "$client" --port "$port" --timeout "$wait_s" "$message" |
        sed -u 's/^/client: /'; then
        echo "demo: the exchange of '$message' failed" >&2
        status=1
    fi
done

echo "demo: sending SIGTERM to the server"
kill -TERM "$server_pid"
# A clean shutdown has a deadline: past it, the server is killed (and fails the demo).
if ! timeout "$((2 * wait_s))" tail --pid="$server_pid" -s 0.1 -f /dev/null; then
    echo "demo: the server did not exit within $((2 * wait_s)) s of SIGTERM" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
fi
server_status=0
wait "$server_pid" || server_status=$?
server_pid=
wait "$reader_pid" || true
echo "server: (its output meanwhile)"
sed 's/^/server: /' "$work/server.log"
if [[ $server_status -ne 0 ]]; then
    echo "demo: the server exited with status $server_status" >&2
    exit 1
fi
echo "demo: the server exited with status 0"
if [[ $status -ne 0 ]]; then
    echo "demo: FAILED" >&2
else
    echo "demo: every message came back unchanged"
fi
exit "$status"
