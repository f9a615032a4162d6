#!/usr/bin/env bash
# Regenerates the pinned RabbitMQ management API behaviour from a fresh node:
#
#   tests/management-vs-rabbitmq.sh [AMQP_PORT [MGMT_PORT [PROMETHEUS_PORT]]]
#
# starts a fresh RabbitMQ 3.10 node (tests/rabbitmq-node.sh, defaults 36600,
# 36672, 36692) with the management and Prometheus plugins, and writes:
#
# * tests/data/management-shapes.json: RabbitMQ's version, the status and JSON
#   shape of every request of tests/mgmt/scenario.py, and the Prometheus metric
#   families of tests/mgmt/prometheus.py (TYPE and label names);
# * tests/data/rabbitmq-definitions.json: a definitions export made by
#   tests/mgmt/make_definitions.py.
#
# tests/management_api.rs compares Warren's answers with the first file;
# tests/management_clients.rs imports the second into Warren.
# The node is stopped (by PID, see rabbitmq-node.sh) and its directory removed.
set -euo pipefail

amqp_port=${1:-36600}
mgmt_port=${2:-36672}
prometheus_port=${3:-36692}
here=$(cd "$(dirname "$0")" && pwd)
data="$here/data"
dir=$(mktemp -d /tmp/warren-mgmt-rabbitmq.XXXXXX)
work="$dir/out"
mkdir -p "$work"

cleanup() {
    bash "$here/rabbitmq-node.sh" stop "$amqp_port" "$dir/node" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

RABBIT_MGMT_PORT=$mgmt_port RABBIT_PROMETHEUS_PORT=$prometheus_port \
    bash "$here/rabbitmq-node.sh" start "$amqp_port" "$dir/node"

mgmt="http://127.0.0.1:$mgmt_port"
# The management listener starts a moment after AMQP: wait until it answers.
mgmt_ready() {
    python3 - "$mgmt/api/overview" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 401 else 1)
except OSError:
    sys.exit(1)
PY
}
for _ in $(seq 1 120); do
    mgmt_ready && break
    sleep 0.5
done

python3 -B "$here/mgmt/scenario.py" "$mgmt" "$amqp_port" "$work/requests.json"
python3 -B "$here/mgmt/prometheus.py" "$mgmt" "http://127.0.0.1:$prometheus_port" "$work/prometheus.json"
python3 -B "$here/mgmt/make_definitions.py" "$mgmt" "$work/definitions.json"

python3 - "$mgmt" "$work" "$data/management-shapes.json" <<'EOF'
import base64, json, sys, urllib.request
mgmt, work, out = sys.argv[1:]
request = urllib.request.Request(mgmt + "/api/overview")
request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
with urllib.request.urlopen(request, timeout=30) as response:
    overview = json.load(response)
pinned = {
    "about": "RabbitMQ's management API as tests/mgmt/scenario.py saw it on a fresh node "
             "(regenerate: tests/management-vs-rabbitmq.sh); checked by tests/management_api.rs",
    "rabbitmq_version": overview["rabbitmq_version"],
    "requests": json.load(open(f"{work}/requests.json")),
    "prometheus": json.load(open(f"{work}/prometheus.json")),
}
with open(out, "w") as f:
    json.dump(pinned, f, indent=1, sort_keys=True)
    f.write("\n")
EOF
cp "$work/definitions.json" "$data/rabbitmq-definitions.json"
echo "wrote $data/management-shapes.json and $data/rabbitmq-definitions.json"
