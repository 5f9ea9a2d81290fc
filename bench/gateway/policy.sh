#!/usr/bin/env bash
# Policy benchmark (issue 5): what Istio traffic management costs at Skiff's
# gateway. The same Skiff serves a plain Knative route and a VirtualService
# (header match + 90/10 weighted subsets) with a DestinationRule (connection
# pool + outlier detection); nginx and HAProxy get the equivalent
# configuration. All on 127.0.0.1, measured with wrk.
#
#   bench/gateway/policy.sh              # full run (about 4 minutes)
#   QUICK=1 bench/gateway/policy.sh      # smoke run: 1s, 1 run
#
# Environment:
#   DURATION   length of each measured wrk run (default 5s; QUICK: 1s)
#   RUNS       throughput rounds, the median is reported (default 3; QUICK: 1)
#   QUICK=1    smoke run (defaults above)
#   SKIFF_BIN  use this skiff binary instead of `cargo build --release -p skiff`
#   BOLT=0|1   1: Skiff runs that binary optimized by bench/gateway/bolt.sh
#              (default 1; QUICK: 0)
#   OUT_DIR    where to save raw wrk output and the summary
#              (default bench/out/policy-<timestamp>)
#   STEAL_MAX  percent of steal (CPU time the hypervisor gave to other
#              guests) above which the verdicts are marked unreliable
#              (default 5; see run.sh)
#
# See bench/README.md for how to read the output.
# shellcheck disable=SC2317 # functions run from traps
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
ROOT=$(dirname "$BENCH")

QUICK=${QUICK:-0}
STEAL_MAX=${STEAL_MAX:-5}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-1s}
    RUNS=${RUNS:-1}
    BOLT=${BOLT:-0}
else
    DURATION=${DURATION:-5s}
    RUNS=${RUNS:-3}
    BOLT=${BOLT:-1}
fi
WARMUP=1s
# The issue's target: skiff-policy keeps this share of skiff's throughput.
TARGET_RATIO=0.90
# Hosts: Knative's route of service hello (one revision), Knative's route of
# service ab (90/10 between its two revisions), the VirtualService's host.
PLAIN_HOST=hello.default.127.0.0.1.sslip.io
SPLIT_HOST=ab.default.127.0.0.1.sslip.io
POLICY_HOST=ab.example.com
VARIANT_HEADER='x-variant: b'
HOST_HEADER=$PLAIN_HOST # wrk_run's Host; each target sets its own
OUT=${OUT_DIR:-$BENCH/out/policy-$(date +%Y%m%d-%H%M%S)}
LOGS=$OUT/logs

# The hello app reads these, and Skiff's instances inherit Skiff's
# environment: keep every target on the same defaults (127.0.0.1, one
# runtime thread). SKIFF_SERVER would point the CLI elsewhere.
unset TARGET HELLO_THREADS HOST PORT SKIFF_SERVER SKIFF_DATA_DIR

# log, die, processes, ports, wrk runs, skiff_*: shared with run.sh.
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ $STEAL_MAX =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "STEAL_MAX must be a number of percent, not '$STEAL_MAX'"
[[ $DURATION =~ ^[1-9][0-9]*(s|m|h)?$ ]] || die "DURATION must look like 5s, 1m (wrk's -d), not '$DURATION'"
[[ $BOLT == 0 || $BOLT == 1 ]] || die "BOLT must be 0 or 1"

# ---------------------------------------------------------------------------
# Targets: a URL, a Host, maybe the header the VirtualService matches, and
# what it must answer: `v1`, `v2`, `World` (every answer `Hello X!`) or
# `split` (both `Hello v1!` and `Hello v2!`, mostly v1).

declare -A T_URL=() T_HOST=() T_HDR=() T_EXPECT=()
ROUNDS= # tab-separated: target round rps cpu_us_per_request
SPLITS= # tab-separated: target v1_requests v2_requests wrk_requests

add_target() { # add_target NAME URL HOST HEADER EXPECT
    T_URL[$1]=$2
    T_HOST[$1]=$3
    T_HDR[$1]=$4
    T_EXPECT[$1]=$5
}

# target_wrk NAME FILE ARGS...: one wrk run against target NAME.
target_wrk() {
    local name=$1 file=$2 HOST_HEADER=${T_HOST[$1]}
    shift 2
    if [[ -n ${T_HDR[$name]} ]]; then
        wrk_run "$file" "$@" -H "${T_HDR[$name]}" "${T_URL[$name]}"
    else
        wrk_run "$file" "$@" "${T_URL[$name]}"
    fi
}

# check_target NAME: 20 requests (one connection) answer as the target
# should; tries for 30 s (a VirtualService takes effect asynchronously).
check_target() {
    local name=$1 want=${T_EXPECT[$1]} n=20 urls=() hdr=() out counts v1 v2 world other i
    local deadline=$((SECONDS + 30))
    for ((i = 0; i < n; i++)); do urls+=("${T_URL[$name]}"); done
    [[ -n ${T_HDR[$name]} ]] && hdr=(-H "${T_HDR[$name]}")
    while :; do
        out=$(curl -sS --max-time 5 -H "Host: ${T_HOST[$name]}" ${hdr[@]+"${hdr[@]}"} "${urls[@]}" 2>&1) || true
        counts=$(awk '
            $0 == "Hello v1!" { v1++; next }
            $0 == "Hello v2!" { v2++; next }
            $0 == "Hello World!" { w++; next }
            { o++ }
            END { printf "%d %d %d %d\n", v1, v2, w, o }' <<<"$out")
        read -r v1 v2 world other <<<"$counts"
        case $want in
            split) ((v1 + v2 == n && v2 > 0 && v1 > v2)) && break ;;
            v1) ((v1 == n)) && break ;;
            v2) ((v2 == n)) && break ;;
            World) ((world == n)) && break ;;
        esac
        if ((SECONDS >= deadline)); then
            FAIL_REASON="$n requests answered v1 $v1, v2 $v2, World $world, other $other (want $want): '$(head -c 80 <<<"$out" | tr '\n' ' ')'"
            return 1
        fi
        sleep 0.5
    done
    log "$name: ${T_URL[$name]} (Host ${T_HOST[$name]}${T_HDR[$name]:+, ${T_HDR[$name]}}): $n requests answered v1 $v1, v2 $v2, World $world"
}

# vs_counts: requests the VirtualService sent to ab's revisions so far
# ("ab-00001 ab-00002"), from Skiff's istio_requests_total.
vs_counts() {
    curl -sS --max-time 5 "http://127.0.0.1:$SKIFF_ADM/metrics" 2>/dev/null | awk '
        /^istio_requests_total\{/ && /destination_service="ab.default.svc.cluster.local"/ {
            if (/destination_canonical_revision="ab-00001"/) a += $NF
            if (/destination_canonical_revision="ab-00002"/) b += $NF
        }
        END { printf "%d %d\n", a, b }'
}

# The processes whose CPU time counts as the proxy's (set per proxy).
PROXY_PIDS=()

GROUP_FAILED=0

fail_target() { # fail_target NAME: record NAME as failed with FAIL_REASON
    log "$1: FAILED: $FAIL_REASON"
    record "$1" failed "$FAIL_REASON"
    GROUP_FAILED=1
}

# measure_group NAME...: the targets of one proxy, measured together. Each is
# checked and warmed up; then RUNS rounds in which every target gets one
# throughput run (the order rotates from round to round, so that a drift of
# the machine's load hits them alike and each round pairs them up); then one
# c=1 latency run each. A row per target in RESULTS, a row per throughput
# run in ROUNDS. False if a target failed.
measure_group() {
    local names=() n i j f parsed rps p50 p99 err live=() s1 s2 b1 b2 t0 t1 cpu
    local -A rpss=() p50s=() p99s=() cpus=() errs=() dead=() c1=() v1=() v2=() reqs=()
    GROUP_FAILED=0
    for n in "$@"; do
        FAIL_REASON=
        if check_target "$n" && target_wrk "$n" "$OUT/$n-warmup.txt" -t1 -c16 -d"$WARMUP"; then
            names+=("$n")
            errs[$n]=0
        else
            fail_target "$n"
        fi
    done
    ((${#names[@]} > 0)) || return 1
    for ((i = 1; i <= RUNS; i++)); do
        for ((j = 0; j < ${#names[@]}; j++)); do
            n=${names[(j + i - 1) % ${#names[@]}]}
            [[ -n ${dead[$n]:-} ]] && continue
            f=$OUT/$n-rps-$i.txt
            [[ $n == skiff-policy ]] && read -r b1 b2 <<<"$(vs_counts)"
            t0=$(cpu_ticks "${PROXY_PIDS[@]}")
            if ! target_wrk "$n" "$f" -t2 -c16 -d"$DURATION" --latency; then
                dead[$n]=1
                fail_target "$n"
                continue
            fi
            t1=$(cpu_ticks "${PROXY_PIDS[@]}")
            if [[ $n == skiff-policy ]]; then
                read -r s1 s2 <<<"$(vs_counts)"
                v1[$n]=$((${v1[$n]:-0} + s1 - b1))
                v2[$n]=$((${v2[$n]:-0} + s2 - b2))
                reqs[$n]=$((${reqs[$n]:-0} + $(wrk_requests "$f")))
            fi
            parsed=$(parse_wrk "$f") || {
                FAIL_REASON="cannot parse $(basename "$f")"
                dead[$n]=1
                fail_target "$n"
                continue
            }
            read -r rps p50 p99 err <<<"$parsed"
            cpu=$(cpu_per_request "$((t1 - t0))" "$f")
            rpss[$n]+="$rps "
            cpus[$n]+="$cpu "
            p50s[$n]+="$p50 "
            p99s[$n]+="$p99 "
            errs[$n]=$((errs[$n] + err))
            printf '%s\t%s\t%s\t%s\n' "$n" "$i" "$rps" "$cpu" >>"$ROUNDS"
            log "$n: throughput run $i/$RUNS (t2 c16 $DURATION): $rps req/s, p50 ${p50}us, p99 ${p99}us, proxy CPU ${cpu}us/request"
            ((err == 0)) || { log "$n: wrk reported $err errors in run $i:"; wrk_errors "$f" >&2; }
        done
    done
    for n in "${names[@]}"; do
        [[ -n ${dead[$n]:-} ]] && continue
        f=$OUT/$n-c1.txt
        if ! target_wrk "$n" "$f" -t1 -c1 -d"$DURATION" --latency; then
            fail_target "$n"
            continue
        fi
        if ! parsed=$(parse_wrk "$f"); then
            FAIL_REASON="cannot parse $(basename "$f")"
            fail_target "$n"
            continue
        fi
        read -r rps p50 p99 err <<<"$parsed"
        c1[$n]="$p50 $p99"
        errs[$n]=$((errs[$n] + err))
        log "$n: latency run (t1 c1 $DURATION): $rps req/s, p50 ${p50}us, p99 ${p99}us"
        ((err == 0)) || { log "$n: wrk reported $err errors in the c=1 run:"; wrk_errors "$f" >&2; }
        live+=("$n")
    done
    for n in ${live[@]+"${live[@]}"}; do
        local rps_med rps_min rps_max load_p50 load_p99 c1_p50 c1_p99 cpu_med
        read -r rps_med rps_min rps_max <<<"$(tr ' ' '\n' <<<"${rpss[$n]}" | grep . | med_min_max)"
        read -r load_p50 _ _ <<<"$(tr ' ' '\n' <<<"${p50s[$n]}" | grep . | med_min_max)"
        read -r load_p99 _ _ <<<"$(tr ' ' '\n' <<<"${p99s[$n]}" | grep . | med_min_max)"
        read -r cpu_med _ _ <<<"$(tr ' ' '\n' <<<"${cpus[$n]}" | grep . | med_min_max)"
        read -r c1_p50 c1_p99 <<<"${c1[$n]}"
        # target status note rps_med rps_min rps_max p50_c1 p99_c1 errors p50_load p99_load cpu_us
        printf '%s\tok\t\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$rps_med" "$rps_min" "$rps_max" \
            "$c1_p50" "$c1_p99" "${errs[$n]}" "$load_p50" "$load_p99" "$cpu_med" >>"$RESULTS"
        if [[ -n ${reqs[$n]:-} ]]; then
            printf '%s\t%s\t%s\t%s\n' "$n" "${v1[$n]}" "${v2[$n]}" "${reqs[$n]}" >>"$SPLITS"
        fi
    done
    ((GROUP_FAILED == 0))
}

# fail_all REASON NAME...: record every NAME as failed.
fail_all() {
    local n
    FAIL_REASON=$1
    shift
    for n in "$@"; do fail_target "$n"; done
    return 1
}

# ---------------------------------------------------------------------------
# Proxies

V1_PORT=
V1_PID=
V2_PORT=
V2_PID=

# start_hello PORT_VAR PID_VAR TARGET: the hello app answering "Hello TARGET!".
start_hello() {
    local _sh_port _sh_pid
    free_port _sh_port
    start_bg _sh_pid "$LOGS/direct-$3.log" \
        env PORT="$_sh_port" HOST=127.0.0.1 TARGET="$3" "$SKIFF_BIN" example hello
    printf -v "$1" %s "$_sh_port"
    printf -v "$2" %s "$_sh_pid"
    wait_listen "$_sh_port" "$_sh_pid" 20 || {
        FAIL_REASON="hello app ($3) did not listen on $_sh_port (see logs/direct-$3.log)"
        return 1
    }
}

# The proxies' backends are the direct hello apps: they must still run.
backends_alive() {
    alive "$V1_PID" && alive "$V2_PID" && return 0
    FAIL_REASON="a hello backend has exited (see logs/direct-v*.log)"
    return 1
}

render_policy() { # render_policy TEMPLATE OUT PLAIN_PORT POLICY_PORT TMP_DIR
    sed -e "s|@LISTEN_PORT@|$3|g" -e "s|@POLICY_PORT@|$4|g" -e "s|@BACKEND_PORT@|$V1_PORT|g" \
        -e "s|@V1_PORT@|$V1_PORT|g" -e "s|@V2_PORT@|$V2_PORT|g" \
        -e "s|@TMP_DIR@|$5|g" -e "s|@LOG_DIR@|$LOGS|g" "$1" >"$2"
}

run_skiff() {
    local names=(skiff skiff-split skiff-policy skiff-policy-hdr) ok=0
    SKIFF_BIN=${SKIFF_BOLT_BIN:-$SKIFF_BIN} skiff_start || fail_all "$FAIL_REASON" "${names[@]}" || return 1
    if ! skiff_apply "$HERE/hello-ksvc.yaml" || ! skiff_apply "$HERE/ab-ksvc-v1.yaml"; then
        skiff_stop
        fail_all "$FAIL_REASON" "${names[@]}" || return 1
    fi
    log "skiff: applied hello-ksvc.yaml, ab-ksvc-v1.yaml; waiting for READY True"
    if skiff_wait_ready hello && skiff_wait_ready ab ab-00001 && skiff_apply "$HERE/ab-policy.yaml"; then
        log "skiff: applied ab-policy.yaml; waiting for revision ab-00002"
        skiff_wait_ready ab ab-00002 || ok=1
    else
        ok=1
    fi
    if ((ok != 0)); then
        skiff_stop
        fail_all "$FAIL_REASON" "${names[@]}" || return 1
    fi
    local url="http://127.0.0.1:$SKIFF_GW/"
    PROXY_PIDS=("$SKIFF_PID") # the gateway, queue-proxy and activator, not the instances
    add_target skiff "$url" "$PLAIN_HOST" "" World
    add_target skiff-split "$url" "$SPLIT_HOST" "" split
    add_target skiff-policy "$url" "$POLICY_HOST" "" split
    add_target skiff-policy-hdr "$url" "$POLICY_HOST" "$VARIANT_HEADER" v2
    measure_group "${names[@]}" || ok=1
    skiff_cli analyze >"$LOGS/skiff-analyze.txt" 2>&1 || true
    curl -sS --max-time 5 "http://127.0.0.1:$SKIFF_ADM/metrics" >"$LOGS/skiff-metrics.txt" 2>&1 || true
    skiff_stop
    return "$ok"
}

run_nginx() {
    local names=(nginx nginx-policy nginx-policy-hdr) plain policy pid dir=$TMP/nginx ok=0
    backends_alive || fail_all "$FAIL_REASON" "${names[@]}" || return 1
    free_port plain
    free_port policy
    mkdir -p "$dir"
    chmod 755 "$TMP" "$dir" # the workers may run as another user
    render_policy "$HERE/nginx-policy.conf.in" "$OUT/conf/nginx-policy.conf" "$plain" "$policy" "$dir"
    start_bg pid "$LOGS/nginx.log" \
        "$NGINX" -p "$dir" -e "$LOGS/nginx-error.log" -c "$OUT/conf/nginx-policy.conf" -g 'daemon off;'
    if ! wait_listen "$plain" "$pid" 20 || ! wait_listen "$policy" "$pid" 20; then
        stop_pid "$pid"
        fail_all "nginx did not listen (see logs/nginx*.log)" "${names[@]}" || return 1
    fi
    # shellcheck disable=SC2207 # PIDs: one word each
    PROXY_PIDS=("$pid" $(pgrep -P "$pid")) # master and workers
    add_target nginx "http://127.0.0.1:$plain/" "$PLAIN_HOST" "" v1
    add_target nginx-policy "http://127.0.0.1:$policy/" "$POLICY_HOST" "" split
    add_target nginx-policy-hdr "http://127.0.0.1:$policy/" "$POLICY_HOST" "$VARIANT_HEADER" v2
    measure_group "${names[@]}" || ok=1
    stop_pid "$pid"
    return "$ok"
}

run_haproxy() {
    local names=(haproxy haproxy-policy haproxy-policy-hdr) plain policy pid ok=0
    backends_alive || fail_all "$FAIL_REASON" "${names[@]}" || return 1
    free_port plain
    free_port policy
    render_policy "$HERE/haproxy-policy.cfg.in" "$OUT/conf/haproxy-policy.cfg" "$plain" "$policy" "$TMP"
    start_bg pid "$LOGS/haproxy.log" "$HAPROXY" -db -f "$OUT/conf/haproxy-policy.cfg"
    if ! wait_listen "$plain" "$pid" 20 || ! wait_listen "$policy" "$pid" 20; then
        stop_pid "$pid"
        fail_all "haproxy did not listen (see logs/haproxy.log)" "${names[@]}" || return 1
    fi
    PROXY_PIDS=("$pid")
    add_target haproxy "http://127.0.0.1:$plain/" "$PLAIN_HOST" "" v1
    add_target haproxy-policy "http://127.0.0.1:$policy/" "$POLICY_HOST" "" split
    add_target haproxy-policy-hdr "http://127.0.0.1:$policy/" "$POLICY_HOST" "$VARIANT_HEADER" v2
    measure_group "${names[@]}" || ok=1
    stop_pid "$pid"
    return "$ok"
}

# ---------------------------------------------------------------------------
# Summary

summary() {
    echo "host: $STEAL % of the CPU time went to other guests during the runs (steal)"
    if awk -v s="$STEAL" -v m="$STEAL_MAX" 'BEGIN { exit !(s + 0 > m + 0) }'; then
        echo "(unreliable: more than $STEAL_MAX %; rerun when the host is quieter)"
    fi
    echo
    awk -F'\t' -v runs="$RUNS" -v dur="$DURATION" -v want="$TARGET_RATIO" \
        -v rounds="$ROUNDS" -v splits="$SPLITS" '
        function f0(x) { return sprintf("%.0f", x) }
        function ratio(a, b) { return (ok[a] && ok[b] && M[b] > 0) ? sprintf("%.2f", M[a] / M[b]) : "-" }
        # The median of the per-round ratios X[a]/X[b] ("" if no round has
        # both); the ratios themselves into LIST. X: R (rps) or C (CPU).
        function paired(a, b, X,    r, n, v, i, j, t) {
            n = 0; LIST = ""
            for (r = 1; r <= runs; r++) if ((a, r) in X && (b, r) in X && X[b, r] > 0) {
                v[++n] = X[a, r] / X[b, r]
                LIST = LIST sprintf(" %.2f", v[n])
            }
            if (n == 0) return ""
            for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
            return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        # proxy and kind of a target: skiff-policy-hdr -> skiff, policy-hdr
        function proxy(t,    i) { return (i = index(t, "-")) ? substr(t, 1, i - 1) : t }
        function kind(t,    i) { return (i = index(t, "-")) ? substr(t, i + 1) : "" }
        function peer(p, t) { return kind(t) == "" ? p : p "-" kind(t) }
        BEGIN {
            while ((getline line < rounds) > 0) { split(line, f, "\t"); R[f[1], f[2]] = f[3]; C[f[1], f[2]] = f[4] }
            while ((getline line < splits) > 0) { split(line, f, "\t"); S1[f[1]] = f[2]; S2[f[1]] = f[3]; SW[f[1]] = f[4] }
        }
        {
            row[$1] = NR
            name[NR] = $1; st[NR] = $2; note[NR] = $3
            med[NR] = $4; lo[NR] = $5; hi[NR] = $6; p50[NR] = $7; p99[NR] = $8; err[NR] = $9
            lp50[NR] = $10; lp99[NR] = $11; cpu[NR] = $12
            if ($2 == "ok") { ok[$1] = 1; M[$1] = $4; CPU[$1] = $12 }
        }
        END {
            fmt = "%-18s %8s %13s %6s %6s %7s %8s %8s %7s %7s %7s %6s\n"
            printf fmt, "target", "rps", "rps range", "vs own", "vs", "vs", "load p50", "load p99", \
                "p50 c=1", "p99 c=1", "proxy", "wrk"
            printf fmt, "", "(median)", "(min-max)", "plain", "nginx", "haproxy", "(us)", "(us)", \
                "(us)", "(us)", "us/req", "errors"
            # Rows in this order (failures are recorded as they happen).
            nt = split("direct skiff skiff-split skiff-policy skiff-policy-hdr nginx nginx-policy " \
                "nginx-policy-hdr haproxy haproxy-policy haproxy-policy-hdr", O, " ")
            for (k = 1; k <= NR; k++) { for (x = 1; x <= nt && O[x] != name[k]; x++); if (x > nt) O[++nt] = name[k] }
            for (x = 1; x <= nt; x++) {
                if (!(O[x] in row)) continue
                k = row[O[x]]
                t = name[k]
                if (st[k] != "ok") { printf "%-18s %s: %s\n", t, st[k], note[k]; continue }
                printf fmt, t, f0(med[k]), f0(lo[k]) "-" f0(hi[k]), ratio(t, proxy(t)), \
                    (proxy(t) == "direct" ? "-" : ratio(t, peer("nginx", t))), \
                    (proxy(t) == "direct" ? "-" : ratio(t, peer("haproxy", t))), \
                    f0(lp50[k]), f0(lp99[k]), f0(p50[k]), f0(p99[k]), sprintf("%.1f", cpu[k]), err[k]
            }
            print ""
            printf "rps, load p50/p99: wrk -t2 -c16 -d%s, median of %d round(s); a proxy'"'"'s targets take\n", dur, runs
            print "turns within each round. p50/p99 c=1: wrk -t1 -c1 -d" dur " (one request at a time)."
            print "vs own plain: rps / the same proxy'"'"'s plain route. vs nginx, vs haproxy: rps / the"
            print "same job done by nginx, HAProxy. proxy us/req: CPU time of the proxy'"'"'s processes per"
            print "request in the rps runs (median; skiff: the skiff serve process, not its instances)."
            print ""
            print "Target (issue 5: the policy work costs little):"
            label = sprintf("skiff-policy rps >= %.2f x skiff rps", want)
            m = paired("skiff-policy", "skiff", R)
            if (m != "") {
                printf "  %-38s %s  (%.2f, median of the per-round ratios%s; medians %.0f vs %.0f req/s)\n", \
                    label, (m >= want ? "PASS" : "MISS"), m, LIST, M["skiff-policy"], M["skiff"]
            } else {
                printf "  %-38s n/a   (skiff or skiff-policy not measured)\n", label
            }
            m = paired("skiff-policy", "skiff-split", R)
            if (m != "")
                printf "  %-38s %.2f  (the same two revisions by Knative'"'"'s own 90/10 route:%s)\n", \
                    "skiff-policy rps / skiff-split rps", m, LIST
            print ""
            print "Policy cost against the same proxy'"'"'s plain route, median of the per-round ratios"
            print "(each round'"'"'s in brackets):"
            printf "  %-18s %-26s %s\n", "", "rps / plain rps", "proxy CPU per request / plain'"'"'s"
            np = split("skiff nginx haproxy", P, " ")
            nk = split("split policy policy-hdr", K, " ")
            for (x = 1; x <= np; x++) for (y = 1; y <= nk; y++) {
                t = P[x] "-" K[y]
                m = paired(t, P[x], R)
                if (m == "") continue
                rr = sprintf("%.2f (%s)", m, substr(LIST, 2))
                m = paired(t, P[x], C)
                cr = (m == "") ? "-" : sprintf("%.2f (%s)", m, substr(LIST, 2))
                printf "  %-18s %-26s %s\n", t, rr, cr
            }
            for (t in SW) {
                tot = S1[t] + S2[t]
                print ""
                if (tot > 0)
                    printf "%s split while measured (Skiff'"'"'s istio_requests_total): ab-00001 %.1f %%, ab-00002 %.1f %%\nof %d requests (wrk counted %d).\n", \
                        t, 100 * S1[t] / tot, 100 * S2[t] / tot, tot, SW[t]
                else
                    printf "%s split while measured: istio_requests_total did not move (wrk counted %d).\n", t, SW[t]
            }
            for (k = 1; k <= NR; k++) if (st[k] == "ok" && err[k] > 0) {
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
ROUNDS=$OUT/rounds.tsv
SPLITS=$OUT/split.tsv
: >"$RESULTS"
: >"$ROUNDS"
: >"$SPLITS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/skiff-policy-bench.XXXXXX")

find_peers
resolve_skiff_bin
bolt_skiff

{
    echo "Skiff gateway policy benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    header_machine
    echo "settings: DURATION=$DURATION RUNS=$RUNS QUICK=$QUICK"
    echo "hosts:    plain $PLAIN_HOST, split $SPLIT_HOST, policy $POLICY_HOST (+ $VARIANT_HEADER)"
    header_versions
} | tee "$OUT/header.txt"

log "raw output in $OUT"

start_hello V1_PORT V1_PID v1 || die "$FAIL_REASON"
start_hello V2_PORT V2_PID v2 || die "$FAIL_REASON"
log "direct: hello apps v1 on 127.0.0.1:$V1_PORT (pid $V1_PID), v2 on 127.0.0.1:$V2_PORT (pid $V2_PID)"
add_target direct "http://127.0.0.1:$V1_PORT/" "$PLAIN_HOST" "" v1
PROXY_PIDS=("$V1_PID")
host_before=$(host_ticks)
measure_group direct || die "direct: $FAIL_REASON"

failed=0
for proxy in skiff nginx haproxy; do
    FAIL_REASON=
    log "$proxy: starting"
    "run_$proxy" || failed=1
done

STEAL=$(steal_percent "$host_before" "$(host_ticks)")
stop_pid "$V2_PID"
stop_pid "$V1_PID"

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
