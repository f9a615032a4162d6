#!/usr/bin/env bash
# Start or stop a private RabbitMQ node, used to check that Warren's
# integration tests encode RabbitMQ's real behaviour.
#
#   tests/rabbitmq-node.sh start PORT DIR   # AMQP on 127.0.0.1:PORT, state in DIR
#   WARREN_TEST_AMQP_PORT=PORT cargo test   # run the suite against it
#   tests/rabbitmq-node.sh stop PORT DIR
#   tests/rabbitmq-node.sh ctl PORT DIR set_policy ...   # rabbitmqctl against the node
#
# The node has its own name (warren-test-PORT@localhost), its own Erlang
# distribution port (PORT+20000) and its own epmd (PORT+20001, overridable
# with RABBITMQ_TEST_EPMD_PORT), its own data, log, config and cookie under DIR.
# Everything it starts is recorded by PID in DIR and stopped by that PID:
# nothing is ever killed by name.
#
# If RabbitMQ is missing it is installed from Debian (bookworm ships 3.10),
# with service autostart denied through policy-rc.d.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop PORT DIR, or $0 ctl PORT DIR RABBITMQCTL-ARGS..." >&2
    exit 2
}

[ $# -ge 3 ] || usage
action=$1
port=$2
dir=$3
shift 3
case "$port" in '' | *[!0-9]*) usage ;; esac

rabbit_server=/usr/lib/rabbitmq/bin/rabbitmq-server
dist_port=$((port + 20000))
epmd_port=${RABBITMQ_TEST_EPMD_PORT:-$((port + 20001))}
if [ "$epmd_port" -gt 65535 ] || [ "$dist_port" -gt 65535 ]; then
    echo "PORT $port is too high: PORT+20001 must be a valid port" >&2
    exit 2
fi

install_rabbitmq() {
    echo "rabbitmq-server not found: installing it from Debian" >&2
    local added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # Deny every service start during the install: the Debian package
        # would otherwise start a system-wide node on 5672.
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server
    if [ "$added_policy" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    # If a service node was started anyway (no policy-rc.d honoured), stop it
    # through the PID file it wrote, never by name.
    for pidfile in /var/run/rabbitmq/pid /run/rabbitmq/pid; do
        if [ -s "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
}

# Succeeds once something on 127.0.0.1:$port answers the AMQP protocol
# header with a connection.start method frame.
amqp_ready() {
    python3 - "$port" <<'EOF'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    s.settimeout(2)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    head = s.recv(11)
    s.close()
    # frame type 1 (method), channel 0, then class 10 method 10 (start)
    sys.exit(0 if len(head) >= 11 and head[0] == 1 and head[7:11] == b"\x00\x0a\x00\x0a" else 1)
except OSError:
    sys.exit(1)
EOF
}

pid_alive() {
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start() {
    [ -x "$rabbit_server" ] || install_rabbitmq
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if pid_alive "$dir/rabbit.launcher.pid"; then
        echo "a node is already running from $dir (pid $(cat "$dir/rabbit.launcher.pid"))" >&2
        exit 1
    fi
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"
    : >"$dir/rabbitmq-env.conf"
    : >"$dir/rabbitmq.conf"
    # RABBIT_TLS_PORT, RABBIT_TLS_CERT, RABBIT_TLS_KEY, RABBIT_TLS_CA: an AMQPS listener too.
    if [ -n "${RABBIT_TLS_PORT:-}" ]; then
        cat >"$dir/rabbitmq.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$RABBIT_TLS_PORT
ssl_options.certfile = $RABBIT_TLS_CERT
ssl_options.keyfile = $RABBIT_TLS_KEY
ssl_options.cacertfile = $RABBIT_TLS_CA
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
    fi
    # RABBIT_MGMT_PORT: the management plugin (HTTP API and UI) on 127.0.0.1:PORT;
    # RABBIT_PROMETHEUS_PORT: the Prometheus plugin's /metrics on 127.0.0.1:PORT.
    local plugins=()
    if [ -n "${RABBIT_MGMT_PORT:-}" ]; then
        plugins+=(rabbitmq_management)
        printf 'management.tcp.port = %s\nmanagement.tcp.ip = 127.0.0.1\n' \
            "$RABBIT_MGMT_PORT" >>"$dir/rabbitmq.conf"
    fi
    if [ -n "${RABBIT_PROMETHEUS_PORT:-}" ]; then
        plugins+=(rabbitmq_prometheus)
        printf 'prometheus.tcp.port = %s\nprometheus.tcp.ip = 127.0.0.1\n' \
            "$RABBIT_PROMETHEUS_PORT" >>"$dir/rabbitmq.conf"
    fi
    if [ ${#plugins[@]} -gt 0 ]; then
        echo "[$(IFS=,; echo "${plugins[*]}")]." >"$dir/enabled_plugins"
    else
        echo '[].' >"$dir/enabled_plugins"
    fi
    echo '[].' >"$dir/advanced.config"

    # A private epmd, so this node neither needs nor disturbs a shared one.
    setsid epmd -address 127.0.0.1 -port "$epmd_port" >"$dir/log/epmd.log" 2>&1 &
    echo $! >"$dir/epmd.pid"

    export HOME="$dir/home"
    export ERL_EPMD_PORT="$epmd_port"
    export RABBITMQ_NODENAME="warren-test-$port@localhost"
    export RABBITMQ_USE_LONGNAME=false
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$port"
    export RABBITMQ_DIST_PORT="$dist_port"
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_PID_FILE="$dir/rabbit.pid"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand"

    # setsid: the launcher leads its own process group, so stop can end the
    # launcher, the Erlang VM and its helpers by that group id.
    setsid "$rabbit_server" >"$dir/log/console.log" 2>&1 </dev/null &
    echo $! >"$dir/rabbit.launcher.pid"

    for _ in $(seq 1 120); do
        if amqp_ready; then
            echo "RabbitMQ node warren-test-$port accepts AMQP on 127.0.0.1:$port"
            return 0
        fi
        if ! pid_alive "$dir/rabbit.launcher.pid"; then
            echo "RabbitMQ exited during startup; log: $dir/log/console.log" >&2
            tail -n 30 "$dir/log/console.log" >&2 || true
            stop_pids
            exit 1
        fi
        sleep 0.5
    done
    echo "RabbitMQ did not accept AMQP on 127.0.0.1:$port within 60 s; log: $dir/log/console.log" >&2
    stop_pids
    exit 1
}

# Sends TERM to the process group led by the PID in $1, waits up to $2
# seconds, then KILLs the group.
stop_group() {
    local pidfile=$1 grace=$2 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 $((grace * 10))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop_pids() {
    # The Erlang VM's own PID, read before the launcher goes (the VM removes
    # its PID file on a clean stop), in case the VM outlives the launcher.
    local vm_pid=""
    if [ -s "$dir/rabbit.pid" ]; then
        vm_pid=$(cat "$dir/rabbit.pid")
    fi
    stop_group "$dir/rabbit.launcher.pid" 20
    if [ -n "$vm_pid" ] && kill -0 "$vm_pid" 2>/dev/null; then
        kill -KILL "$vm_pid" 2>/dev/null || true
    fi
    rm -f "$dir/rabbit.pid"
    stop_group "$dir/epmd.pid" 2
}

stop() {
    [ -d "$dir" ] || {
        echo "no such directory: $dir" >&2
        exit 1
    }
    dir=$(cd "$dir" && pwd)
    stop_pids
    echo "RabbitMQ node warren-test-$port stopped"
}

# rabbitmqctl against this node: its name, epmd and cookie (in its HOME).
ctl() {
    dir=$(cd "$dir" && pwd)
    HOME="$dir/home" ERL_EPMD_PORT="$epmd_port" RABBITMQ_USE_LONGNAME=false \
        /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "warren-test-$port@localhost" "$@"
}

case "$action" in
start) [ $# -eq 0 ] || usage; start ;;
stop) [ $# -eq 0 ] || usage; stop ;;
ctl) ctl "$@" ;;
*) usage ;;
esac
