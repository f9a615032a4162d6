#!/usr/bin/env python3
"""A fixed scenario of management HTTP API requests (RabbitMQ 3.10's API).

    scenario.py BASE_URL AMQP_PORT OUT.json

Runs every request of the scenario against BASE_URL (e.g.
http://127.0.0.1:15672) as guest/guest unless said otherwise, and writes to
OUT.json one record per request:

    {"name": ..., "method": ..., "path": ..., "status": N, "shape": ...}

path is the request's path template (unique names appear as {queue},
{vhost}, ...); shape is the answer's JSON structure with values replaced by
their JSON type (see common.shape), or null for an empty or non-JSON body.
Some records also carry "values": facts that must match exactly (sort
order, pagination counts, who sees what), with the run's unique names
normalised to their template.

The broker must be fresh (only its default objects), so that listings hold
the same objects on every run; the scenario cleans up what it made.
A raw AMQP connection (amqp_min.py) on AMQP_PORT holds a channel and a
consumer so that connections, channels and consumers are listed.
Python stdlib only.
"""

import json
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from amqp_min import MinimalConnection  # noqa: E402
from common import GUEST, Api, quote, shape  # noqa: E402

PERMS_ALL = {"configure": ".*", "write": ".*", "read": ".*"}
PUBLISHED = 3  # messages published to the queue {queue} through the API


class Names:
    """The run's unique object names and the templates they are recorded as."""

    def __init__(self):
        self.sfx = f"{os.getpid()}-{int(time.time() * 1000) % 10**9}"
        base = f"mgmt-{self.sfx}"
        self.queue = f"{base}-a"  # messages are published here
        self.consumed = f"{base}-b"  # the raw AMQP client consumes here
        self.doomed = f"{base}-c"  # deleted early
        self.vhost_queue = f"{base}-v"  # in {vhost}
        self.imported = f"{base}-imported"  # made by POST /api/definitions
        self.exchange = f"{base}-ex"
        self.fanout = f"{base}-fanout"
        self.imported_exchange = f"{base}-imported-ex"
        self.vhost = f"{base}-vhost"
        self.policy = f"{base}-policy"
        self.plain_user = f"{base}-plain"
        self.mgmt_user = f"{base}-mgmt"
        self.monitor_user = f"{base}-monitor"
        self.connection_name = f"{base}-conn"
        self.node = None  # the broker's node name, once known

    def node_keys(self, value):
        """value (a shape) with object keys equal to the node name renamed {node}
        (e.g. a vhost's cluster_state is keyed by node name)."""
        if isinstance(value, list):
            return [self.node_keys(v) for v in value]
        if isinstance(value, dict):
            return {("{node}" if k == self.node else k): self.node_keys(v) for k, v in value.items()}
        return value

    def normalise(self, value):
        """value with this run's suffix replaced by {sfx} (recursively)."""
        if isinstance(value, str):
            return value.replace(self.sfx, "{sfx}")
        if isinstance(value, (list, tuple)):
            return [self.normalise(v) for v in value]
        if isinstance(value, dict):
            return {k: self.normalise(v) for k, v in value.items()}
        return value


class Recorder:
    """Runs requests and records their status and shape."""

    def __init__(self, api, names):
        self.api = api
        self.names = names
        self.records = []
        self.seen = set()

    def call(self, name, method, template, body=None, user=GUEST, raw=None, values=None,
             status_only=False, **fill):
        """Requests template (its {placeholders} filled from fill, quoted) and records it.

        values, if given, maps the answer's JSON to facts recorded under
        "values" (normalised). status_only records no shape (an answer that names the
        broker's own parts, such as its web UI's extensions). Returns the answer's JSON.
        """
        assert name not in self.seen, f"duplicate request name {name}"
        self.seen.add(name)
        path = template.format(**{k: quote(str(v)) for k, v in fill.items()})
        try:
            status, data, _text, headers = self.api.request(method, path, body=body, user=user, raw=raw)
        except OSError as e:  # recorded as status 0: the comparison shows it with the rest
            print(f"scenario: {method} {path}: {e}", file=sys.stderr)
            status, data, headers = 0, None, {}
        headers = {k.lower(): v for k, v in headers.items()}
        record = {
            "name": name,
            "method": method,
            "path": template,
            "status": status,
            "shape": self.names.node_keys(shape(data)) if data is not None and not status_only else None,
        }
        if status == 401:
            record["www_authenticate"] = headers.get("www-authenticate")
        if status >= 300 and isinstance(data, dict) and "error" in data:
            record["error"] = data["error"]
        if values is not None:
            try:
                record["values"] = self.names.normalise(values(data))
            except (KeyError, TypeError, IndexError) as e:
                record["values"] = f"unavailable: {type(e).__name__}: {e}"
        self.records.append(record)
        print(f"{status} {method} {path}", file=sys.stderr)
        return data


def all_names(names, items):
    """The normalised names of all the items (objects with "name"), sorted."""
    return sorted(names.normalise(i["name"]) for i in items)


def ours(names, items):
    """The normalised names of the items (objects with "name") this run made."""
    return [names.normalise(i["name"]) for i in items if names.sfx in i.get("name", "")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the scenario, in phases -------------------------------------------------


def auth_errors(r, n):
    r.call("overview without credentials", "GET", "/api/overview", user=None)
    r.call("overview with a wrong password", "GET", "/api/overview", user=("guest", "wrong"))
    r.call("overview as an unknown user", "GET", "/api/overview", user=("nobody-" + n.sfx, "x"))
    r.call(
        "create user without tags", "PUT", "/api/users/{u}",
        body={"password": "plain-pw", "tags": ""}, u=n.plain_user,
    )
    r.call("overview as a user without the management tag", "GET", "/api/overview",
           user=(n.plain_user, "plain-pw"))
    r.call("whoami as a user without the management tag", "GET", "/api/whoami",
           user=(n.plain_user, "plain-pw"))


def create_objects(r, n):
    r.call("create vhost", "PUT", "/api/vhosts/{v}", body={"description": "mgmt scenario"}, v=n.vhost)
    r.call("create vhost again", "PUT", "/api/vhosts/{v}", body={}, v=n.vhost)
    r.call("create management user", "PUT", "/api/users/{u}",
           body={"password": "mgmt-pw", "tags": "management"}, u=n.mgmt_user)
    r.call("update management user", "PUT", "/api/users/{u}",
           body={"password": "mgmt-pw", "tags": "management"}, u=n.mgmt_user)
    r.call("create monitoring user", "PUT", "/api/users/{u}",
           body={"password": "monitor-pw", "tags": "monitoring"}, u=n.monitor_user)
    r.call("create user with a bad body", "PUT", "/api/users/{u}", raw="{not json", u=n.mgmt_user + "-bad")
    r.call("grant permissions", "PUT", "/api/permissions/{v}/{u}", body=PERMS_ALL, v=n.vhost, u=n.mgmt_user)
    r.call("grant permissions again", "PUT", "/api/permissions/{v}/{u}", body=PERMS_ALL, v=n.vhost, u=n.mgmt_user)
    r.call("grant guest permissions", "PUT", "/api/permissions/{v}/{u}", body=PERMS_ALL, v=n.vhost, u="guest")
    r.call("grant permissions in a missing vhost", "PUT", "/api/permissions/{v}/{u}",
           body=PERMS_ALL, v=n.vhost + "-missing", u=n.mgmt_user)
    r.call("set topic permissions", "PUT", "/api/topic-permissions/{v}/{u}",
           body={"exchange": "amq.topic", "write": "^w", "read": "^r"}, v=n.vhost, u=n.mgmt_user)
    r.call("declare direct exchange", "PUT", "/api/exchanges/%2F/{e}",
           body={"type": "direct", "durable": True, "auto_delete": False, "internal": False, "arguments": {}},
           e=n.exchange)
    r.call("declare direct exchange again", "PUT", "/api/exchanges/%2F/{e}",
           body={"type": "direct", "durable": True, "auto_delete": False, "internal": False, "arguments": {}},
           e=n.exchange)
    r.call("declare fanout exchange", "PUT", "/api/exchanges/%2F/{e}", body={"type": "fanout"}, e=n.fanout)
    r.call("redeclare exchange with another type", "PUT", "/api/exchanges/%2F/{e}",
           body={"type": "topic"}, e=n.fanout)
    r.call("declare exchange without a type", "PUT", "/api/exchanges/%2F/{e}", body={}, e=n.fanout + "-untyped")
    r.call("declare queue", "PUT", "/api/queues/%2F/{q}",
           body={"durable": True, "auto_delete": False, "arguments": {"x-max-length": 1000}}, q=n.queue)
    r.call("declare queue again", "PUT", "/api/queues/%2F/{q}",
           body={"durable": True, "auto_delete": False, "arguments": {"x-max-length": 1000}}, q=n.queue)
    r.call("declare queue with other arguments", "PUT", "/api/queues/%2F/{q}",
           body={"durable": True, "arguments": {"x-max-length": 7}}, q=n.queue)
    r.call("declare queue with an empty body", "PUT", "/api/queues/%2F/{q}", body={}, q=n.consumed)
    r.call("declare queue to delete", "PUT", "/api/queues/%2F/{q}", body={"durable": False}, q=n.doomed)
    r.call("declare queue in vhost", "PUT", "/api/queues/{v}/{q}", body={"durable": True}, v=n.vhost, q=n.vhost_queue)
    r.call("declare queue with bad JSON", "PUT", "/api/queues/%2F/{q}", raw="{\"durable\": tru", q=n.queue + "-bad")
    r.call("declare queue in a missing vhost", "PUT", "/api/queues/{v}/{q}",
           body={"durable": True}, v=n.vhost + "-missing", q=n.queue)
    r.call("bind queue", "POST", "/api/bindings/%2F/e/{e}/q/{q}",
           body={"routing_key": "rk", "arguments": {}}, e=n.exchange, q=n.queue)
    r.call("bind exchange to exchange", "POST", "/api/bindings/%2F/e/{s}/e/{d}",
           body={"routing_key": "", "arguments": {}}, s=n.fanout, d=n.exchange)
    r.call("bind to a missing queue", "POST", "/api/bindings/%2F/e/{e}/q/{q}",
           body={"routing_key": "rk"}, e=n.exchange, q=n.queue + "-missing")
    r.call("create policy", "PUT", "/api/policies/%2F/{p}",
           body={"pattern": f"^{n.queue}$", "definition": {"max-length-bytes": 1000000},
                 "priority": 1, "apply-to": "queues"}, p=n.policy)
    r.call("create policy again", "PUT", "/api/policies/%2F/{p}",
           body={"pattern": f"^{n.queue}$", "definition": {"max-length-bytes": 1000000},
                 "priority": 1, "apply-to": "queues"}, p=n.policy)
    r.call("create policy with a bad definition", "PUT", "/api/policies/%2F/{p}",
           body={"pattern": ".*", "definition": {"max-length": "ten"}}, p=n.policy + "-bad")
    r.call("set vhost limit", "PUT", "/api/vhost-limits/%2F/max-connections", body={"value": 1000})
    r.call("set user limit", "PUT", "/api/user-limits/{u}/max-channels", body={"value": 50}, u=n.plain_user)


def publish(r, n):
    message = {"properties": {"delivery_mode": 2, "headers": {"h": "v"}}, "routing_key": "rk",
               "payload": "hello", "payload_encoding": "string"}
    r.call("publish to exchange", "POST", "/api/exchanges/%2F/{e}/publish", body=message,
           values=lambda d: d, e=n.exchange)
    unrouted = dict(message, routing_key="nowhere")
    r.call("publish unroutable", "POST", "/api/exchanges/%2F/{e}/publish", body=unrouted,
           values=lambda d: d, e=n.exchange)
    for i in range(PUBLISHED - 1):
        body = {"properties": {}, "routing_key": n.queue, "payload": "bWVzc2FnZQ==",
                "payload_encoding": "base64"}
        if i == 0:
            r.call("publish to default exchange", "POST", "/api/exchanges/%2F/amq.default/publish",
                   body=body, values=lambda d: d)
        else:
            r.api.request("POST", "/api/exchanges/%2F/amq.default/publish", body=body)
    r.call("publish to a missing exchange", "POST", "/api/exchanges/%2F/{e}/publish", body=message,
           e=n.exchange + "-missing")
    r.call("publish with a bad body", "POST", "/api/exchanges/%2F/{e}/publish", body={"payload": "x"},
           e=n.exchange)


def open_consumer(api, n, amqp_port):
    """The raw AMQP client: a connection, channel 1 (prefetch 10) consuming {consumed}."""
    conn = MinimalConnection("127.0.0.1", amqp_port, "guest", "guest", name=n.connection_name)
    conn.open_channel(prefetch=10)
    conn.consume(n.consumed, "mgmt-scenario-consumer")
    return conn


SETTLE_SECONDS = float(os.environ.get("MGMT_SCENARIO_SETTLE_SECONDS", "30"))


def settle(api, n, conn):
    """Waits (SETTLE_SECONDS in all) until the statistics of the objects made so far
    are visible; returns the names of the raw client's connection and channel.

    A broker that never shows them is not waited for again: the wait is
    reported on stderr and the scenario goes on, so that the comparison lists
    every difference (the names then default to placeholders).
    """
    port = conn.local_port
    deadline = time.monotonic() + SETTLE_SECONDS

    def wait(path, predicate, what):
        try:
            return api.wait_for(path, predicate, what, timeout=max(0.0, deadline - time.monotonic()))
        except RuntimeError as e:
            print(f"scenario: {e}", file=sys.stderr)
            return None

    def mine(c):
        return c.get("peer_port") == port or c.get("connection_details", {}).get("peer_port") == port

    wait(f"/api/queues/%2F/{quote(n.queue)}",
         lambda d: d["messages"] == PUBLISHED and "message_stats" in d, "queue counters")
    wait(f"/api/exchanges/%2F/{quote(n.exchange)}", lambda d: "message_stats" in d, "exchange message stats")
    wait("/api/overview", lambda d: d["queue_totals"]["messages"] >= PUBLISHED
         and "publish" in d["message_stats"], "overview totals")
    connections = wait("/api/connections", lambda d: any(mine(c) and "recv_oct" in c for c in d),
                       "the raw connection") or []
    channels = wait("/api/channels", lambda d: any(mine(c) and "consumer_count" in c for c in d),
                    "its channel") or []
    wait("/api/consumers", lambda d: any(c["queue"]["name"] == n.consumed for c in d), "its consumer")
    wait(f"/api/queues/%2F/{quote(n.consumed)}", lambda d: d["consumers"] == 1, "consumer count")
    connection = next((c["name"] for c in connections if mine(c)), "unknown-connection")
    channel = next((c["name"] for c in channels if mine(c)), "unknown-channel")
    return connection, channel


def reads(r, n, node, connection, channel, amqp_port):
    r.call("overview", "GET", "/api/overview")
    r.call("cluster name", "GET", "/api/cluster-name")
    r.call("nodes", "GET", "/api/nodes")
    r.call("node", "GET", "/api/nodes/{node}", node=node)
    r.call("whoami", "GET", "/api/whoami", values=lambda d: d)
    r.call("connections", "GET", "/api/connections")
    r.call("connection", "GET", "/api/connections/{c}", c=connection,
           # Not "channels": RabbitMQ counts them with its statistics, seconds late.
           values=lambda d: {"user": d["user"], "vhost": d["vhost"],
                             "user_provided_name": d.get("user_provided_name")})
    r.call("connection channels", "GET", "/api/connections/{c}/channels", c=connection)
    r.call("missing connection", "GET", "/api/connections/{c}", c="127.0.0.1:1 -> 127.0.0.1:2")
    r.call("vhost connections", "GET", "/api/vhosts/%2F/connections")
    r.call("channels", "GET", "/api/channels")
    r.call("channel", "GET", "/api/channels/{ch}", ch=channel,
           values=lambda d: {"number": d["number"], "prefetch_count": d["prefetch_count"],
                             "consumer_count": d["consumer_count"]})
    r.call("vhost channels", "GET", "/api/vhosts/%2F/channels")
    r.call("consumers", "GET", "/api/consumers",
           values=lambda d: [{"tag": c["consumer_tag"], "queue": c["queue"]["name"],
                              "prefetch": c["prefetch_count"], "ack_required": c["ack_required"]} for c in d])
    r.call("consumers in vhost", "GET", "/api/consumers/%2F")
    exchanges(r, n)
    queues(r, n)
    bindings(r, n)
    access(r, n)
    r.call("policies", "GET", "/api/policies")
    r.call("policies in vhost", "GET", "/api/policies/%2F")
    r.call("policy", "GET", "/api/policies/%2F/{p}", p=n.policy, values=lambda d: d)
    r.call("missing policy", "GET", "/api/policies/%2F/{p}", p=n.policy + "-missing")
    r.call("operator policies", "GET", "/api/operator-policies")
    r.call("vhost limits", "GET", "/api/vhost-limits", values=lambda d: d)
    r.call("vhost limits of /", "GET", "/api/vhost-limits/%2F", values=lambda d: d)
    r.call("user limits", "GET", "/api/user-limits", values=lambda d: d)
    r.call("definitions", "GET", "/api/definitions")
    r.call("definitions of /", "GET", "/api/definitions/%2F")
    health(r, n, amqp_port)
    # The web UI's plugins: RabbitMQ's name its own JavaScript files, Warren's UI has none.
    r.call("extensions", "GET", "/api/extensions", status_only=True)


def exchanges(r, n):
    r.call("exchanges", "GET", "/api/exchanges")
    r.call("exchanges in /", "GET", "/api/exchanges/%2F",
           values=lambda d: sorted(n.normalise(e["name"]) for e in d))
    r.call("exchange", "GET", "/api/exchanges/%2F/{e}", e=n.exchange,
           values=lambda d: {k: d[k] for k in ("type", "durable", "auto_delete", "internal", "arguments")})
    r.call("default exchange", "GET", "/api/exchanges/%2F/amq.default")
    r.call("missing exchange", "GET", "/api/exchanges/%2F/{e}", e=n.exchange + "-missing")
    r.call("exchanges in a missing vhost", "GET", "/api/exchanges/{v}", v=n.vhost + "-missing")
    r.call("exchange source bindings", "GET", "/api/exchanges/%2F/{e}/bindings/source", e=n.exchange)
    r.call("exchange destination bindings", "GET", "/api/exchanges/%2F/{e}/bindings/destination", e=n.exchange)
    r.call("exchanges page", "GET", "/api/exchanges?page=1&page_size=2",
           values=lambda d: {k: d[k] for k in ("page", "page_size", "page_count", "item_count",
                                                  "filtered_count", "total_count")})


def page_facts(d):
    return {k: d[k] for k in ("page", "page_size", "page_count", "item_count", "filtered_count", "total_count")}


def queues(r, n):
    r.call("queues", "GET", "/api/queues")
    r.call("queues in /", "GET", "/api/queues/%2F", values=lambda d: ours(n, d))
    r.call("queue", "GET", "/api/queues/%2F/{q}", q=n.queue,
           values=lambda d: {k: d.get(k) for k in ("messages", "messages_ready", "messages_unacknowledged",
                                                     "consumers", "durable", "auto_delete", "exclusive",
                                                     "arguments", "policy", "type", "vhost")})
    r.call("consumed queue", "GET", "/api/queues/%2F/{q}", q=n.consumed,
           values=lambda d: {"consumers": d["consumers"],
                             "consumer_details": [c["consumer_tag"] for c in d.get("consumer_details", [])]})
    r.call("missing queue", "GET", "/api/queues/%2F/{q}", q=n.queue + "-missing")
    r.call("queues in a missing vhost", "GET", "/api/queues/{v}", v=n.vhost + "-missing")
    r.call("queue bindings", "GET", "/api/queues/%2F/{q}/bindings", q=n.queue)
    r.call("queues page", "GET", "/api/queues?page=1&page_size=2",
           values=lambda d: dict(page_facts(d), names=ours(n, d["items"])))
    r.call("queues page 2", "GET", "/api/queues?page=2&page_size=2",
           values=lambda d: dict(page_facts(d), names=ours(n, d["items"])))
    r.call("queues page beyond the end", "GET", "/api/queues?page=9&page_size=2")
    r.call("queues bad page size", "GET", "/api/queues?page=1&page_size=0")
    r.call("queues columns", "GET", "/api/queues?columns=name,messages",
           values=lambda d: sorted({k for q in d for k in q}))
    r.call("queues sorted", "GET", "/api/queues?sort=name&sort_reverse=true", values=lambda d: ours(n, d))
    r.call("queues sorted by messages", "GET", "/api/queues/%2F?sort=messages&columns=name,messages",
           values=lambda d: ours(n, d))
    r.call("queues name filter", "GET", "/api/queues?page=1&page_size=100&name={f}", f=f"{n.sfx}-a",
           values=lambda d: dict(page_facts(d), names=ours(n, d["items"])))
    r.call("queues name regex", "GET", "/api/queues?page=1&page_size=100&name={f}&use_regex=true",
           f=f"^mgmt-{n.sfx}-[ab]$", values=lambda d: dict(page_facts(d), names=ours(n, d["items"])))
    r.call("queues name filter without page", "GET", "/api/queues?name={f}", f=f"{n.sfx}-a",
           values=lambda d: ours(n, d))


def bindings(r, n):
    r.call("bindings", "GET", "/api/bindings")
    r.call("bindings in /", "GET", "/api/bindings/%2F")
    r.call("exchange-queue bindings", "GET", "/api/bindings/%2F/e/{e}/q/{q}", e=n.exchange, q=n.queue,
           values=lambda d: [(b["routing_key"], b["properties_key"]) for b in d])
    r.call("binding", "GET", "/api/bindings/%2F/e/{e}/q/{q}/rk", e=n.exchange, q=n.queue,
           values=lambda d: d)
    r.call("missing binding", "GET", "/api/bindings/%2F/e/{e}/q/{q}/other", e=n.exchange, q=n.queue)
    r.call("exchange-exchange bindings", "GET", "/api/bindings/%2F/e/{s}/e/{d}", s=n.fanout, d=n.exchange)


def access(r, n):
    r.call("vhosts", "GET", "/api/vhosts", values=lambda d: all_names(n, d))
    r.call("vhost", "GET", "/api/vhosts/{v}", v=n.vhost, values=lambda d: {"name": d["name"], "description": d.get("description")})
    r.call("missing vhost", "GET", "/api/vhosts/{v}", v=n.vhost + "-missing")
    r.call("vhost permissions", "GET", "/api/vhosts/{v}/permissions", v=n.vhost)
    r.call("users", "GET", "/api/users")
    r.call("user", "GET", "/api/users/{u}", u=n.mgmt_user, values=lambda d: {"name": d["name"], "tags": d["tags"]})
    r.call("user without tags", "GET", "/api/users/{u}", u=n.plain_user, values=lambda d: {"tags": d["tags"]})
    r.call("missing user", "GET", "/api/users/{u}", u=n.mgmt_user + "-missing")
    r.call("users without permissions", "GET", "/api/users/without-permissions")
    r.call("user permissions", "GET", "/api/users/{u}/permissions", u=n.mgmt_user)
    r.call("permissions", "GET", "/api/permissions")
    r.call("permission", "GET", "/api/permissions/{v}/{u}", v=n.vhost, u=n.mgmt_user, values=lambda d: d)
    r.call("missing permission", "GET", "/api/permissions/{v}/{u}", v="/", u=n.mgmt_user)
    r.call("topic permissions", "GET", "/api/topic-permissions")
    r.call("topic permission", "GET", "/api/topic-permissions/{v}/{u}", v=n.vhost, u=n.mgmt_user)


def health(r, n, amqp_port):
    r.call("health alarms", "GET", "/api/health/checks/alarms", values=lambda d: d)
    r.call("health local alarms", "GET", "/api/health/checks/local-alarms", values=lambda d: d)
    r.call("health port listener", "GET", "/api/health/checks/port-listener/{port}", port=amqp_port,
           values=lambda d: d.get("status"))
    r.call("health port listener not listening", "GET", "/api/health/checks/port-listener/{port}",
           port=free_port(), values=lambda d: d.get("status"))
    r.call("health protocol listener", "GET", "/api/health/checks/protocol-listener/amqp",
           values=lambda d: d.get("status"))
    r.call("health virtual hosts", "GET", "/api/health/checks/virtual-hosts", values=lambda d: d)
    r.call("health node is quorum critical", "GET", "/api/health/checks/node-is-quorum-critical",
           values=lambda d: d.get("status"))
    r.call("health certificate expiration", "GET", "/api/health/checks/certificate-expiration/1/months")
    r.call("aliveness test", "GET", "/api/aliveness-test/%2F", values=lambda d: d)
    r.call("aliveness test of a missing vhost", "GET", "/api/aliveness-test/{v}", v=n.vhost + "-missing")


def restricted_users(r, n):
    mgmt = (n.mgmt_user, "mgmt-pw")
    r.call("management user overview", "GET", "/api/overview", user=mgmt)
    r.call("management user whoami", "GET", "/api/whoami", user=mgmt, values=lambda d: d)
    r.call("management user vhosts", "GET", "/api/vhosts", user=mgmt, values=lambda d: all_names(n, d))
    r.call("management user queues", "GET", "/api/queues", user=mgmt, values=lambda d: ours(n, d))
    r.call("management user queues in /", "GET", "/api/queues/%2F", user=mgmt)
    r.call("management user queue in /", "GET", "/api/queues/%2F/{q}", user=mgmt, q=n.queue)
    r.call("management user exchanges", "GET", "/api/exchanges", user=mgmt,
           values=lambda d: sorted({e["vhost"] for e in d} - {"/"}) + (["/"] if any(e["vhost"] == "/" for e in d) else []))
    r.call("management user connections", "GET", "/api/connections", user=mgmt, values=lambda d: len(d))
    r.call("management user users", "GET", "/api/users", user=mgmt)
    r.call("management user nodes", "GET", "/api/nodes", user=mgmt)
    r.call("management user definitions", "GET", "/api/definitions", user=mgmt)
    r.call("management user declares in /", "PUT", "/api/queues/%2F/{q}", body={}, user=mgmt,
           q=n.queue + "-denied")
    monitor = (n.monitor_user, "monitor-pw")
    r.call("monitoring user overview", "GET", "/api/overview", user=monitor)
    r.call("monitoring user vhosts", "GET", "/api/vhosts", user=monitor, values=lambda d: all_names(n, d))
    r.call("monitoring user connections", "GET", "/api/connections", user=monitor, values=lambda d: len(d))
    r.call("monitoring user channels", "GET", "/api/channels", user=monitor, values=lambda d: len(d))
    r.call("monitoring user queues", "GET", "/api/queues", user=monitor, values=lambda d: ours(n, d))
    r.call("monitoring user nodes", "GET", "/api/nodes", user=monitor)
    r.call("monitoring user users", "GET", "/api/users", user=monitor)
    r.call("monitoring user declares", "PUT", "/api/queues/%2F/{q}", body={}, user=monitor,
           q=n.queue + "-denied")


def actions(r, n, connection, conn):
    r.call("get messages", "POST", "/api/queues/%2F/{q}/get",
           body={"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000},
           q=n.queue, values=lambda d: [(m["payload"], m["payload_encoding"], m["routing_key"],
                                          m["redelivered"], m["message_count"]) for m in d])
    r.call("get messages and ack", "POST", "/api/queues/%2F/{q}/get",
           body={"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64"},
           q=n.queue, values=lambda d: [(m["payload"], m["payload_encoding"], m["message_count"]) for m in d])
    r.call("get messages with a bad body", "POST", "/api/queues/%2F/{q}/get", body={"count": 1}, q=n.queue)
    r.call("get from a missing queue", "POST", "/api/queues/%2F/{q}/get",
           body={"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}, q=n.queue + "-missing")
    r.call("delete queue if-empty while not empty", "DELETE", "/api/queues/%2F/{q}?if-empty=true", q=n.queue)
    r.call("delete queue if-unused while consumed", "DELETE", "/api/queues/%2F/{q}?if-unused=true",
           q=n.consumed)
    r.call("purge queue", "DELETE", "/api/queues/%2F/{q}/contents", q=n.queue)
    r.call("purge a missing queue", "DELETE", "/api/queues/%2F/{q}/contents", q=n.queue + "-missing")
    r.call("get from a purged queue", "POST", "/api/queues/%2F/{q}/get",
           body={"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}, q=n.queue, values=lambda d: d)
    r.call("queue action sync", "POST", "/api/queues/%2F/{q}/actions", body={"action": "sync"}, q=n.queue)
    r.call("delete binding", "DELETE", "/api/bindings/%2F/e/{e}/q/{q}/rk", e=n.exchange, q=n.queue)
    r.call("delete a missing binding", "DELETE", "/api/bindings/%2F/e/{e}/q/{q}/rk", e=n.exchange, q=n.queue)
    import_definitions(r, n)
    r.call("close connection", "DELETE", "/api/connections/{c}", c=connection)
    code = conn.wait_for_close()
    r.records[-1]["values"] = {"amqp_close_code": code}
    r.call("close a missing connection", "DELETE", "/api/connections/{c}", c=connection)


def import_definitions(r, n):
    definitions = {
        "queues": [{"name": n.imported, "vhost": "/", "durable": True, "auto_delete": False,
                    "arguments": {"x-queue-type": "classic"}}],
        "exchanges": [{"name": n.imported_exchange, "vhost": "/", "type": "topic", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
        "bindings": [{"source": n.imported_exchange, "vhost": "/", "destination": n.imported,
                      "destination_type": "queue", "routing_key": "a.#", "arguments": {}}],
    }
    r.call("import definitions", "POST", "/api/definitions", body=definitions)
    # Shape not compared: RabbitMQ shows a queue's counts only once its statistics come in,
    # seconds after the import; Warren shows them at once.
    r.call("imported queue", "GET", "/api/queues/%2F/{q}", q=n.imported, status_only=True,
           values=lambda d: {"name": d["name"], "arguments": d["arguments"], "durable": d["durable"]})
    r.call("imported binding", "GET", "/api/bindings/%2F/e/{e}/q/{q}", e=n.imported_exchange, q=n.imported,
           values=lambda d: [b["routing_key"] for b in d])
    r.call("import bad definitions", "POST", "/api/definitions", raw="{\"queues\": [")


def deletions(r, n):
    r.call("delete vhost limit", "DELETE", "/api/vhost-limits/%2F/max-connections")
    r.call("delete user limit", "DELETE", "/api/user-limits/{u}/max-channels", u=n.plain_user)
    r.call("delete policy", "DELETE", "/api/policies/%2F/{p}", p=n.policy)
    r.call("delete a missing policy", "DELETE", "/api/policies/%2F/{p}", p=n.policy)
    r.call("delete topic permissions", "DELETE", "/api/topic-permissions/{v}/{u}", v=n.vhost, u=n.mgmt_user)
    r.call("delete permissions", "DELETE", "/api/permissions/{v}/{u}", v=n.vhost, u=n.mgmt_user)
    r.call("delete missing permissions", "DELETE", "/api/permissions/{v}/{u}", v=n.vhost, u=n.mgmt_user)
    r.call("delete exchange if-unused while bound", "DELETE", "/api/exchanges/%2F/{e}?if-unused=true",
           e=n.fanout)
    r.call("delete exchange", "DELETE", "/api/exchanges/%2F/{e}", e=n.exchange)
    r.call("delete a missing exchange", "DELETE", "/api/exchanges/%2F/{e}", e=n.exchange)
    r.call("delete queue", "DELETE", "/api/queues/%2F/{q}", q=n.doomed)
    r.call("delete a missing queue", "DELETE", "/api/queues/%2F/{q}", q=n.doomed)
    r.call("deleted queue", "GET", "/api/queues/%2F/{q}", q=n.doomed)
    r.call("delete user", "DELETE", "/api/users/{u}", u=n.monitor_user)
    r.call("delete a missing user", "DELETE", "/api/users/{u}", u=n.monitor_user)
    r.call("delete vhost", "DELETE", "/api/vhosts/{v}", v=n.vhost)
    r.call("delete a missing vhost", "DELETE", "/api/vhosts/{v}", v=n.vhost)
    r.call("vhost queue after vhost deletion", "GET", "/api/queues/{v}/{q}", v=n.vhost, q=n.vhost_queue)


def cleanup(api, n):
    """Deletes (unrecorded, ignoring errors) whatever the scenario may have left."""
    for q in (n.queue, n.consumed, n.doomed, n.imported, n.queue + "-denied", "aliveness-test"):
        api.request("DELETE", f"/api/queues/%2F/{quote(q)}")
    for e in (n.exchange, n.fanout, n.imported_exchange, n.fanout + "-untyped"):
        api.request("DELETE", f"/api/exchanges/%2F/{quote(e)}")
    api.request("DELETE", f"/api/policies/%2F/{quote(n.policy)}")
    api.request("DELETE", "/api/vhost-limits/%2F/max-connections")
    for u in (n.plain_user, n.mgmt_user, n.monitor_user):
        api.request("DELETE", f"/api/users/{quote(u)}")
    api.request("DELETE", f"/api/vhosts/{quote(n.vhost)}")


def run(base_url, amqp_port):
    api = Api(base_url)
    n = Names()
    r = Recorder(api, n)
    conn = None
    try:
        auth_errors(r, n)
        create_objects(r, n)
        publish(r, n)
        conn = open_consumer(api, n, amqp_port)
        connection, channel = settle(api, n, conn)
        node = api.request("GET", "/api/overview")[1]["node"]
        n.node = node
        reads(r, n, node, connection, channel, amqp_port)
        restricted_users(r, n)
        actions(r, n, connection, conn)
        deletions(r, n)
        r.call("delete consumed queue", "DELETE", "/api/queues/%2F/{q}", q=n.consumed)
        r.call("delete imported queue", "DELETE", "/api/queues/%2F/{q}", q=n.imported)
    finally:
        if conn is not None:
            conn.close()
        cleanup(api, n)
    return r.records


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    base_url, amqp_port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    records = run(base_url, amqp_port)
    with open(out, "w") as f:
        json.dump(records, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(records)} requests recorded in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
