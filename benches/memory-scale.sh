#!/usr/bin/env bash
# Resident memory per idle connection, per empty queue and per queued 16-byte message, with
# 10,000 connections and 100,000 queues, for Warren and for a private RabbitMQ node in the
# same run (benches/memory-scale.py does the measuring). Both brokers are stopped by PID.
#
#   bash benches/memory-scale.sh            # CONNECTIONS=10000 QUEUES=100000 MESSAGES=100000
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${CONNECTIONS:-10000}
queues=${QUEUES:-100000}
messages=${MESSAGES:-100000}
free_port() {  # a free port below 45000 (RabbitMQ's node also needs PORT+20001)
    python3 -c 'import random, socket
while True:
    p = random.randint(30000, 44999)
    ok = True
    for q in (p, p + 20000, p + 20001):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p); break'
}
warren_port=${WARREN_PORT:-$(free_port)}
rabbit_port=${RABBIT_PORT:-$(free_port)}
work=target/memory-scale
rabbit_dir=$work/rabbitmq
mkdir -p "$work"
warren_pid=""
cleanup() {
    if [ -n "$warren_pid" ]; then kill "$warren_pid" 2>/dev/null || true; wait "$warren_pid" 2>/dev/null || true; fi
    bash tests/rabbitmq-node.sh stop "$rabbit_port" "$rabbit_dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
args=(--connections "$connections" --queues "$queues" --messages "$messages")

cargo build --release --bin warren >/dev/null 2>&1
rm -rf "$work/warren-data"
target/release/warren --listen "127.0.0.1:$warren_port" --data-dir "$work/warren-data" >"$work/warren.log" 2>&1 &
warren_pid=$!
for _ in $(seq 100); do grep -q "Server startup complete" "$work/warren.log" && break; sleep 0.1; done
python3 benches/memory-scale.py --port "$warren_port" --pid "$warren_pid" --label warren "${args[@]}" | tee "$work/warren.json"
kill "$warren_pid"; wait "$warren_pid" 2>/dev/null || true; warren_pid=""

rm -rf "$rabbit_dir"
bash tests/rabbitmq-node.sh start "$rabbit_port" "$rabbit_dir" >/dev/null
python3 benches/memory-scale.py --port "$rabbit_port" --pid "$(cat "$rabbit_dir/rabbit.pid")" --label rabbitmq "${args[@]}" | tee "$work/rabbitmq.json"
