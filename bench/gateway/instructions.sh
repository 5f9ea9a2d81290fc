#!/usr/bin/env bash
# Instructions per request: the user-space work a proxy does for one request,
# counted by valgrind's callgrind (Ir) while wrk sends requests through it.
# Unlike requests per second it does not depend on what else the machine
# runs, so two runs can be compared across commits and machines; the cost of
# the kernel's TCP work (about the same for every proxy) is not in it.
# Alongside, the misses of callgrind's simulated first-level caches (the
# same 32 KB L1s on every machine): a proxy whose code and data per request
# spread over more cache lines pays for it beyond its instruction count.
#
#   bench/gateway/instructions.sh        # about 4 minutes plus the build
#
# Targets: Skiff's gateway (hello as a Knative Service, the activator in the
# path as Knative's defaults put it), the same Skiff on the policy route of
# policy.sh (skiff-policy: VirtualService and DestinationRule), the bare
# hyper proxy of
# bench/hyper-proxy and nginx (the configuration of run.sh), in front of the
# same hello app. Each proxy runs one worker thread, so that all of them see
# CONNS connections per thread.
#
# Environment:
#   DURATION   length of the measured wrk run (default 5s)
#   CONNS      wrk's connections (default 16, as run.sh's throughput runs):
#              how many requests a worker has at once, which decides how
#              much code and data stay cached from one to the next
#   SKIFF_BIN  use this skiff binary instead of `cargo build --release -p skiff`
#   HYPER_PROXY_BIN  use this hyper-proxy binary instead of
#              `cargo build --release -p skiff-bench-hyper-proxy`
#   OUT_DIR    where to save the callgrind profiles and the summary
#              (default bench/out/instructions-<timestamp>)
# shellcheck disable=SC2317 # functions run from traps
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
ROOT=$(dirname "$BENCH")

DURATION=${DURATION:-5s}
CONNS=${CONNS:-16}
WARMUP=2s
RUNS=1
HOST_HEADER=hello.default.127.0.0.1.sslip.io
# A profile per thread (so that Skiff's gateway workers are counted apart
# from its control plane), and a fixed cache geometry
# (size,associativity,line), not the host's, so that the miss counts
# compare across machines.
CALLGRIND_OPTS=(--separate-threads=yes --cache-sim=yes "--I1=32768,8,64" "--D1=32768,8,64" "--LL=8388608,16,64")
OUT=${OUT_DIR:-$BENCH/out/instructions-$(date +%Y%m%d-%H%M%S)}
LOGS=$OUT/logs
unset TARGET HELLO_THREADS HOST PORT SKIFF_SERVER SKIFF_DATA_DIR

# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $DURATION =~ ^[1-9][0-9]*(s|m|h)?$ ]] || die "DURATION must look like 5s, 1m (wrk's -d), not '$DURATION'"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a number of connections, not '$CONNS'"

# count NAME PID URL [BODY] [ONLY]: Ir per request of the callgrind-run
# process PID while wrk sends DURATION of requests (CONNS connections) to URL,
# after a warm-up; URL answers BODY ("Hello World!" by default). ONLY, a
# function name (a substring of it): count only the threads that ran it (Skiff's gateway
# workers, without the controller's and autoscaler's periodic work, which
# does not grow with requests but would be divided by the few that valgrind
# lets through).
count() {
    local name=$1 pid=$2 url=$3 only=${5:-} n f part=0 p ir=0 i1=0 d1=0 t a b c threads=0
    check_hello "$name" "$url" "${4:-Hello World!}" || die "$name: $FAIL_REASON"
    wrk_run "$OUT/$name-warmup.txt" -t1 -c"$CONNS" -d"$WARMUP" "$url" || die "$name: $FAIL_REASON"
    callgrind_control -z "$pid" >/dev/null 2>&1
    wrk_run "$OUT/$name-wrk.txt" -t1 -c"$CONNS" -d"$DURATION" "$url" || die "$name: $FAIL_REASON"
    callgrind_control -d "$pid" >/dev/null 2>&1
    n=$(awk '/requests in/ {print $1}' "$OUT/$name-wrk.txt")
    [[ -n $n && $n -gt 0 ]] || die "$name: wrk completed no requests (see $OUT)"
    # Each dump after zeroing is the next part of the process's profile
    # (part 1, then 2 for a second target in the same process), one file
    # per thread (PID.PART-THREAD), saved as NAME.callgrind.THREAD.
    for f in "$OUT"/*.callgrind."$pid".*-*; do
        p=${f##*.callgrind."$pid".}
        p=${p%%-*}
        [[ $p =~ ^[0-9]+$ ]] && ((p > part)) && part=$p
    done
    ((part > 0)) || die "$name: no profile (see $OUT)"
    for f in "$OUT"/*.callgrind."$pid"."$part"-*; do
        t=${f##*-}
        mv "$f" "$OUT/$name.callgrind.$t"
        f=$OUT/$name.callgrind.$t
        [[ -z $only ]] || grep -qF "$only" "$f" || continue
        # Instructions and simulated first-level cache misses (instruction;
        # data read and write) from the thread's totals ("summary: 0" when
        # it ran nothing).
        read -r a b c < <(awk '/^events:/ {for (i = 2; i <= NF; i++) col[$i] = i}
            /^summary:/ {print $(col["Ir"]) + 0, $(col["I1mr"]) + 0, $(col["D1mr"]) + $(col["D1mw"]); exit}' "$f")
        [[ -n $a && -n $b && -n $c ]] || die "$name: a profile without totals (see $OUT)"
        ((a > 0)) || continue
        ((ir += a, i1 += b, d1 += c, threads += 1))
    done
    ((threads > 0 && ir > 0)) || die "$name: no thread ran ${only:-anything} (see $OUT)"
    log "$name: $n requests, $((ir / n)) instructions, $((i1 / n)) I1 and $((d1 / n)) D1 misses per request ($threads threads)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$n" "$((ir / n))" "$((i1 / n))" "$((d1 / n))" >>"$RESULTS"
}

mkdir -p "$LOGS"
RESULTS=$OUT/results.tsv
: >"$RESULTS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/skiff-instructions-bench.XXXXXX")

find_peers
install_valgrind
resolve_skiff_bin
SKIFF_BIN=$(realpath "$SKIFF_BIN")
resolve_hyper_proxy_bin

# The app both proxies forward to, run directly (not under valgrind).
free_port DIRECT_PORT
start_bg DIRECT_PID "$LOGS/direct-hello.log" env PORT="$DIRECT_PORT" HOST=127.0.0.1 "$SKIFF_BIN" example hello
wait_listen "$DIRECT_PORT" "$DIRECT_PID" 20 || die "hello did not listen (see $LOGS/direct-hello.log)"

# Skiff under callgrind (its instances, separate processes, are not counted).
skiff_start_callgrind "$OUT/skiff.callgrind.%p" "${CALLGRIND_OPTS[@]}" -- --gateway-threads 1
skiff_apply "$HERE/hello-ksvc.yaml" || die "skiff apply failed (see $LOGS/skiff-cli.log)"
skiff_wait_ready hello || die "hello did not become ready under Skiff"
count skiff "$SKIFF_PID" "http://127.0.0.1:$SKIFF_GW/" "Hello World!" skiff_proxy::server::HttpHandler
# The policy path of bench/gateway/policy.sh (issue 5): a VirtualService
# (header match, 90/10 weighted subsets) and a DestinationRule (connection
# pool, outlier detection) in front of service ab.
skiff_apply "$HERE/ab-ksvc-v1.yaml" || die "skiff apply failed (see $LOGS/skiff-cli.log)"
skiff_wait_ready ab ab-00001 || die "ab did not become ready under Skiff"
skiff_apply "$HERE/ab-policy.yaml" || die "skiff apply failed (see $LOGS/skiff-cli.log)"
skiff_wait_ready ab ab-00002 || die "ab-00002 did not become ready under Skiff"
HOST_HEADER=ab.example.com count skiff-policy "$SKIFF_PID" "http://127.0.0.1:$SKIFF_GW/" "Hello v1!" skiff_proxy::server::HttpHandler
stop_pid "$SKIFF_PID"

# The bare hyper proxy (bench/hyper-proxy) under callgrind, one thread: the
# floor of the stack Skiff is built on.
free_port HYPER_PORT
start_bg HYPER_PID "$LOGS/hyper-proxy.log" valgrind --tool=callgrind "${CALLGRIND_OPTS[@]}" \
    --callgrind-out-file="$OUT/hyper.callgrind.%p" "$HYPER_PROXY_BIN" \
    "127.0.0.1:$HYPER_PORT" "127.0.0.1:$DIRECT_PORT" 1
wait_listen "$HYPER_PORT" "$HYPER_PID" 60 || die "hyper-proxy did not listen under valgrind (see $LOGS/hyper-proxy.log)"
count hyper "$HYPER_PID" "http://127.0.0.1:$HYPER_PORT/"
stop_pid "$HYPER_PID"

# nginx under callgrind: one process, so the worker is the process counted.
free_port NGINX_PORT
mkdir -p "$TMP/nginx"
render "$HERE/nginx.conf.in" "$TMP/nginx.conf.tmp" "$NGINX_PORT" "$DIRECT_PORT" "$TMP/nginx"
sed -e 's/^worker_processes .*/worker_processes 1;\nmaster_process off;/' "$TMP/nginx.conf.tmp" >"$OUT/nginx.conf"
start_bg NGINX_PID "$LOGS/nginx.log" valgrind --tool=callgrind "${CALLGRIND_OPTS[@]}" \
    --callgrind-out-file="$OUT/nginx.callgrind.%p" "$NGINX" -p "$TMP/nginx" \
    -e "$LOGS/nginx-error.log" -c "$OUT/nginx.conf" -g 'daemon off;'
wait_listen "$NGINX_PORT" "$NGINX_PID" 60 || die "nginx did not listen under valgrind (see $LOGS/nginx*.log)"
count nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/"
stop_pid "$NGINX_PID"

{
    echo "commit:   $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "skiff:    $SKIFF_BIN"
    echo "hyper:    $HYPER_PROXY_BIN (bench/hyper-proxy)"
    echo
    printf '%-12s %9s %14s %9s %12s %12s\n' target requests "instr/request" "vs nginx" "I1 miss/req" "D1 miss/req"
    nginx_ir=$(awk -F'\t' '$1 == "nginx" {print $3}' "$RESULTS")
    while IFS=$'\t' read -r name n ir i1 d1; do
        printf '%-12s %9s %14s %9s %12s %12s\n' "$name" "$n" "$ir" \
            "$(awk -v a="$ir" -v b="$nginx_ir" 'BEGIN {printf "%.2f", a / b}')" "$i1" "$d1"
    done <"$RESULTS"
    echo
    echo "instructions: user space of the proxy (callgrind Ir; Skiff: its gateway workers), wrk -t1 -c$CONNS -d$DURATION"
    echo "I1/D1 miss: first-level instruction and data cache misses in callgrind's simulation (32 KB L1s)"
} | tee "$OUT/summary.txt"
