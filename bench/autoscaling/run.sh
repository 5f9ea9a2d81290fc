#!/usr/bin/env bash
# Autoscaling benchmark: cold starts from zero, the activator's cost in the
# request path, and the queue-proxy layer's cost, each against a baseline
# measured in the same run on this machine (127.0.0.1 only, wrk and curl).
#
#   bench/autoscaling/run.sh            # full run (~4 minutes plus builds)
#   QUICK=1 bench/autoscaling/run.sh    # smoke run (1s wrk runs, 8 cold starts)
#
# Environment:
#   SKIFF_BIN   skiff binary to measure (default: cargo build --release -p skiff)
#   BASE_BIN    a skiff binary without the autoscaling layers (optional): the
#               queue-proxy cost is measured against it
#   COLD        cold starts to measure (default 40; QUICK: 8)
#   DURATION    wrk run length (default 5s; QUICK: 1s)
#   RUNS        throughput runs per target, median reported (default 3; QUICK: 1)
#   OUT_DIR     where results go (default bench/out/autoscaling-<timestamp>)
#
# Targets (all serve the same hello app, one instance, containerConcurrency 0):
#   direct      the app on its own port (the baseline)
#   base        BASE_BIN's gateway (no queue-proxy, no activator), if given
#   serve       skiff, activator out of the path (target-burst-capacity 0):
#               gateway + queue-proxy layer
#   proxy       skiff, activator always in the path (target-burst-capacity -1)
# Cold start: COLD services of the autoscale app wait at zero; each gets one
# request (GET /stats); the cost is the client's time to the response minus
# the app's own start-to-ready time (`startup_ms` in its answer).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$(dirname "$HERE")")
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-1s}; RUNS=${RUNS:-1}; COLD=${COLD:-8}
else
    DURATION=${DURATION:-5s}; RUNS=${RUNS:-3}; COLD=${COLD:-40}
fi
OUT=${OUT_DIR:-$ROOT/bench/out/autoscaling-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/logs"
unset TARGET HELLO_THREADS HOST PORT SKIFF_SERVER SKIFF_DATA_DIR

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in wrk curl; do
    command -v $tool >/dev/null || {
        log "installing $tool"
        sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
        $sudo apt-get install -y -qq $tool >/dev/null
    }
done
if [[ -z ${SKIFF_BIN:-} ]]; then
    log "building skiff (release)"
    (cd "$ROOT" && cargo build --release -p skiff >"$OUT/logs/build.log" 2>&1) || die "build failed (logs/build.log)"
    SKIFF_BIN=$ROOT/target/release/skiff
fi

PIDS=()
TMP=$(mktemp -d)
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# serve BIN NAME: start `BIN serve`, sets GW and DATA.
serve() {
    local bin=$1 name=$2
    DATA=$TMP/$name; GW=$(free_port)
    "$bin" serve --data-dir "$DATA" --listen "127.0.0.1:$GW" --admin "127.0.0.1:$(free_port)" \
        </dev/null >"$OUT/logs/$name-serve.log" 2>&1 &
    PIDS+=($!)
    SERVE_PID=$!
    for _ in $(seq 300); do [[ -f $DATA/server.json ]] && return 0; sleep 0.1; done
    die "$name: skiff serve did not start"
}

stop_serve() {
    kill -TERM "$SERVE_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$SERVE_PID" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$SERVE_PID" 2>/dev/null || true
}

# ksvc NAME ANNOTATIONS(yaml lines) IMAGE
ksvc() {
    cat <<YAML
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: $1
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/window: "6s"
$2
    spec:
      containers:
        - image: $3
YAML
}

wait_ready() { # BIN DATA NAME
    for _ in $(seq 600); do
        "$1" --data-dir "$2" get ksvc "$3" 2>/dev/null | awk 'NR==2 {print $5}' | grep -q True && return 0
        sleep 0.2
    done
    die "ksvc $3 not ready"
}

# measure NAME URL HOST: RPS (median of RUNS at c=16) and P50 (us, c=1).
declare -A RPS P50 P99
measure() {
    local name=$1 url=$2 host=$3 rates=()
    wrk -t1 -c16 -d1s -H "Host: $host" "$url" >/dev/null
    for i in $(seq "$RUNS"); do
        wrk -t2 -c16 -d"$DURATION" -H "Host: $host" "$url" >"$OUT/$name-rps-$i.txt"
        grep -q "Non-2xx\|Socket errors" "$OUT/$name-rps-$i.txt" && log "$name: wrk saw errors (see $name-rps-$i.txt)"
        rates+=("$(awk '/^Requests\/sec/ {print int($2)}' "$OUT/$name-rps-$i.txt")")
    done
    RPS[$name]=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    wrk -t1 -c1 -d"$DURATION" --latency -H "Host: $host" "$url" >"$OUT/$name-c1.txt"
    P50[$name]=$(awk '$1=="50%" {print $2}' "$OUT/$name-c1.txt" | python3 -c 'import sys
v=sys.stdin.read().strip()
u={"us":1,"ms":1000,"s":1e6}
import re
m=re.match(r"([0-9.]+)(us|ms|s)",v); print(int(float(m.group(1))*u[m.group(2)]) if m else 0)')
    P99[$name]=$(awk '$1=="99%" {print $2}' "$OUT/$name-c1.txt" | python3 -c 'import sys,re
v=sys.stdin.read().strip(); u={"us":1,"ms":1000,"s":1e6}
m=re.match(r"([0-9.]+)(us|ms|s)",v); print(int(float(m.group(1))*u[m.group(2)]) if m else 0)')
    log "$name: ${RPS[$name]} req/s at c=16, p50 ${P50[$name]} us at c=1"
}

HOSTOF() { echo "$1.default.127.0.0.1.sslip.io"; }

# --- direct -----------------------------------------------------------------
DPORT=$(free_port)
PORT=$DPORT HOST=127.0.0.1 "$SKIFF_BIN" example hello </dev/null >"$OUT/logs/direct.log" 2>&1 &
PIDS+=($!)
DIRECT_PID=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$DPORT/" >/dev/null && break; sleep 0.05; done
measure direct "http://127.0.0.1:$DPORT/" "$(HOSTOF hello)"
kill -TERM "$DIRECT_PID"

# --- base (optional) ----------------------------------------------------------
if [[ -n ${BASE_BIN:-} ]]; then
    serve "$BASE_BIN" base
    ksvc hello "" gcr.io/knative-samples/helloworld-go | "$BASE_BIN" --data-dir "$DATA" apply -f - >/dev/null
    wait_ready "$BASE_BIN" "$DATA" hello
    measure base "http://127.0.0.1:$GW/" "$(HOSTOF hello)"
    stop_serve
fi

# --- serve and proxy modes, then cold starts, on one server -------------------
serve "$SKIFF_BIN" skiff
SKIFF_DATA=$DATA
{
    ksvc serve-mode '        autoscaling.knative.dev/target-burst-capacity: "0"
        autoscaling.knative.dev/min-scale: "1"' gcr.io/knative-samples/helloworld-go
    echo "---"
    ksvc proxy-mode '        autoscaling.knative.dev/target-burst-capacity: "-1"
        autoscaling.knative.dev/min-scale: "1"' gcr.io/knative-samples/helloworld-go
} | "$SKIFF_BIN" --data-dir "$DATA" apply -f - >/dev/null
wait_ready "$SKIFF_BIN" "$DATA" serve-mode
wait_ready "$SKIFF_BIN" "$DATA" proxy-mode
measure serve "http://127.0.0.1:$GW/" "$(HOSTOF serve-mode)"
measure proxy "http://127.0.0.1:$GW/" "$(HOSTOF proxy-mode)"
# Cold-start services: created once the throughput runs are over (their
# start and scale-down would skew them), then left to reach zero.
for i in $(seq "$COLD"); do
    ksvc "cold$i" "" gcr.io/knative-samples/autoscale-go
    echo "---"
done | "$SKIFF_BIN" --data-dir "$DATA" apply -f - >/dev/null

log "waiting for the $COLD cold-start services to reach zero"
ADMIN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' "$SKIFF_DATA/server.json")
for _ in $(seq 1200); do
    at_zero=$(curl -s "$ADMIN/metrics" | awk '/^skiff_autoscaler_actual_pods\{revision="default\/cold/ && $2==0' | wc -l)
    requested=$(curl -s "$ADMIN/metrics" | awk '/^skiff_autoscaler_requested_pods\{revision="default\/cold/ && $2==0' | wc -l)
    ((at_zero == COLD && requested == COLD)) && break
    sleep 0.5
done
((at_zero == COLD)) || die "only $at_zero of $COLD services reached zero"
sleep 1
: >"$OUT/cold.tsv"
for i in $(seq "$COLD"); do
    res=$(curl -s -H "Host: $(HOSTOF "cold$i")" -w '\t%{time_total}\t%{http_code}' "http://127.0.0.1:$GW/stats")
    body=${res%%$'\t'*}
    rest=${res#*$'\t'}
    total=${rest%%$'\t'*}
    code=${rest##*$'\t'}
    [[ $code == 200 ]] || die "cold start $i answered $code: $body"
    startup=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["startup_ms"])' "$body")
    printf '%s\t%s\t%s\n' "$i" "$total" "$startup" >>"$OUT/cold.tsv"
done
curl -s "$ADMIN/metrics" | grep '^skiff_cold_start' >"$OUT/cold-start-metrics.txt" || true
stop_serve

# --- summary -----------------------------------------------------------------
{
    echo "skiff autoscaling benchmark  $(date -u +%FT%TZ)  commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    printf '%-8s %10s %10s %10s %10s\n' target rps "vs direct" "p50 c=1" "p99 c=1"
    for t in direct base serve proxy; do
        [[ -n ${RPS[$t]:-} ]] || continue
        printf '%-8s %10s %10.2f %8sus %8sus\n' "$t" "${RPS[$t]}" \
            "$(python3 -c "print(${RPS[$t]}/${RPS[direct]})")" "${P50[$t]}" "${P99[$t]}"
    done
    echo
    echo "activator in the path (proxy vs serve): rps ratio $(python3 -c "print(round(${RPS[proxy]}/${RPS[serve]},3))"), added p50 $(( P50[proxy] - P50[serve] )) us"
    if [[ -n ${RPS[base]:-} ]]; then
        echo "queue-proxy layer (serve vs base):      rps ratio $(python3 -c "print(round(${RPS[serve]}/${RPS[base]},3))"), added p50 $(( P50[serve] - P50[base] )) us"
    fi
    python3 - "$OUT/cold.tsv" <<'PY'
import sys
rows = [l.split('\t') for l in open(sys.argv[1]) if l.strip()]
cost = sorted(float(t) * 1000 - float(s) for _, t, s in rows)
tot = sorted(float(t) * 1000 for _, t, _ in rows)
up = sorted(float(s) for _, _, s in rows)
def q(v, p):
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
print()
print(f"cold start ({len(rows)} from zero): first response {q(tot,.5):.1f} ms p50 / {q(tot,.99):.1f} ms p99; "
      f"the app's own start-to-ready {q(up,.5):.1f} ms p50")
print(f"cold start cost (first response - app start-to-ready): {q(cost,.5):.1f} ms p50, {q(cost,.99):.1f} ms p99 "
      f"(targets <= 15 ms p50, <= 50 ms p99: {'PASS' if q(cost,.5) <= 15 and q(cost,.99) <= 50 else 'MISS'})")
PY
} | tee "$OUT/summary.txt"
