#!/usr/bin/env bash
# Smoke test of the stream examples against examples/echo_server in one style
# (protocol, streams or callbacks), over TCP and a Unix socket: echo_client with its
# default parts and with a message, line_client; then a client left connected while
# the server gets SIGTERM, which must still shut down cleanly (exit 0). Also runs
# wait_for_data. Every wait is bounded.
#   streams.sh BIN_DIR STYLE
set -euo pipefail

bin=$1
style=$2
scale=${TIDE_TEST_TIMEOUT_MULTIPLIER:-1}
wait_s=$((10 * ${scale%%.*}))
fail() { echo "streams ($style): FAILED: $*" >&2; exit 1; }

work=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null; rm -rf "$work"' EXIT

# Starts the server with the given address options; sets pid and reads its first line.
start_server() {
    rm -f "$work/out"
    mkfifo "$work/out"
    "$bin/echo_server" --style "$style" "$@" >"$work/out" &
    pid=$!
    exec 3<"$work/out"
    IFS= read -r -t "$wait_s" -u 3 first || fail "no 'listening on' line within ${wait_s} s"
    echo "server: $first"
    [[ $first == "listening on "* ]] || fail "unexpected first line '$first'"
    cat <&3 >"$work/server.log" &
    exec 3<&-
}

# Stops the server with SIGTERM and checks its exit status.
stop_server() {
    kill -TERM "$pid"
    local status=0 i
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$pid" || status=$?
    pid=
    sed 's/^/server: /' "$work/server.log"
    [[ $status -eq 0 ]] || fail "the server exited with status $status"
}

# What a client logged as received, joined (the echo may come back in several reads).
received() { sed -n "s/^Received: '\(.*\)'$/\1/p" | tr -d '\n'; }

# Runs the clients against the address options given.
run_clients() {
    local out
    out=$(timeout "$((2 * wait_s))" "$bin/echo_client" "$@") || fail "echo_client $*"
    echo "$out" | sed 's/^/echo_client: /'
    [[ $(received <<<"$out") == "This is the message. It will be sent in parts." ]] ||
        fail "echo_client did not get its parts back"
    out=$(timeout "$((2 * wait_s))" "$bin/echo_client" "$@" "tide streams") || fail "echo_client message"
    [[ $(received <<<"$out") == "tide streams" ]] || fail "echo_client did not get its message back"
    out=$(timeout "$((2 * wait_s))" "$bin/line_client" "$@") || fail "line_client $*"
    echo "$out" | sed 's/^/line_client: /'
    [[ $(grep -c "^Received: " <<<"$out") -eq 4 ]] || fail "line_client did not read four lines"
    grep -qx "Received: 'Last line.'" <<<"$out" || fail "line_client missed the last line"
}

start_server --host 127.0.0.1 --port 0
port=${first##*:}
run_clients --port "$port"
# A client that stays connected: the shutdown closes it.
exec 4<>"/dev/tcp/127.0.0.1/$port"
printf 'still here' >&4
IFS= read -r -t "$wait_s" -N 10 -u 4 reply || fail "no echo for the idle client"
[[ $reply == "still here" ]] || fail "idle client got '$reply'"
stop_server
exec 4>&-

start_server --unix "$work/sock"
run_clients --unix "$work/sock"
stop_server

out=$(timeout "$wait_s" "$bin/wait_for_data") || fail "wait_for_data"
[[ $out == "Received: abc" ]] || fail "wait_for_data printed '$out'"
echo "streams ($style): ok"
