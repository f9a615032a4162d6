#!/usr/bin/env python3
"""pyrabbit2 (from PyPI) against a management API, as an application would use it.

    pyrabbit2_client.py HOST:PORT QUEUE

Checks aliveness, reads the overview and the vhosts, creates QUEUE (durable,
x-max-length 10), publishes one message to it, waits until the queue counts it,
lists queues (all, and by name pattern with pagination), gets the message back,
deletes QUEUE, and prints what it saw as one JSON object on stdout.
Needs the venv of tests/support/scripts.rs (mgmt_python).
"""

import json
import sys
import time

from pyrabbit2.api import Client


def main():
    host, queue = sys.argv[1], sys.argv[2]
    client = Client(host, "guest", "guest", timeout=30)
    seen = {"alive": client.is_alive()}
    overview = client.get_overview()
    seen["overview_keys"] = sorted(k for k in ("management_version", "rabbitmq_version", "node",
                                               "object_totals", "queue_totals") if k in overview)
    seen["vhosts"] = client.get_vhost_names()
    client.create_queue("/", queue, durable=True, auto_delete=False, arguments={"x-max-length": 10})
    seen["published"] = client.publish("/", "amq.default", queue, "hello from pyrabbit2")
    # RabbitMQ counts a new queue's messages only with its next statistics (every 5 s):
    # until then the queue has no "messages" and get_queue_depth raises KeyError.
    deadline = time.monotonic() + 30
    while client.get_queue("/", queue).get("messages") != 1 and time.monotonic() < deadline:
        time.sleep(0.25)
    seen["depth"] = client.get_queue_depth("/", queue)
    details = client.get_queue("/", queue)
    seen["queue"] = {k: details.get(k) for k in ("name", "vhost", "durable", "arguments")}
    seen["listed"] = queue in [q["name"] for q in client.get_queues()]
    seen["listed_in_vhost"] = queue in [q["name"] for q in client.get_queues("/")]
    seen["by_pattern"] = [q["name"] for q in client.get_queues(pattern=f"^{queue}$", regex=True)]
    messages = client.get_messages("/", queue, count=1, requeue=False)
    seen["payloads"] = [m["payload"] for m in messages]
    client.delete_queue("/", queue)
    try:
        client.delete_queue("/", "aliveness-test")  # RabbitMQ's aliveness test leaves it
    except Exception:  # noqa: BLE001 - a broker that left nothing answers 404
        pass
    seen["gone"] = queue not in [q["name"] for q in client.get_queues("/")]
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    main()
