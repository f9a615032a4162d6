#!/usr/bin/env bash
# Times a restart of Warren with N persistent messages on disk (default 1,000,000).
#
#   bash benches/restart-time.sh            # N=1000000, 16-byte bodies
#   N=200000 SIZE=4096 bash benches/restart-time.sh
#
# Starts Warren on a free 127.0.0.1 port with a fresh data directory under
# target/restart-time/, publishes with confirms (warren-perf, 4 producers, no consumer) until
# the durable queue holds at least N persistent messages, kills the broker with SIGKILL (by
# PID), starts it again on the same directory and reports the time from exec to
# "Server startup complete", the broker's own "Recovered ..." line, and the queue depth after
# the restart. The broker is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
SIZE=${SIZE:-16}
cargo build --release --quiet --bin warren --bin warren-perf
root=target/restart-time
rm -rf "$root" && mkdir -p "$root"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pid=""
stop() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap stop EXIT

start() { # $1: log file
  local t0 t1
  t0=$(date +%s%N)
  target/release/warren --listen "127.0.0.1:$port" --data-dir "$root/data" >"$1" 2>&1 &
  pid=$!
  until grep -q "Server startup complete" "$1"; do
    kill -0 "$pid" 2>/dev/null || { cat "$1"; echo "warren exited" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

depth() { # messages in the queue (passive declare through warren-perf's own protocol code is
  # not exposed, so ask with a tiny raw AMQP client in Python's standard library)
  python3 - "$port" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def frame(t, ch, payload): s.sendall(struct.pack(">BHI", t, ch, len(payload)) + payload + b"\xce")
def method(ch, cls, mth, args=b""): frame(1, ch, struct.pack(">HH", cls, mth) + args)
def read():
    hdr = b""
    while len(hdr) < 7: hdr += s.recv(7 - len(hdr))
    t, ch, n = struct.unpack(">BHI", hdr)
    body = b""
    while len(body) < n + 1: body += s.recv(n + 1 - len(body))
    return t, ch, body[:-1]
def until(cls, mth):
    while True:
        t, ch, p = read()
        if t == 1 and struct.unpack(">HH", p[:4]) == (cls, mth): return p[4:]
def sstr(b): return bytes([len(b)]) + b
def lstr(b): return struct.pack(">I", len(b)) + b
s.sendall(b"AMQP\x00\x00\x09\x01")
until(10, 10)
method(0, 10, 11, lstr(b"") + sstr(b"PLAIN") + lstr(b"\0guest\0guest") + sstr(b"en_US"))
until(10, 30)
method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
method(0, 10, 40, sstr(b"/") + sstr(b"") + b"\0")
until(10, 41)
method(1, 20, 10, sstr(b""))
until(20, 11)
# queue.declare passive=1 durable=1
method(1, 50, 10, struct.pack(">H", 0) + sstr(b"warren-perf-0") + bytes([0b11]) + lstr(b""))
p = until(50, 11)
n = p[0]
print(struct.unpack(">I", p[1 + n:5 + n])[0])
PY
}

start "$root/first.log" >/dev/null
# warren-perf clears its queue when it starts, so a short fill that falls short is redone
# with a longer one until the queue holds at least N.
seconds=2
while :; do
  target/release/warren-perf --port "$port" -x 4 -y 0 -s "$SIZE" --persistent --confirm 256 \
    --duration "$seconds" --keep-topology --quiet >/dev/null 2>&1
  queued=$(depth)
  echo "  queued $queued in $seconds s" >&2
  [ "$queued" -ge "$N" ] && break
  seconds=$((seconds * 2))
  [ "$seconds" -le 256 ] || { echo "could not queue $N messages" >&2; exit 1; }
done
before=$(depth)
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
ready_ms=$(start "$root/second.log")
after=$(depth)
recovered=$(grep -o "Recovered .*" "$root/second.log")
size=$(du -sh "$root/data" | cut -f1)
echo "restart with $before persistent messages ($SIZE-byte bodies, $size on disk): ready in $ready_ms ms from exec; broker: $recovered; queue depth after restart: $after"
[ "$after" -eq "$before" ] || { echo "expected $before messages after the restart, got $after" >&2; exit 1; }
