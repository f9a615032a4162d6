#!/usr/bin/env bash
# Runs client libraries' own live-broker integration tests against Warren or RabbitMQ.
#
#   bash tests/client-suite/run.sh --broker warren     # build, start Warren, run the suites
#   bash tests/client-suite/run.sh --broker rabbitmq   # the same against RabbitMQ 3.10
#   bash tests/client-suite/run.sh --compare           # both; lists what passes on RabbitMQ only
#
# Options: --port N (AMQP port of the broker; --compare uses N and N+1), --no-build (use the
# existing target/release/warren), --suite NAME (repeatable: py-amqp, kombu, amqplib).
#
# The suites are not part of this repository: they are fetched from their registries on first
# use and kept, unpacked, under target/client-suite/src/ (nothing is written outside target/):
#   py-amqp  amqp 5.4.2 (PyPI sdist)    t/integration/test_rmq.py, the plain-TCP tests.
#            Its TLS tests are deselected: they need a TLS listener on 5671 and two of them
#            dial an outside host, which this machine must never do.
#   kombu    kombu 5.7.0 (PyPI sdist)   t/integration/test_py_amqp.py, kombu over py-amqp.
#   amqplib  amqplib 1.0.7 (npm)        test/channel_api.test.js, the file of its live tests
#            that takes the broker URL from $URL; its callback_api and connect tests dial
#            localhost:5672 itself, so they are left out.
# Both Python suites find the broker through RABBITMQ_HOST / RABBITMQ_5672_TCP.
#
# Results: target/client-suite/<broker>.txt holds one "PASS|FAIL|SKIP suite::test" line per
# test; <broker>-<suite>.log holds the runner's output and target/client-suite/run/<broker>/
# the broker's data and log. Each suite run is bounded in time. The broker is started by this
# script and stopped by its PID (Warren) or through tests/rabbitmq-node.sh (RabbitMQ), also on
# error or interrupt. Exit status: 0 when nothing failed (--compare: when nothing that passes
# on RabbitMQ fails on Warren).
#
# set -e does not reach into run_broker under --compare's "|| true": each step that must end
# the run there exits explicitly.
set -euo pipefail

AMQP_VERSION=5.4.2
KOMBU_VERSION=5.7.0
VINE_VERSION=5.1.0
AMQPLIB_VERSION=1.0.7
PYTEST_VERSION=9.2.0
PYTEST_TIMEOUT_VERSION=2.4.0
SUITE_TIME_LIMIT=${CLIENT_SUITE_TIME_LIMIT:-900} # seconds for one suite run
TEST_TIME_LIMIT=60                               # seconds for one test

repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$repo/target/client-suite
src=$work/src

usage() {
    sed -n 2,10p "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

mode=""
port=""
build=1
suites=()
while [ $# -gt 0 ]; do
    case "$1" in
    --broker)
        [ $# -ge 2 ] || usage
        case "$2" in warren | rabbitmq) mode=$2 ;; *) usage ;; esac
        shift 2
        ;;
    --compare) mode=compare; shift ;;
    --port)
        [ $# -ge 2 ] || usage
        case "$2" in '' | *[!0-9]*) usage ;; esac
        port=$2
        shift 2
        ;;
    --no-build) build=0; shift ;;
    --suite)
        [ $# -ge 2 ] || usage
        case "$2" in py-amqp | kombu | amqplib) suites+=("$2") ;; *) usage ;; esac
        shift 2
        ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done
[ -n "$mode" ] || usage
[ ${#suites[@]} -gt 0 ] || suites=(py-amqp kombu amqplib)
port=${port:-25741}

log() { echo "client-suite: $*" >&2; }

port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# ---------------------------------------------------------------- fetching the suites

fetch_python() {
    local venv=$work/venv
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        python3 -m venv "$venv"
    fi
    # The libraries under test come as released; their tests from the same releases' sdists.
    if ! "$venv/bin/python" -c "import amqp, kombu, pytest, pytest_timeout" 2>/dev/null ||
        [ "$("$venv/bin/python" -c 'import amqp, kombu; print(amqp.__version__, kombu.__version__)')" != "$AMQP_VERSION $KOMBU_VERSION" ]; then
        log "installing amqp $AMQP_VERSION, kombu $KOMBU_VERSION and pytest into $venv"
        "$venv/bin/pip" install -q "amqp==$AMQP_VERSION" "kombu==$KOMBU_VERSION" \
            "vine==$VINE_VERSION" "pytest==$PYTEST_VERSION" "pytest-timeout==$PYTEST_TIMEOUT_VERSION"
    fi
    local name version dir
    for name in amqp kombu; do
        if [ $name = amqp ]; then version=$AMQP_VERSION; else version=$KOMBU_VERSION; fi
        dir=$src/$name-$version
        [ -d "$dir/t/integration" ] && continue
        log "fetching the $name $version sdist from PyPI"
        mkdir -p "$src/dl"
        "$venv/bin/pip" download -q --no-deps --no-binary "$name" -d "$src/dl" "$name==$version"
        tar -xzf "$src/dl/$name-$version.tar.gz" -C "$src"
        [ -d "$dir/t/integration" ] || {
            log "the $name $version sdist has no t/integration"
            exit 1
        }
    done
}

fetch_node() {
    local dir=$src/amqplib-$AMQPLIB_VERSION
    if [ ! -f "$dir/package/test/channel_api.test.js" ]; then
        command -v npm >/dev/null || {
            log "npm is needed for the amqplib suite"
            exit 1
        }
        log "fetching amqplib $AMQPLIB_VERSION from npm"
        rm -rf "$dir"
        mkdir -p "$dir"
        (cd "$dir" && npm pack --silent "amqplib@$AMQPLIB_VERSION" >/dev/null)
        tar -xzf "$dir/amqplib-$AMQPLIB_VERSION.tgz" -C "$dir"
    fi
    if [ ! -d "$dir/package/node_modules/buffer-more-ints" ]; then
        (cd "$dir/package" && npm install --silent --omit=dev --no-audit --no-fund --ignore-scripts)
    fi
}

# ---------------------------------------------------------------- brokers

broker=""      # the broker running now
broker_dir=""  # its run directory
broker_port=""
warren_pid=""

start_warren() {
    broker_dir=$work/run/warren
    rm -rf "$broker_dir"
    mkdir -p "$broker_dir"
    if [ "$build" -eq 1 ]; then
        log "building Warren (cargo build --release)"
        (cd "$repo" && cargo build --release --quiet --bin warren) || {
            log "cargo build --release failed"
            exit 1
        }
    fi
    [ -x "$repo/target/release/warren" ] || {
        log "target/release/warren is missing"
        exit 1
    }
    # setsid: Warren leads its own process group; it is stopped by its PID only.
    setsid "$repo/target/release/warren" --listen "127.0.0.1:$broker_port" \
        --data-dir "$broker_dir/data" >"$broker_dir/warren.log" 2>&1 </dev/null &
    warren_pid=$!
    broker=warren
    for _ in $(seq 1 300); do
        grep -qs "Server startup complete" "$broker_dir/warren.log" && {
            log "Warren (pid $warren_pid) accepts AMQP on 127.0.0.1:$broker_port"
            return 0
        }
        kill -0 "$warren_pid" 2>/dev/null || break
        sleep 0.1
    done
    log "Warren did not start; its log:"
    tail -n 30 "$broker_dir/warren.log" >&2 || true
    exit 1
}

start_rabbitmq() {
    broker_dir=$work/run/rabbitmq
    rm -rf "$broker_dir"
    mkdir -p "$broker_dir"
    broker=rabbitmq
    bash "$repo/tests/rabbitmq-node.sh" start "$broker_port" "$broker_dir/node" >&2 || {
        log "RabbitMQ did not start"
        exit 1
    }
}

runner_pid="" # the suite runner (timeout) running now

stop_runner() {
    if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then
        kill -TERM "$runner_pid" 2>/dev/null || true
        wait "$runner_pid" 2>/dev/null || true
    fi
    runner_pid=""
}

stop_broker() {
    case "$broker" in
    warren)
        if [ -n "$warren_pid" ] && kill -0 "$warren_pid" 2>/dev/null; then
            kill -TERM "$warren_pid" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "$warren_pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$warren_pid" 2>/dev/null || true
        fi
        wait "$warren_pid" 2>/dev/null || true
        warren_pid=""
        ;;
    rabbitmq)
        bash "$repo/tests/rabbitmq-node.sh" stop "$broker_port" "$broker_dir/node" >&2 || true
        ;;
    esac
    broker=""
}
trap 'stop_runner; stop_broker' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- running the suites

# Turns a JUnit XML report into "PASS|FAIL|SKIP suite::test" lines.
junit_to_lines() {
    python3 - "$1" "$2" <<'EOF'
import sys
import xml.etree.ElementTree as ET
suite, path = sys.argv[1], sys.argv[2]
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError) as e:
    print(f"FAIL {suite}::(no report: {e})")
    sys.exit(0)

results = {}  # test -> status, in report order; a failure anywhere (teardown too) wins

def walk(node, names):
    for child in node:
        if child.tag == "testsuite":
            name = child.get("name", "")
            walk(child, names + [name] if suite == "amqplib" and name else names)
        elif child.tag == "testcase":
            if suite == "amqplib":
                test = " > ".join(names + [child.get("name", "")])
            else:
                test = "::".join(p for p in (child.get("classname", ""), child.get("name", "")) if p)
            kinds = {c.tag for c in child}
            if kinds & {"failure", "error"}:
                status = "FAIL"
            elif "skipped" in kinds:
                status = "SKIP"
            else:
                status = "PASS"
            if results.get(test) != "FAIL":
                results[test] = status

if root.tag == "testsuite":
    wrapper = ET.Element("testsuites")
    wrapper.append(root)
    root = wrapper
walk(root, [])
for test, status in results.items():
    print(f"{status} {suite}::{test}")
EOF
}

run_suite() {
    local suite=$1 name=$2 out=$3
    local logf=$work/$name-$suite.log xml=$work/$name-$suite.xml rc=0
    rm -f "$xml"
    log "running $suite against $name (at most ${SUITE_TIME_LIMIT}s)"
    # The runner goes in the background and is waited for, so that an interrupt is handled
    # at once: the traps end it (through timeout, which signals its whole group) and the broker.
    case "$suite" in
    py-amqp | kombu)
        local dir file
        if [ "$suite" = py-amqp ]; then
            dir=$src/amqp-$AMQP_VERSION file=t/integration/test_rmq.py
        else
            dir=$src/kombu-$KOMBU_VERSION file=t/integration/test_py_amqp.py
        fi
        (cd "$dir" && RABBITMQ_HOST=127.0.0.1 RABBITMQ_5672_TCP=$broker_port \
            exec timeout -k 10 "$SUITE_TIME_LIMIT" "$work/venv/bin/python" -m pytest "$file" \
            -k "not tls" -p no:cacheprovider -p no:rerunfailures -W ignore \
            --timeout "$TEST_TIME_LIMIT" -rfE -q --junitxml "$xml") >"$logf" 2>&1 </dev/null &
        ;;
    amqplib)
        (cd "$src/amqplib-$AMQPLIB_VERSION/package" && URL="amqp://127.0.0.1:$broker_port" \
            exec timeout -k 10 "$SUITE_TIME_LIMIT" node --test \
            --test-timeout=$((TEST_TIME_LIMIT * 1000)) \
            --test-reporter=spec --test-reporter-destination=stdout \
            --test-reporter=junit --test-reporter-destination="$xml" \
            test/channel_api.test.js) >"$logf" 2>&1 </dev/null &
        ;;
    esac
    runner_pid=$!
    wait "$runner_pid" || rc=$?
    runner_pid=""
    [ "$rc" -eq 124 ] && log "$suite hit its time limit against $name; see $logf"
    junit_to_lines "$suite" "$xml" >>"$out"
}

run_broker() {
    local name=$1
    broker_port=$2
    local out=$work/$name.txt
    port_free "$broker_port" || {
        log "port $broker_port on 127.0.0.1 is in use; pick another with --port"
        exit 1
    }
    : >"$out.tmp"
    if [ "$name" = warren ]; then start_warren; else start_rabbitmq; fi
    local suite
    for suite in "${suites[@]}"; do
        run_suite "$suite" "$name" "$out.tmp"
    done
    stop_broker
    sort -k2 "$out.tmp" | uniq >"$out"
    rm -f "$out.tmp"
    local passed failed skipped
    passed=$(grep -c '^PASS ' "$out" || true)
    failed=$(grep -c '^FAIL ' "$out" || true)
    skipped=$(grep -c '^SKIP ' "$out" || true)
    if [ "$failed" -gt 0 ]; then
        grep '^FAIL ' "$out" | sed "s/^FAIL /  $name failed: /" >&2
    fi
    log "per-test results in $out"
    echo "$name: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ]
}

mkdir -p "$work"
for suite in "${suites[@]}"; do
    case "$suite" in
    py-amqp | kombu) fetch_python ;;
    amqplib) fetch_node ;;
    esac
done

case "$mode" in
warren | rabbitmq)
    run_broker "$mode" "$port"
    ;;
compare)
    run_broker rabbitmq "$((port + 1))" || true
    run_broker warren "$port" || true
    diff_file=$work/compare.txt
    # Tests that pass on RabbitMQ and do not pass on Warren.
    comm -23 <(sed -n 's/^PASS //p' "$work/rabbitmq.txt" | sort) \
        <(sed -n 's/^PASS //p' "$work/warren.txt" | sort) >"$diff_file"
    regressions=$(wc -l <"$diff_file")
    if [ "$regressions" -gt 0 ]; then
        echo "pass on RabbitMQ, fail on Warren:"
        sed 's/^/  /' "$diff_file"
    fi
    echo "compare: $regressions test(s) pass on RabbitMQ but not on Warren (list in $diff_file)"
    [ "$regressions" -eq 0 ]
    ;;
esac
