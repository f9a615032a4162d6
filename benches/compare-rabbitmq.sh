#!/usr/bin/env bash
# Warren and RabbitMQ side by side on scenarios S1-S8 of issue 4 and the queue
# features of issue 13 (S9 x-max-length with drop-head, S10 dead-lettering),
# driven by warren-perf with the same flags against both, brokers alternating.
#
#   benches/compare-rabbitmq.sh               # 1 run per broker and scenario
#   RUNS=5 benches/compare-rabbitmq.sh        # medians of 5
#   DURATION=6 SHARDS=2 WARREN_PORT=35672 RABBIT_PORT=35673 BUDGET_S=540 ...
#   WARREN_BIN=/path/to/other/warren WARREN_FLAGS= EPOLL_SCENARIOS= ...   # another build
#   ONLY="S2 S2f" benches/compare-rabbitmq.sh                               # some scenarios
#
# S1, S2 and S7 also run against a second Warren on the epoll backend (--io epoll,
# EPOLL_PORT), shown beside io_uring's; it is not started when ONLY leaves none of them.
#
# RabbitMQ is installed from apt if missing and run as a private node by
# tests/rabbitmq-node.sh (own port, data dir, epmd); Warren is the release
# build on its own port and data dir. Both are stopped by PID on exit, never
# by name. The run is bounded: DURATION shrinks (to 2 s at least) when
# the selected runs (RUNS x 2 per scenario, plus the epoll ones) would not fit in
# BUDGET_S seconds. The table goes to stdout
# and to target/compare-rabbitmq.md; logs and raw JSON lines stay in
# target/compare-rabbitmq/.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)

RUNS=${RUNS:-1}
DURATION=${DURATION:-6}
SHARDS=${SHARDS:-$(nproc)}
WARREN_PORT=${WARREN_PORT:-35672}
RABBIT_PORT=${RABBIT_PORT:-35673}
EPOLL_PORT=${EPOLL_PORT:-35674}
# S1T: the AMQPS ports, with a throwaway CA made here by openssl.
WARREN_TLS_PORT=${WARREN_TLS_PORT:-35675}
RABBIT_TLS_PORT=${RABBIT_TLS_PORT:-35676}
EPOLL_SCENARIOS=${EPOLL_SCENARIOS-"S1 S2 S7"}
BUDGET_S=${BUDGET_S:-540}
# Setup, drain and teardown around each run's window, seconds (measured).
OVERHEAD_S=4

out_dir="$root/target/compare-rabbitmq"
work=$(mktemp -d /tmp/warren-compare.XXXXXX)
rabbit_dir="$work/rabbit"
warren_dir="$work/warren-data"
results="$out_dir/results.jsonl"
warren_pid=""
epoll_pid=""
rabbit_started=0

log() { echo "compare: $*" >&2; }

stop_warren() {
    if [ -n "$warren_pid" ] && kill -0 "$warren_pid" 2>/dev/null; then
        kill -TERM "$warren_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$warren_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$warren_pid" 2>/dev/null || true
        wait "$warren_pid" 2>/dev/null || true
    fi
    warren_pid=""
}

stop_epoll() {
    if [ -n "$epoll_pid" ] && kill -0 "$epoll_pid" 2>/dev/null; then
        kill -TERM "$epoll_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$epoll_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$epoll_pid" 2>/dev/null || true
        wait "$epoll_pid" 2>/dev/null || true
    fi
    epoll_pid=""
}

cleanup() {
    local status=$?
    stop_warren
    stop_epoll
    if [ "$rabbit_started" -eq 1 ]; then
        tests/rabbitmq-node.sh stop "$RABBIT_PORT" "$rabbit_dir" >&2 || true
    fi
    if [ -d "$work" ]; then
        cp -f "$work"/*.log "$out_dir"/ 2>/dev/null || true
        cp -f "$rabbit_dir"/log/*.log "$out_dir"/ 2>/dev/null || true
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "$WARREN_PORT" "$RABBIT_PORT" "$EPOLL_PORT" "$WARREN_TLS_PORT" "$RABBIT_TLS_PORT"; do
    if ! port_free "$port"; then
        log "port $port on 127.0.0.1 is in use; set WARREN_PORT / RABBIT_PORT"
        exit 1
    fi
done

mkdir -p "$out_dir"
: >"$results"

log "building (release)"
cargo build --release --bin warren-perf --bin warren >&2
perf_bin="$root/target/release/warren-perf"
flat_bin=$(cargo bench --bench flat_out --no-run 2>&1 | grep -o 'target/release/deps/flat_out-[0-9a-f]*' | head -n 1)
flat_bin="$root/$flat_bin"
warren_bin="${WARREN_BIN:-$root/target/release/warren}"

# launch_warren LOGNAME PORT DATADIR EXTRA-FLAGS...: starts one Warren, waits for its
# startup line, and leaves its PID in $launched_pid.
launch_warren() {
    local logname=$1 port=$2 dir=$3
    shift 3
    rm -rf "$dir"
    "$warren_bin" --listen "127.0.0.1:$port" --data-dir "$dir" \
        --shards "$SHARDS" "$@" >>"$work/$logname" 2>&1 &
    launched_pid=$!
    for _ in $(seq 1 100); do
        if grep -q "Server startup complete" "$work/$logname" 2>/dev/null; then
            return 0
        fi
        kill -0 "$launched_pid" 2>/dev/null || break
        sleep 0.1
    done
    log "Warren ($logname) did not start; log:"
    tail -n 20 "$work/$logname" >&2
    exit 1
}

start_warren() {
    # shellcheck disable=SC2086 # WARREN_FLAGS may hold several flags, or none for old builds
    launch_warren warren.log "$WARREN_PORT" "$warren_dir" ${WARREN_FLAGS---io uring} "${tls_flags[@]}"
    warren_pid=$launched_pid
}

start_epoll() {
    launch_warren warren-epoll.log "$EPOLL_PORT" "$work/warren-epoll-data" --io epoll
    epoll_pid=$launched_pid
}

# selected LABEL: true when ONLY is unset or names LABEL.
selected() {
    [ -z "${ONLY:-}" ] && return 0
    case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

# S1T runs over TLS: a CA and a server certificate for 127.0.0.1, both brokers serving it.
tls_flags=()
tls_dir="$work/tls"
if selected S1T; then
    mkdir -p "$tls_dir"
    (
        cd "$tls_dir"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.pem -subj "/CN=compare CA"
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out server.pem
    ) >"$work/openssl.log" 2>&1
    tls_flags=(--tls-cert "$tls_dir/server.pem" --tls-key "$tls_dir/server.key" --tls-port "$WARREN_TLS_PORT")
    export RABBIT_TLS_PORT RABBIT_TLS_CERT="$tls_dir/server.pem" \
        RABBIT_TLS_KEY="$tls_dir/server.key" RABBIT_TLS_CA="$tls_dir/ca.pem"
fi

log "starting RabbitMQ on 127.0.0.1:$RABBIT_PORT"
rabbit_started=1
tests/rabbitmq-node.sh start "$RABBIT_PORT" "$rabbit_dir" >&2
for _ in $(seq 1 50); do
    [ -s "$rabbit_dir/rabbit.pid" ] && break
    sleep 0.2
done
rabbit_pid=$(cat "$rabbit_dir/rabbit.pid")
rabbit_version=$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo unknown)


epoll_selected=""
for label in $EPOLL_SCENARIOS; do
    if selected "$label"; then epoll_selected="$epoll_selected $label"; fi
done

log "starting Warren on 127.0.0.1:$WARREN_PORT with $SHARDS shard(s)"
start_warren
if [ -n "$epoll_selected" ]; then
    log "starting Warren (epoll) on 127.0.0.1:$EPOLL_PORT with $SHARDS shard(s)"
    start_epoll
fi

# name | flags | headline metric (a JSON field) | deliveries per publish (default 1)
# Flags "flat:SX" run benches/flat_out.rs (amqprs publishers that publish flat out, lapin
# consumers) instead of warren-perf: a second opinion on the same scenario.
scenarios=(
    "S1 1p-1q-1c 16 B autoack|--producers 1 --consumers 1 --queues 1 --size 16 --autoack|consume_rate"
    "S1T as S1, over TLS (AMQPS on both brokers)|tls:--producers 1 --consumers 1 --queues 1 --size 16 --autoack|consume_rate"
    "S2 as S1, ack every 50, prefetch 100|--producers 1 --consumers 1 --queues 1 --size 16 --multi-ack-every 50 --prefetch 100|consume_rate"
    "S3 as S2, 4 KiB|--producers 1 --consumers 1 --queues 1 --size 4096 --multi-ack-every 50 --prefetch 100|consume_rate"
    "S4 durable, persistent, confirm 256, ack 50|--producers 1 --consumers 1 --queues 1 --size 16 --persistent --confirm 256 --multi-ack-every 50 --prefetch 100|confirm_rate"
    "S4b as S4 with 4 producers, 4 queues, 4 consumers|--producers 4 --consumers 4 --queues 4 --size 16 --persistent --confirm 256 --multi-ack-every 50 --prefetch 100|confirm_rate"
    "S5 fanout to 8 queues, 8 consumers|--producers 1 --consumers 8 --queues 8 --size 16 --exchange perf.fanout --exchange-type fanout --autoack|consume_rate|8"
    "S6 topic, 100 bindings, 1% match|--producers 1 --consumers 1 --queues 1 --size 16 --exchange perf.topic --exchange-type topic --bindings 100 --match-ratio 0.01 --autoack|publish_rate|0.01"
    "S7 fixed 5000 msg/s, ack each|--producers 1 --consumers 1 --queues 1 --size 16 --rate 5000 --multi-ack-every 1 --prefetch 100|consume_rate"
    "S8 4p-4q-4c|--producers 4 --consumers 4 --queues 4 --size 16 --autoack|consume_rate"
    "S2f as S2, flat-out amqprs publisher, lapin consumer|flat:S2|consume_rate"
    "S5f as S5, flat-out amqprs publisher, 8 lapin consumers|flat:S5|consume_rate|8"
    "S8f as S8, 4 flat-out amqprs publishers, 4 lapin consumers|flat:S8|consume_rate"
    "S9 as S1, x-max-length 1000, drop-head|--producers 1 --consumers 1 --queues 1 --size 16 --autoack --queue-arg x-max-length=1000 --queue-arg x-overflow=drop-head|consume_rate"
    "S10 dead-lettering: 1p, consumer nacks requeue=false every 50 (prefetch 100), direct DLX, 1 autoack consumer on the DL queue|--producers 1 --consumers 1 --queues 1 --size 16 --dead-letter --multi-ack-every 50 --prefetch 100|dead_letter_rate"
)

chosen=0
for entry in "${scenarios[@]}"; do
    if selected "${entry%% *}"; then chosen=$((chosen + 1)); fi
done
runs_total=$((RUNS * (2 * chosen + $(echo $epoll_selected | wc -w))))
if [ $((runs_total * (DURATION + OVERHEAD_S))) -gt "$BUDGET_S" ]; then
    fitted=$((BUDGET_S / runs_total - OVERHEAD_S))
    [ "$fitted" -lt 2 ] && fitted=2
    log "DURATION $DURATION s x $runs_total runs does not fit in $BUDGET_S s: using $fitted s"
    DURATION=$fitted
fi

run_one() { # broker label flags...
    local broker=$1 label=$2
    shift 2
    local port pid line status=0
    if [ "$broker" = warren ]; then
        if [ -z "$warren_pid" ] || ! kill -0 "$warren_pid" 2>/dev/null; then
            log "Warren is not running (crashed earlier?): restarting it"
            echo "{\"label\":\"$label\",\"broker\":\"warren\",\"note\":\"Warren was down before this run and was restarted\"}" >>"$results"
            start_warren
        fi
        port=$WARREN_PORT pid=$warren_pid
    elif [ "$broker" = warren-epoll ]; then
        if [ -z "$epoll_pid" ] || ! kill -0 "$epoll_pid" 2>/dev/null; then
            log "Warren (epoll) is not running: restarting it"
            start_epoll
        fi
        port=$EPOLL_PORT pid=$epoll_pid
    else
        port=$RABBIT_PORT pid=$rabbit_pid
    fi
    if [ "${1%%:*}" = tls ]; then
        # The same run over AMQPS: the broker's TLS port, its certificate checked.
        set -- "${1#tls:}" "${@:2}" --tls-ca "$tls_dir/ca.pem"
        case $broker in
            warren) port=$WARREN_TLS_PORT ;;
            rabbitmq) port=$RABBIT_TLS_PORT ;;
        esac
    fi
    if [ "${1%%:*}" = flat ]; then
        line=$(timeout $((DURATION + 90)) "$flat_bin" --port "$port" --duration "$DURATION" \
            --broker-pid "$pid" --scenario "${1#flat:}" 2>>"$work/perf-stderr.log" |
            sed "s/\"label\":\"[^\"]*\"/\"label\":\"$label\"/") || status=$?
    else
        # shellcheck disable=SC2068 # flags are meant to split
        line=$(timeout $((DURATION + 90)) "$perf_bin" --port "$port" --duration "$DURATION" \
            --broker-pid "$pid" --json --quiet --label "$label" $@ 2>>"$work/perf-stderr.log") || status=$?
    fi
    if [ -z "$line" ]; then
        line="{\"label\":\"$label\",\"errors\":[\"warren-perf exited with status $status and no result\"]}"
    fi
    echo "$line" | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
r["broker"] = sys.argv[1]
print(json.dumps(r))' "$broker" >>"$results"
    if [ "$broker" = warren ] && ! kill -0 "$warren_pid" 2>/dev/null; then
        log "Warren died during $label"
        echo "{\"label\":\"$label\",\"broker\":\"warren\",\"note\":\"Warren process exited during this run\"}" >>"$results"
    fi
    log "$label $broker: $(echo "$line" | python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
print("pub %.0f conf %.0f cons %.0f dl %.0f msg/s, errors %s" % (r.get("publish_rate", 0), r.get("confirm_rate", 0), r.get("consume_rate", 0), r.get("dead_letter_rate", 0), r.get("errors")))' 2>/dev/null || echo "$line")"
    sleep 0.5
}

started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
i=0
for entry in "${scenarios[@]}"; do
    IFS='|' read -r name flags _metric _fanout <<<"$entry"
    label=${name%% *}
    if ! selected "$label"; then
        i=$((i + 1))
        continue
    fi
    for run in $(seq 1 "$RUNS"); do
        # Alternate which broker goes first, per scenario and per run.
        if [ $(((i + run) % 2)) -eq 0 ]; then order="warren rabbitmq"; else order="rabbitmq warren"; fi
        case " $epoll_selected " in *" $label "*) order="$order warren-epoll" ;; esac
        for broker in $order; do
            # shellcheck disable=SC2086
            run_one "$broker" "$label" $flags
        done
    done
    i=$((i + 1))
done

command="benches/compare-rabbitmq.sh"
[ "$RUNS" != 1 ] && command="RUNS=$RUNS $command"
[ -n "${ONLY:-}" ] && command="ONLY=\"$ONLY\" $command"
meta="$started_at; $(nproc) cores, $(uname -r); Warren $(git rev-parse --short HEAD 2>/dev/null || echo '?') with $SHARDS shard(s); RabbitMQ $rabbit_version; $RUNS run(s) of $DURATION s per broker and scenario, median shown"

python3 - "$results" "$command" "$meta" "${scenarios[@]}" <<'EOF' | tee "$root/target/compare-rabbitmq.md"
import json, statistics, sys

path, command, meta, *scenarios = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def fmt_rate(v):
    if v is None:
        return "n/a"
    return f"{v/1000:.1f}k" if v >= 1000 else f"{v:.0f}"

def fmt_us(v):
    if v is None:
        return "n/a"
    if v >= 10000:
        return f"{v/1000:.0f} ms"
    if v >= 1000:
        return f"{v/1000:.1f} ms"
    return f"{v:.0f} µs"

def fmt_lat(c):
    return f"{fmt_us(c['p50'])} / {fmt_us(c['p99'])} / {fmt_us(c['p999'])}"

def fmt_cpu(v):
    return "n/a" if v is None else f"{v:.2f}"

print(f"Warren vs RabbitMQ, `{command}`, {meta}.")
print()
print("| scenario | metric | Warren | RabbitMQ | Warren/RabbitMQ | latency p50 / p99 / p99.9 Warren | latency p50 / p99 / p99.9 RabbitMQ | broker CPU µs/msg Warren | broker CPU µs/msg RabbitMQ | consumed / accepted (W / R) |")
print("|---|---|---|---|---|---|---|---|---|---|")
epoll_rows = []
notes = []
def fmt_share(v, lossy=False):
    if v is None:
        return "n/a"
    flag = " ⚠" if v < 0.9 and not lossy else ""
    return f"{v*100:.0f}%{flag}"

flagged = []
for entry in scenarios:
    name, flags, metric, *rest = entry.split("|")
    # A drop-head queue discards by design: delivering less than it accepted is no fault.
    lossy = "x-overflow=drop-head" in flags
    # What reaches the consumers counted by the metric: the dead-letter queues' for S10.
    received = "dead_lettered" if metric == "dead_letter_rate" else "consumed"
    fanout = float(rest[0]) if rest and rest[0] else 1.0
    if not [r for r in rows if r.get("label") == name.split()[0]]:
        continue  # not run (ONLY)
    label = name.split()[0]
    cells = {}
    for broker in ("warren", "rabbitmq", "warren-epoll"):
        rs = [r for r in rows if r.get("label") == label and r.get("broker") == broker]
        good = [r for r in rs if "window_s" in r and not r.get("errors")]
        for r in rs:
            for e in r.get("errors", []) or []:
                notes.append(f"{label} {broker}: {e}")
            if r.get("note"):
                notes.append(f"{label} {broker}: {r['note']}")
        cells[broker] = {
            "rate": med([r.get(metric) for r in good]),
            "consumed": med([r.get("consume_rate") for r in good]),
            "p50": med([r["latency_us"]["p50"] for r in good]),
            "p99": med([r["latency_us"]["p99"] for r in good]),
            "p999": med([r["latency_us"]["p999"] for r in good]),
            "cpu": med([r.get("broker_cpu_us_per_msg") for r in good]),
            "own": med([r.get("client_cpu_us_per_msg") for r in good]),
            # What the broker delivered of what it accepted in the window (fan-out counted).
            "share": med([r[received] / (r["published"] * fanout)
                          for r in good if r.get("published") and received in r]),
            "ok": f"{len(good)}/{len(rs)}",
            "failed": len(good) < len([r for r in rs if "note" not in r]),
        }
    w, r = cells["warren"], cells["rabbitmq"]
    ratio = f"{w['rate']/r['rate']:.1f}x" if w["rate"] and r["rate"] else "n/a"
    def rate_cell(c):
        s = fmt_rate(c["rate"])
        if metric == "confirm_rate" and c["consumed"] is not None:
            s += f" ({fmt_rate(c['consumed'])} consumed/s)"
        return s + (f" ({c['ok']} runs ok)" if c["failed"] else "")
    what = {"consume_rate": "consumed/s", "confirm_rate": "confirmed/s", "publish_rate": "published/s",
            "dead_letter_rate": "dead-lettered/s"}[metric]
    print(f"| {name} | {what} | {rate_cell(w)} | {rate_cell(r)} | {ratio} | "
          f"{fmt_lat(w)} | {fmt_lat(r)} | "
          f"{fmt_cpu(w['cpu'])} | {fmt_cpu(r['cpu'])} | {fmt_share(w['share'], lossy)} / {fmt_share(r['share'], lossy)} |")
    if metric in ("consume_rate", "dead_letter_rate") and not lossy and w["share"] is not None and w["share"] < 0.9:
        flagged.append(f"{label}: Warren delivered {w['share']*100:.0f}% of what it accepted in the window")
    e = cells["warren-epoll"]
    if e["rate"] is not None:
        vs = f"{e['rate']/w['rate']:.2f}" if w["rate"] else "n/a"
        epoll_rows.append(f"| {name} | {what} | {rate_cell(w)} | {rate_cell(e)} | {vs} | "
                          f"{fmt_lat(w)} | {fmt_lat(e)} | "
                          f"{fmt_cpu(w['cpu'])} | {fmt_cpu(e['cpu'])} |")
print()
if epoll_rows:
    print("Warren on its two I/O backends, same run:")
    print()
    print("| scenario | metric | io_uring | epoll | epoll/io_uring | latency p50 / p99 / p99.9 io_uring | latency p50 / p99 / p99.9 epoll | broker CPU µs/msg io_uring | broker CPU µs/msg epoll |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in epoll_rows:
        print(row)
    print()
if flagged:
    print("Flagged (consumed less than 90% of what was accepted): " + "; ".join(flagged) + ".")
    print()
print("Throughput is the median over runs with no error; CPU per message divides the broker's "
      "(or warren-perf's) utime+stime in the window by max(published, delivered). Latency is "
      "publish-to-delivery from a CLOCK_MONOTONIC stamp in the body: meaningful for S4 "
      "(confirm window), S7 (fixed rate) and S2/S3 (prefetch); in unthrottled autoack runs it "
      "measures the backlog a broker lets grow. S4/S4b: Warren confirms each persistent message "
      "only after fdatasync of its record (group commit); RabbitMQ 3.10's classic queues confirm "
      "without an fsync per message. S2f/S5f/S8f: amqprs publishers that publish flat out "
      "without confirms and lapin consumers (benches/flat_out.rs) instead of warren-perf. "
      "Consumed / accepted: deliveries over publishes in the window (fan-out counted); "
      "⚠ marks a broker delivering less than 90% of what it took in. "
      "S9: the queue holds at most 1000 messages and drops the oldest (x-overflow drop-head) "
      "when a publish would exceed that, so consumed / accepted below 100% is expected "
      "there, not a fault; its rate is what the consumer got. S10: producers publish to a "
      "work queue with x-dead-letter-exchange (a direct exchange) and "
      "x-dead-letter-routing-key; its consumer nacks with requeue=false (multiple, every "
      "50, prefetch 100), so every message is dead-lettered to a second queue read by an "
      "autoack consumer; the rate and latency are of arrivals there (publish to "
      "dead-letter delivery), consumed / accepted is dead-lettered arrivals over publishes.")
if notes:
    print()
    print("Problems seen:")
    seen = set()
    for n in notes:
        if n not in seen:
            seen.add(n)
            print(f"- {n}")
EOF
