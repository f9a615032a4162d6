#!/usr/bin/env python3
"""Makes a representative definitions export from a broker (stdlib only).

    make_definitions.py MGMT_URL OUT.json

Through the management API at MGMT_URL (guest/guest) it creates a vhost, a
user, permissions and topic permissions, a policy, a vhost limit, queues
(classic, with arguments), exchanges (topic, fanout, headers) and bindings
(exchange to queue, exchange to exchange) under names starting with "defs-",
exports GET /api/definitions to OUT.json, then deletes what it made.

tests/data/rabbitmq-definitions.json is this script's output on RabbitMQ 3.10
(tests/management-vs-rabbitmq.sh); the user defs-user's password is
"defs-password".
"""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Api  # noqa: E402

VHOST = "defs-vhost"
USER = "defs-user"
PASSWORD = "defs-password"
ALL = {"configure": ".*", "write": ".*", "read": ".*"}


def check(answer, what):
    status = answer[0]
    if status not in (200, 201, 204):
        raise RuntimeError(f"{what}: HTTP {status} {answer[2]}")


def create(api):
    steps = [
        ("PUT", "/api/vhosts/defs-vhost", {"description": "imported vhost"}),
        ("PUT", "/api/users/defs-user", {"password": PASSWORD, "tags": "management"}),
        ("PUT", "/api/permissions/defs-vhost/defs-user", ALL),
        ("PUT", "/api/permissions/defs-vhost/guest", ALL),
        ("PUT", "/api/permissions/%2F/defs-user", {"configure": "^defs-", "write": "^defs-", "read": ".*"}),
        ("PUT", "/api/topic-permissions/defs-vhost/defs-user",
         {"exchange": "amq.topic", "write": "^defs\\.", "read": ".*"}),
        ("PUT", "/api/policies/%2F/defs-policy",
         {"pattern": "^defs-capped", "definition": {"max-length": 100, "overflow": "reject-publish"},
          "priority": 2, "apply-to": "queues"}),
        ("PUT", "/api/policies/defs-vhost/defs-vhost-policy",
         {"pattern": ".*", "definition": {"message-ttl": 60000}, "priority": 0, "apply-to": "queues"}),
        ("PUT", "/api/vhost-limits/defs-vhost/max-queues", {"value": 500}),
        ("PUT", "/api/queues/%2F/defs-orders", {"durable": True, "arguments": {"x-queue-type": "classic"}}),
        ("PUT", "/api/queues/%2F/defs-capped", {"durable": True, "arguments": {"x-max-priority": 5}}),
        ("PUT", "/api/queues/%2F/defs-dead", {"durable": True, "arguments": {}}),
        ("PUT", "/api/queues/%2F/defs-work",
         {"durable": True, "arguments": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "defs-dead",
                                         "x-message-ttl": 30000}}),
        ("PUT", "/api/queues/defs-vhost/defs-vhost-queue", {"durable": True, "arguments": {}}),
        ("PUT", "/api/exchanges/%2F/defs-topic", {"type": "topic", "durable": True}),
        ("PUT", "/api/exchanges/%2F/defs-fanout", {"type": "fanout", "durable": True}),
        ("PUT", "/api/exchanges/%2F/defs-headers", {"type": "headers", "durable": True}),
        ("PUT", "/api/exchanges/defs-vhost/defs-vhost-direct", {"type": "direct", "durable": True}),
        ("POST", "/api/bindings/%2F/e/defs-topic/q/defs-orders", {"routing_key": "orders.#", "arguments": {}}),
        ("POST", "/api/bindings/%2F/e/defs-topic/e/defs-fanout", {"routing_key": "audit.*", "arguments": {}}),
        ("POST", "/api/bindings/%2F/e/defs-fanout/q/defs-capped", {"routing_key": "", "arguments": {}}),
        ("POST", "/api/bindings/%2F/e/defs-headers/q/defs-work",
         {"routing_key": "", "arguments": {"x-match": "all", "kind": "work"}}),
        ("POST", "/api/bindings/defs-vhost/e/defs-vhost-direct/q/defs-vhost-queue",
         {"routing_key": "k", "arguments": {}}),
    ]
    for method, path, body in steps:
        check(api.request(method, path, body=body), f"{method} {path}")


def delete(api):
    for path in ["/api/vhosts/defs-vhost", "/api/users/defs-user", "/api/policies/%2F/defs-policy"]:
        api.request("DELETE", path)
    for q in ["defs-orders", "defs-capped", "defs-dead", "defs-work"]:
        api.request("DELETE", f"/api/queues/%2F/{q}")
    for e in ["defs-topic", "defs-fanout", "defs-headers"]:
        api.request("DELETE", f"/api/exchanges/%2F/{e}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    api = Api(sys.argv[1])
    try:
        create(api)
        status, definitions, text, _headers = api.request("GET", "/api/definitions")
        if status != 200:
            raise RuntimeError(f"GET /api/definitions: HTTP {status} {text}")
    finally:
        delete(api)
    with open(sys.argv[2], "w") as f:
        json.dump(definitions, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
