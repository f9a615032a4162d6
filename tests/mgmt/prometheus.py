#!/usr/bin/env python3
"""Records the Prometheus metric families a broker exposes (stdlib only).

    prometheus.py MGMT_URL PROMETHEUS_URL OUT.json

Through the management API at MGMT_URL (guest/guest) it declares a queue,
publishes PUBLISHED messages to it and waits until the queue counts them, so
that per-queue series exist; then it reads PROMETHEUS_URL/metrics and
PROMETHEUS_URL/metrics/per-object and writes, for each endpoint, every
family named in NAMED (and every rabbitmq_alarms_* family) with its TYPE and
the sorted names of its labels, plus, for information, the TYPE of every
rabbitmq_* family. The queue is deleted afterwards.
"""

import json
import os
import re
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import Api, quote  # noqa: E402

NAMED = [
    "rabbitmq_identity_info",
    "rabbitmq_connections",
    "rabbitmq_channels",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_global_messages_received_total",
    "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_process_resident_memory_bytes",
    "rabbitmq_disk_space_available_bytes",
]
ALARMS_PREFIX = "rabbitmq_alarms_"
PUBLISHED = 3

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse(text):
    """Parses the Prometheus text format: {family: {"type": T, "samples": [(name, labels, value)]}}.

    A sample belongs to the family declared by the last # TYPE line whose
    name is a prefix of the sample's name (histograms: _bucket, _sum, _count).
    """
    families = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                current = parts[2]
                families.setdefault(current, {"type": parts[3], "samples": []})
            continue
        match = SAMPLE.match(line)
        if not match:
            raise ValueError(f"not a sample line: {line!r}")
        name, _, label_text, value = match.group(1), match.group(2), match.group(3), match.group(4)
        labels = dict(LABEL.findall(label_text or ""))
        family = current if current and name.startswith(current) else name
        families.setdefault(family, {"type": "untyped", "samples": []})
        families[family]["samples"].append((name, labels, float(value)))
    return families


def summary(families):
    named = {}
    for name, family in families.items():
        if name in NAMED or name.startswith(ALARMS_PREFIX):
            labels = sorted({k for _n, ls, _v in family["samples"] for k in ls})
            named[name] = {"type": family["type"], "labels": labels}
    missing = [n for n in NAMED if n not in named]
    all_types = {n: f["type"] for n, f in sorted(families.items()) if n.startswith("rabbitmq_")}
    return {"named": dict(sorted(named.items())), "missing_named": missing, "rabbitmq_families": all_types}


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mgmt_url, prometheus_url, out = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    api = Api(mgmt_url)
    queue = f"mgmt-prometheus-{os.getpid()}-{int(time.time() * 1000) % 10**9}"
    path = f"/api/queues/%2F/{quote(queue)}"
    api.request("PUT", path, body={"durable": True})
    try:
        for _ in range(PUBLISHED):
            api.request("POST", "/api/exchanges/%2F/amq.default/publish",
                        body={"properties": {}, "routing_key": queue, "payload": "x",
                              "payload_encoding": "string"})
        api.wait_for(path, lambda d: d["messages_ready"] == PUBLISHED, "queue counters")
        deadline = time.monotonic() + 30
        while True:
            per_object = parse(fetch(prometheus_url + "/metrics/per-object"))
            ready = per_object.get("rabbitmq_queue_messages_ready", {"samples": []})["samples"]
            if any(ls.get("queue") == queue and v == PUBLISHED for _n, ls, v in ready):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("rabbitmq_queue_messages_ready never showed the queue")
            time.sleep(0.5)
        result = {
            "/metrics": summary(parse(fetch(prometheus_url + "/metrics"))),
            "/metrics/per-object": summary(per_object),
        }
    finally:
        api.request("DELETE", path)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"metric families recorded in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
