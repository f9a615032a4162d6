"""A minimal AMQP 0-9-1 client on a raw socket (Python stdlib only).

Just enough to hold a connection, a channel and a consumer open so that the
management API has something to list: protocol header, connection.start-ok
(PLAIN), tune-ok, open, channel.open, basic.qos, basic.consume, and the
handling of a connection.close sent by the broker (e.g. after
DELETE /api/connections/{name}).
"""

import socket
import struct

FRAME_METHOD = 1
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE


def shortstr(text):
    data = text.encode()
    return struct.pack("!B", len(data)) + data


def longstr(data):
    if isinstance(data, str):
        data = data.encode()
    return struct.pack("!I", len(data)) + data


def table(entries):
    """Encodes a field table; values are str (S), bool (t) or dict (F)."""
    body = b""
    for key, value in entries.items():
        body += shortstr(key)
        if isinstance(value, bool):
            body += b"t" + struct.pack("!B", 1 if value else 0)
        elif isinstance(value, dict):
            body += b"F" + table(value)
        else:
            body += b"S" + longstr(str(value))
    return struct.pack("!I", len(body)) + body


class AmqpError(Exception):
    """The broker closed the connection or channel, or answered unexpectedly."""


class MinimalConnection:
    """One AMQP connection with (at most) channel 1 open."""

    def __init__(self, host, port, user, password, vhost="/", name=None, timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.closed_by_server = None
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(0, 10, 10)  # connection.start
        properties = {
            "product": "warren-mgmt-scenario",
            "platform": "Python",
            "version": "1.0",
            "capabilities": {
                "consumer_cancel_notify": True,
                "connection.blocked": True,
            },
        }
        if name:
            properties["connection_name"] = name
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        self.send_method(
            0, 10, 11, table(properties) + shortstr("PLAIN") + longstr(response) + shortstr("en_US")
        )
        args = self.expect(0, 10, 30)  # connection.tune
        channel_max, frame_max, _heartbeat = struct.unpack("!HIH", args[:8])
        self.send_method(0, 10, 31, struct.pack("!HIH", channel_max, frame_max, 0))
        self.send_method(0, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")
        self.expect(0, 10, 41)  # connection.open-ok

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def open_channel(self, prefetch=None):
        self.send_method(1, 20, 10, shortstr(""))
        self.expect(1, 20, 11)
        if prefetch is not None:
            self.send_method(1, 60, 10, struct.pack("!IHB", 0, prefetch, 0))
            self.expect(1, 60, 11)

    def consume(self, queue, tag):
        args = struct.pack("!H", 0) + shortstr(queue) + shortstr(tag) + b"\x00" + table({})
        self.send_method(1, 60, 20, args)
        self.expect(1, 60, 21)

    def send_method(self, channel, class_id, method_id, args):
        payload = struct.pack("!HH", class_id, method_id) + args
        frame = struct.pack("!BHI", FRAME_METHOD, channel, len(payload)) + payload
        self.sock.sendall(frame + bytes([FRAME_END]))

    def read_frame(self):
        while True:
            if len(self.buffer) >= 7:
                kind, channel, size = struct.unpack("!BHI", self.buffer[:7])
                if len(self.buffer) >= 8 + size:
                    payload = self.buffer[7 : 7 + size]
                    self.buffer = self.buffer[8 + size :]
                    return kind, channel, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AmqpError("connection closed by the broker (EOF)")
            self.buffer += chunk

    def next_method(self):
        """The next method frame, skipping heartbeats and content frames."""
        while True:
            kind, channel, payload = self.read_frame()
            if kind == FRAME_METHOD:
                class_id, method_id = struct.unpack("!HH", payload[:4])
                return channel, class_id, method_id, payload[4:]

    def expect(self, channel, class_id, method_id):
        got_channel, got_class, got_method, args = self.next_method()
        if (got_class, got_method) == (10, 50):
            code = struct.unpack("!H", args[:2])[0]
            text = args[3 : 3 + args[2]].decode(errors="replace")
            self.closed_by_server = code
            raise AmqpError(f"connection.close {code} {text}")
        if (got_channel, got_class, got_method) != (channel, class_id, method_id):
            raise AmqpError(
                f"expected method {class_id}.{method_id} on channel {channel}, "
                f"got {got_class}.{got_method} on channel {got_channel}"
            )
        return args

    def wait_for_close(self, timeout=15):
        """Waits for connection.close from the broker, answers close-ok; returns its code."""
        self.sock.settimeout(timeout)
        try:
            while True:
                channel, class_id, method_id, args = self.next_method()
                if (channel, class_id, method_id) == (0, 10, 50):
                    code = struct.unpack("!H", args[:2])[0]
                    self.send_method(0, 10, 51, b"")
                    return code
        except (OSError, AmqpError):
            return None
        finally:
            self.sock.close()

    def close(self):
        try:
            self.send_method(0, 10, 50, struct.pack("!H", 200) + shortstr("bye") + struct.pack("!HH", 0, 0))
            self.sock.settimeout(5)
            while True:
                _channel, class_id, method_id, _args = self.next_method()
                if (class_id, method_id) == (10, 51):
                    break
        except (OSError, AmqpError):
            pass
        finally:
            self.sock.close()
