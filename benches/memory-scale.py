#!/usr/bin/env python3
"""Resident memory per idle connection, per empty queue and per queued 16-byte message, and
whether a broker takes N concurrent connections and M queues, measured from the broker's VmRSS.

Speaks raw AMQP 0-9-1 (stdlib only), pipelining the handshake so 10,000 connections open in
seconds. Only connects to 127.0.0.1. Usage:
    memory-scale.py --port P --pid PID [--connections 10000] [--queues 100000] [--messages 100000]
Prints one JSON line.
"""
import argparse, json, socket, struct, sys, time

def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"

def shortstr(s):
    b = s.encode()
    return bytes([len(b)]) + b

def longstr(b):
    return struct.pack(">I", len(b)) + b

def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)

HANDSHAKE = (
    b"AMQP\x00\x00\x09\x01"
    + method(0, 10, 11, struct.pack(">I", 0) + shortstr("PLAIN") + longstr(b"\0guest\0guest") + shortstr("en_US"))
    + method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
    + method(0, 10, 40, shortstr("/") + shortstr("") + b"\x00")
    + method(1, 20, 10, shortstr(""))
)

def read_frames(sock, buf):
    """Yields (kind, channel, payload) from sock, buffering in buf (a bytearray)."""
    while True:
        while len(buf) >= 7:
            kind, channel, size = struct.unpack(">BHI", buf[:7])
            if len(buf) < size + 8:
                break
            payload = bytes(buf[7:7 + size])
            del buf[:size + 8]
            yield kind, channel, payload
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf.extend(chunk)

def wait_for(sock, buf, class_id, method_id, count=1):
    seen = 0
    for kind, channel, payload in read_frames(sock, buf):
        if kind != 1:
            continue
        cid, mid = struct.unpack(">HH", payload[:4])
        if (cid, mid) == (10, 50) or (cid, mid) == (20, 40):
            code = struct.unpack(">H", payload[4:6])[0]
            raise RuntimeError(f"broker closed with {code}: {payload[7:7 + payload[6]].decode(errors='replace')}")
        if (cid, mid) == (class_id, method_id):
            seen += 1
            if seen == count:
                return payload

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")

def settle(pid, seconds=1.5):
    time.sleep(seconds)
    return rss_kib(pid)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--queues", type=int, default=100000)
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    out = {"label": a.label, "connections": a.connections, "queues": a.queues, "messages": a.messages}
    control = socket.create_connection(("127.0.0.1", a.port), timeout=30)
    cbuf = bytearray()
    control.sendall(HANDSHAKE)
    wait_for(control, cbuf, 20, 11)
    base = settle(a.pid)
    out["rss_base_kib"] = base

    # Empty queues, declared in pipelined batches.
    t0 = time.time()
    try:
        batch = 1000
        for start in range(0, a.queues, batch):
            n = min(batch, a.queues - start)
            control.sendall(b"".join(
                method(1, 50, 10, struct.pack(">H", 0) + shortstr(f"ms-q-{start + i}") + b"\x00" + struct.pack(">I", 0))
                for i in range(n)))
            wait_for(control, cbuf, 50, 11, n)
        out["queues_ok"] = True
    except Exception as e:
        out["queues_ok"] = False
        out["queues_error"] = str(e)
    out["queues_declare_s"] = round(time.time() - t0, 1)
    with_queues = settle(a.pid, 3)
    out["rss_queues_kib"] = with_queues
    out["kib_per_empty_queue"] = round((with_queues - base) / max(1, a.queues), 3)

    # Queued 16-byte messages in one queue.
    body = b"x" * 16
    header = frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0))
    one = method(1, 60, 40, struct.pack(">H", 0) + shortstr("") + shortstr("ms-q-0") + b"\x00") + header + frame(3, 1, body)
    for start in range(0, a.messages, 5000):
        control.sendall(one * min(5000, a.messages - start))
    for _ in range(300):
        control.sendall(method(1, 50, 10, struct.pack(">H", 0) + shortstr("ms-q-0") + b"\x01" + struct.pack(">I", 0)))
        ok = wait_for(control, cbuf, 50, 11)
        name_len = ok[4]
        count = struct.unpack(">I", ok[5 + name_len:9 + name_len])[0]
        if count >= a.messages:
            break
        time.sleep(0.1)
    with_msgs = settle(a.pid, 3)
    out["rss_messages_kib"] = with_msgs
    out["bytes_per_queued_message"] = round((with_msgs - with_queues) * 1024 / max(1, a.messages), 1)

    # Idle connections.
    conns = []
    t0 = time.time()
    try:
        for i in range(a.connections):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=30)
            s.sendall(HANDSHAKE)
            conns.append(s)
            if len(conns) % 500 == 0:
                for c in conns[-500:]:
                    wait_for(c, bytearray(), 20, 11)
        for c in conns[(len(conns) // 500) * 500:]:
            wait_for(c, bytearray(), 20, 11)
        out["connections_ok"] = True
    except Exception as e:  # a refusal is a result, not a crash of this tool
        out["connections_ok"] = False
        out["connections_error"] = f"after {len(conns)}: {e}"
    out["connections_open_s"] = round(time.time() - t0, 1)
    with_conns = settle(a.pid, 3)
    out["rss_connections_kib"] = with_conns
    out["kib_per_idle_connection"] = round((with_conns - with_msgs) / max(1, len(conns)), 2)
    for c in conns:
        c.close()

    # Clean up the queues (nowait).
    for start in range(0, a.queues, 1000):
        control.sendall(b"".join(
            method(1, 50, 40, struct.pack(">H", 0) + shortstr(f"ms-q-{i}") + b"\x04")
            for i in range(start, min(a.queues, start + 1000))))
    time.sleep(1)
    control.close()
    print(json.dumps(out))

if __name__ == "__main__":
    sys.exit(main())
