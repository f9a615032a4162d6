#!/usr/bin/env bash
# Does watching Warren slow it? S1 (1 producer, 1 queue, 1 autoack consumer, 16 B) run by
# warren-perf against one release broker, alternately quiet and while a poller GETs
# /api/queues and /metrics 10 times a second each (what a dashboard and a Prometheus
# scraping far too often would do). Medians of RUNS runs of each, and the change.
#
#   benches/management-under-load.sh                 # RUNS=5 DURATION=6
#   RUNS=3 DURATION=5 PORT=35690 benches/management-under-load.sh
#   WARREN_BIN=/other/warren PERF_BIN=/other/warren-perf ...   # binaries built elsewhere
#
# The broker runs on its own ports and data directory and is stopped by PID on exit.
# Output: a table on stdout and in target/management-under-load.md.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
RUNS=${RUNS:-5}
DURATION=${DURATION:-6}
PORT=${PORT:-35690}
MGMT_PORT=${MGMT_PORT:-$((PORT + 1))}
PROM_PORT=${PROM_PORT:-$((PORT + 2))}
POLLS_PER_S=${POLLS_PER_S:-10}

work=$(mktemp -d /tmp/warren-mgmt-load.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

warren=${WARREN_BIN:-$root/target/release/warren}
perf=${PERF_BIN:-$root/target/release/warren-perf}
if [ -z "${WARREN_BIN:-}" ]; then
    cargo build --release --bins >&2
fi

"$warren" --listen "127.0.0.1:$PORT" --data-dir "$work/data" \
    --management-port "$MGMT_PORT" --management-ip 127.0.0.1 \
    --prometheus-port "$PROM_PORT" --prometheus-ip 127.0.0.1 >"$work/warren.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    grep -q "Server startup complete" "$work/warren.log" && break
    sleep 0.1
done

# GETs /api/queues and /metrics, each POLLS_PER_S times a second, for SECONDS seconds;
# prints how many answered 200 and how many did not.
poll() {
    python3 - "$MGMT_PORT" "$PROM_PORT" "$POLLS_PER_S" "$1" <<'EOF'
import base64, http.client, sys, time
mgmt, prom, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
# Kept-alive connections, as a dashboard or Prometheus keeps them: the poller's own CPU
# (it shares the machine) stays small.
targets = [(http.client.HTTPConnection("127.0.0.1", mgmt, timeout=2), "/api/queues", auth),
           (http.client.HTTPConnection("127.0.0.1", prom, timeout=2), "/metrics", {})]
ok = bad = 0
end = time.monotonic() + seconds
tick = time.monotonic()
while time.monotonic() < end:
    for conn, path, headers in targets:
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            ok += r.status == 200
        except (OSError, http.client.HTTPException):
            bad += 1
            conn.close()
    tick += 1.0 / rate
    time.sleep(max(0.0, tick - time.monotonic()))
print(f"{ok} {bad}")
EOF
}

s1() {
    "$perf" --port "$PORT" --duration "$DURATION" --broker-pid "$pid" --json --quiet \
        --label S1 --producers 1 --consumers 1 --queues 1 --size 16 --autoack |
        python3 -c 'import json, sys; print(round(json.loads(sys.stdin.readline())["consume_rate"]))'
}

quiet=()
polled=()
answered=0
failed=0
for run in $(seq 1 "$RUNS"); do
    # Alternate which goes first, so drift over the runs falls on both.
    for mode in $([ $((run % 2)) -eq 1 ] && echo "quiet polled" || echo "polled quiet"); do
        if [ "$mode" = quiet ]; then
            rate=$(s1)
            quiet+=("$rate")
        else
            poll $((DURATION + 2)) >"$work/poll.out" &
            poller=$!
            sleep 0.5
            rate=$(s1)
            wait "$poller"
            read -r ok bad <"$work/poll.out"
            answered=$((answered + ok))
            failed=$((failed + bad))
            polled+=("$rate")
        fi
        echo "run $run $mode: $rate msg/s" >&2
        sleep 0.5
    done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
mq=$(median "${quiet[@]}")
mp=$(median "${polled[@]}")
change=$(python3 -c "print(f'{($mp - $mq) / $mq * 100:+.1f}%')")
table="| S1 1p-1q-1c 16 B autoack | quiet | polled ($POLLS_PER_S/s /api/queues + $POLLS_PER_S/s /metrics) | change |
|---|---|---|---|
| median of $RUNS x $DURATION s | ${mq} msg/s | ${mp} msg/s | $change |

Runs quiet: ${quiet[*]}; polled: ${polled[*]}. Poll answers: $answered x 200, $failed failed.
$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, Warren $(git rev-parse --short HEAD)."
echo "$table"
mkdir -p "$root/target"
echo "$table" >"$root/target/management-under-load.md"
