"""HTTP plumbing and JSON shapes for the management API scripts (stdlib only)."""

import base64
import http.client
import json
import time
import urllib.parse

GUEST = ("guest", "guest")


class Api:
    """A management API at BASE_URL (http://host:port), one request per connection."""

    def __init__(self, base_url, timeout=30):
        parsed = urllib.parse.urlsplit(base_url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.prefix = parsed.path.rstrip("/")
        self.timeout = timeout

    def request(self, method, path, body=None, user=GUEST, raw=None):
        """Returns (status, parsed JSON body or None, raw body text, headers).

        body is sent as JSON; raw (bytes or str) is sent as is, with a JSON
        content type; user is (name, password) or None for no credentials.
        """
        # No Accept header: RabbitMQ answers 406 to "Accept: application/json" on the
        # resources that send no body (vhost limits, queue contents, queue actions).
        headers = {}
        data = None
        if raw is not None:
            data = raw.encode() if isinstance(raw, str) else raw
        elif body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if user is not None:
            token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, self.prefix + path, body=data, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", errors="replace")
            return response.status, parse_json(text), text, dict(response.getheaders())
        finally:
            conn.close()

    def wait_for(self, path, predicate, what, timeout=30.0, user=GUEST):
        """Polls GET path until predicate(json) holds; returns that JSON.

        RabbitMQ's management statistics arrive every few seconds, so an
        object just made may lack its counters at first.
        """
        deadline = time.monotonic() + timeout
        last = None
        while True:
            status, data, _text, _headers = self.request("GET", path, user=user)
            last = (status, data)
            if status == 200:
                try:
                    if predicate(data):
                        return data
                except (KeyError, TypeError, IndexError):
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what} at {path}; last answer {last!r}")
            time.sleep(0.25)


def parse_json(text):
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def quote(segment):
    """A path segment, percent-encoded as the management API expects (/ -> %2F)."""
    return urllib.parse.quote(segment, safe="")


def shape(value):
    """The JSON structure of value with every scalar replaced by its JSON type.

    Objects map each key to the shape of its value; a list becomes [] or a
    one-element list holding the merged shape of all its elements.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        merged = None
        for element in value:
            element_shape = shape(element)
            merged = element_shape if merged is None else merge(merged, element_shape)
        return [] if merged is None else [merged]
    if isinstance(value, dict):
        return {key: shape(value[key]) for key in sorted(value)}
    raise TypeError(f"not a JSON value: {value!r}")


UNION = "$oneOf"


def alternatives(s):
    if isinstance(s, dict) and set(s) == {UNION}:
        return list(s[UNION])
    return [s]


def merge(a, b):
    """Merges two shapes: objects take the union of their keys, lists merge
    their elements, and different types become {"$oneOf": [...]} (sorted)."""
    if a == b:
        return a
    a_plain_object = isinstance(a, dict) and UNION not in a
    b_plain_object = isinstance(b, dict) and UNION not in b
    if a_plain_object and b_plain_object:
        keys = sorted(set(a) | set(b))
        return {k: merge(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in keys}
    if isinstance(a, list) and isinstance(b, list):
        if not a:
            return b
        if not b:
            return a
        return [merge(a[0], b[0])]
    seen = {}
    for alt in alternatives(a) + alternatives(b):
        seen[json.dumps(alt, sort_keys=True)] = alt
    return {UNION: [seen[k] for k in sorted(seen)]}
