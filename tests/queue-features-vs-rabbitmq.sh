#!/usr/bin/env bash
# Runs the queue-feature, permission, limit and vhost integration tests against a private
# RabbitMQ node, so that they are shown to encode RabbitMQ's behaviour and not only Warren's:
#
#   bash tests/queue-features-vs-rabbitmq.sh          # node on 127.0.0.1:35699
#   PORT=35700 bash tests/queue-features-vs-rabbitmq.sh
#   TESTS="permissions" bash tests/queue-features-vs-rabbitmq.sh   # some suites only
#
# The node is started by tests/rabbitmq-node.sh (installed from Debian if missing: 3.10) on
# its own port and a fresh data directory, and stopped through it (by PID) on exit. Tests that
# need to restart the broker skip themselves against an external one; the few scenarios that
# RabbitMQ 3.10 does not support (x-last-death-* headers, x-delivery-limit on classic queues,
# an immediate single-active-consumer hand-over on cancel) are checked on Warren only, as each
# test says.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-35699}
dir=$(mktemp -d /tmp/warren-rabbit-features.XXXXXX)
stop() {
    bash tests/rabbitmq-node.sh stop "$PORT" "$dir" >&2 || true
    rm -rf "$dir"
}
trap stop EXIT
bash tests/rabbitmq-node.sh start "$PORT" "$dir"

# Policies are set on the node with rabbitmqctl where the tests use `warren ctl`.
# TESTS="permissions topic_permissions_and_limits" runs only those suites.
TESTS=${TESTS:-queue_length dead_letter queue_expiry alternate_exchange delivery_limit \
single_active_consumer consumer_priorities policies permissions topic_permissions_and_limits vhosts}
args=()
for t in $TESTS; do args+=(--test "$t"); done
WARREN_TEST_AMQP_PORT=$PORT WARREN_TEST_RABBITMQCTL="bash tests/rabbitmq-node.sh ctl $PORT $dir" \
    timeout 900 cargo test --release "${args[@]}"
