# Shared by bench/gateway/run.sh and bench/gateway/policy.sh; sourced, not run.
#
# The sourcing script sets, before calling anything here: OUT, LOGS, RESULTS,
# TMP, WARMUP, RUNS, DURATION, HOST_HEADER, HERE, ROOT, and after
# find_peers/resolve_skiff_bin/resolve_hyper_proxy_bin: WRK, NGINX, HAPROXY,
# SKIFF_BIN, HYPER_PROXY_BIN.
# Sourcing installs the EXIT/INT/TERM traps that stop every process started
# with start_bg.
# shellcheck shell=bash
# shellcheck disable=SC2317 # functions run from traps
# shellcheck disable=SC2034 # FAIL_REASON, WRK, ...: read by the sourcing script

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

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

# install_apt_peers TOOL...: the TOOLs, with apt-get if they are missing.
install_apt_peers() {
    local missing=() t
    for t in "$@"; do
        find_tool "$t" >/dev/null || missing+=("$t")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} with apt-get"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
}

# ---------------------------------------------------------------------------
# Measuring

RESULTS= # tab-separated: target status note rps_med rps_min rps_max p50_us p99_us errors cpu_us
FAIL_REASON=

record() { # record TARGET STATUS NOTE [RPS_MED RPS_MIN RPS_MAX P50 P99 ERRORS [CPU_US]]
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" \
        "${4:--}" "${5:--}" "${6:--}" "${7:--}" "${8:--}" "${9:--}" "${10:--}" >>"$RESULTS"
}

wrk_requests() { awk '/ requests in / { print $1; exit }' "$1"; }

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# cpu_ticks PID...: user + system CPU time of the PIDs (every thread), in
# clock ticks.
cpu_ticks() {
    local p s fields t=0
    for p in "$@"; do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        read -ra fields <<<"${s##*) }"
        t=$((t + fields[11] + fields[12]))
    done
    echo "$t"
}

# host_ticks: "STEAL TOTAL", the whole machine's CPU time (every CPU) and the
# part of it the hypervisor gave to other guests (/proc/stat's steal; 0 on
# bare metal), in clock ticks.
host_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit }' /proc/stat
}

# steal_percent "STEAL TOTAL" "STEAL TOTAL": the stolen share of the CPU time
# between two host_ticks readings, in percent.
steal_percent() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "%.1f", (y[2] > x[2] ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 0)
    }'
}

# cpu_per_request TICKS WRK_OUTPUT: µs of CPU per request of that wrk run.
cpu_per_request() {
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$(wrk_requests "$2")" \
        'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }'
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

# check_hello NAME URL [BODY]: the target answers BODY, "Hello World!" by
# default (tries for 10 s).
check_hello() {
    local name=$1 url=$2 want=${3:-Hello World!} body deadline=$((SECONDS + 10))
    while :; do
        body=$(curl -sS --max-time 2 -H "Host: $HOST_HEADER" "$url" 2>&1) || true
        [[ $body == "$want" ]] && return 0
        ((SECONDS < deadline)) || break
        sleep 0.25
    done
    FAIL_REASON="$url answered '${body:0:80}' instead of '$want'"
    return 1
}

# measure_run KIND ROUND NAME WRK_ARGS...: one of measure's runs. It works
# on measure's locals (bash scoping is dynamic): it reads m_url and sets f,
# parsed, rps, p50, p99, err, errs and, when the run fails, dead[NAME].
measure_run() {
    local kind=$1 round=$2 n=$3
    shift 3
    f=$OUT/$n-$kind-$round.txt
    if ! wrk_run "$f" "$@" --latency "${m_url[$n]}" || ! parsed=$(parse_wrk "$f"); then
        [[ -n $FAIL_REASON ]] || FAIL_REASON="cannot parse $(basename "$f")"
        dead[$n]=$FAIL_REASON
        return 1
    fi
    read -r rps p50 p99 err <<<"$parsed"
    errs[$n]=$((errs[$n] + err))
    log "$n: $kind run $round/$RUNS ($*): $rps req/s, p50 ${p50}us, p99 ${p99}us"
    ((err == 0)) || { log "$n: wrk reported $err errors in $(basename "$f"):"; wrk_errors "$f" >&2; }
}

# Median, min and max of the numbers on stdin.
med_min_max() {
    sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "- - -"; exit }
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.2f %.2f %.2f\n", med, v[1], v[NR]
        }'
}

# measure NAME=URL...: every target checked and warmed up, then measured in
# rounds: RUNS throughput rounds, then RUNS latency (c=1) rounds, each round
# giving every target one run, in an order that rotates from round to round.
# On a shared machine whose load drifts, interleaving hits every target alike
# and pairs them up round by round (ROUNDS keeps each throughput run, with
# the CPU per request of the processes CPU_PIDS[NAME] lists, if any, and
# C1_ROUNDS, when set, each c=1 run's p50). A row
# per target in RESULTS: median rps (and range), median c=1 p50 and p99,
# median CPU per request. False if a target failed (recorded as failed, with
# its reason).
declare -A CPU_PIDS=()
measure() {
    local spec kind n i j f parsed rps p50 p99 err failed=0 names=() t0 t1 cpu
    local -A m_url=() rpss=() p50s=() p99s=() errs=() dead=() cpus=()
    for spec in "$@"; do
        n=${spec%%=*}
        m_url[$n]=${spec#*=}
        FAIL_REASON=
        if check_hello "$n" "${m_url[$n]}" &&
            log "$n: ${m_url[$n]} answers 'Hello World!'; warm-up ($WARMUP)" &&
            wrk_run "$OUT/$n-warmup.txt" -t1 -c16 -d"$WARMUP" "${m_url[$n]}"; then
            names+=("$n")
            errs[$n]=0
        else
            record "$n" failed "$FAIL_REASON"
            failed=1
        fi
    done
    ((${#names[@]} > 0)) || return 1
    for kind in rps c1; do
        for ((i = 1; i <= RUNS; i++)); do
            for ((j = 0; j < ${#names[@]}; j++)); do
                n=${names[(j + i - 1) % ${#names[@]}]}
                [[ -n ${dead[$n]:-} ]] && continue
                FAIL_REASON=
                if [[ $kind == rps ]]; then
                    # shellcheck disable=SC2086 # a list of PIDs
                    t0=$(cpu_ticks ${CPU_PIDS[$n]:-})
                    measure_run rps "$i" "$n" -t2 -c16 -d"$DURATION" || continue
                    # shellcheck disable=SC2086
                    t1=$(cpu_ticks ${CPU_PIDS[$n]:-})
                    cpu=-
                    if [[ -n ${CPU_PIDS[$n]:-} ]]; then
                        cpu=$(cpu_per_request "$((t1 - t0))" "$f")
                        cpus[$n]+="$cpu "
                    fi
                    rpss[$n]+="$rps "
                    printf '%s\t%s\t%s\t%s\n' "$n" "$i" "$rps" "$cpu" >>"$ROUNDS"
                else
                    measure_run c1 "$i" "$n" -t1 -c1 -d"$DURATION" || continue
                    p50s[$n]+="$p50 "
                    p99s[$n]+="$p99 "
                    if [[ -n ${C1_ROUNDS:-} ]]; then
                        printf '%s\t%s\t%s\n' "$n" "$i" "$p50" >>"$C1_ROUNDS"
                    fi
                fi
            done
        done
    done
    for n in "${names[@]}"; do
        if [[ -n ${dead[$n]:-} ]]; then
            record "$n" failed "${dead[$n]}"
            failed=1
            continue
        fi
        local rps_med rps_min rps_max p50_med p99_med cpu_med=-
        read -r rps_med rps_min rps_max <<<"$(tr ' ' '\n' <<<"${rpss[$n]}" | grep . | med_min_max)"
        read -r p50_med _ _ <<<"$(tr ' ' '\n' <<<"${p50s[$n]}" | grep . | med_min_max)"
        read -r p99_med _ _ <<<"$(tr ' ' '\n' <<<"${p99s[$n]}" | grep . | med_min_max)"
        if [[ -n ${cpus[$n]:-} ]]; then
            read -r cpu_med _ _ <<<"$(tr ' ' '\n' <<<"${cpus[$n]}" | grep . | med_min_max)"
        fi
        record "$n" ok "" "$rps_med" "$rps_min" "$rps_max" "$p50_med" "$p99_med" "${errs[$n]}" "$cpu_med"
    done
    ((failed == 0))
}

# ---------------------------------------------------------------------------
# Set-up

# install_valgrind: valgrind, with apt-get if it is missing.
install_valgrind() {
    command -v valgrind >/dev/null && return 0
    log "installing valgrind with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind
}

# find_peers: WRK, NGINX and HAPROXY (installed with apt-get if missing), curl.
find_peers() {
    install_apt_peers wrk nginx haproxy
    WRK=$(find_tool wrk) || die "wrk is not installed"
    NGINX=$(find_tool nginx) || die "nginx is not installed"
    HAPROXY=$(find_tool haproxy) || die "haproxy is not installed"
    command -v curl >/dev/null || die "curl is not installed"
}

# cargo_bin PACKAGE BIN: build PACKAGE's release binary BIN with cargo and
# print its path.
cargo_bin() {
    local target_dir
    log "building $2 (cargo build --release -p $1)"
    (cd "$ROOT" && cargo build --release -p "$1") >&2
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir == /* ]] || target_dir=$ROOT/$target_dir
    [[ -x $target_dir/release/$2 ]] || die "cargo build did not produce $target_dir/release/$2"
    echo "$target_dir/release/$2"
}

# resolve_skiff_bin: SKIFF_BIN as given, else built with cargo.
resolve_skiff_bin() {
    if [[ -n ${SKIFF_BIN:-} ]]; then
        [[ -x $SKIFF_BIN ]] || die "SKIFF_BIN=$SKIFF_BIN is not executable"
    else
        SKIFF_BIN=$(cargo_bin skiff skiff) || die "building skiff failed"
    fi
}

# bolt_skiff: when BOLT is 1, SKIFF_BOLT_BIN is SKIFF_BIN optimized by
# bolt.sh (into TMP; its profile and logs in OUT/bolt); else empty.
SKIFF_BOLT_BIN=
bolt_skiff() {
    [[ ${BOLT:-0} == 1 ]] || return 0
    log "optimizing $SKIFF_BIN with BOLT (bench/gateway/bolt.sh; logs in $OUT/bolt)"
    SKIFF_BIN=$SKIFF_BIN BOLT_OUT=$TMP/skiff-bolt OUT_DIR=$OUT/bolt "$HERE/bolt.sh" ||
        die "bench/gateway/bolt.sh failed (see $OUT/bolt/logs); BOLT=0 measures the release binary as cargo built it"
    SKIFF_BOLT_BIN=$TMP/skiff-bolt
}

# resolve_hyper_proxy_bin: HYPER_PROXY_BIN as given, else built with cargo.
resolve_hyper_proxy_bin() {
    if [[ -n ${HYPER_PROXY_BIN:-} ]]; then
        [[ -x $HYPER_PROXY_BIN ]] || die "HYPER_PROXY_BIN=$HYPER_PROXY_BIN is not executable"
    else
        HYPER_PROXY_BIN=$(cargo_bin skiff-bench-hyper-proxy hyper-proxy) || die "building hyper-proxy failed"
    fi
}

# header_machine: the commit and machine lines of a run's header.
header_machine() {
    echo "commit:   $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        [[ -n $(git -C "$ROOT" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null | head -1) ]] && echo ' (work tree modified)')"
    echo "machine:  $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# header_versions: the skiff, wrk, nginx and haproxy lines of a run's header.
header_versions() {
    echo "skiff:    $SKIFF_BIN"
    # Whether the binary's hot code is laid out as crates/skiff/hot-text.ld
    # says (bench/gateway/hot-text.sh regenerates it).
    echo "          $(python3 "$HERE/hot_text.py" check "$SKIFF_BIN" "$ROOT/crates/skiff/hot-text.ld" 2>&1 | head -1)"
    if [[ -n $SKIFF_BOLT_BIN ]]; then
        echo "          optimized by bench/gateway/bolt.sh (profile in $OUT/bolt): $SKIFF_BOLT_BIN"
    fi
    echo "wrk:      $("$WRK" -v 2>&1 | head -1 | awk '{print $2}')"
    echo "nginx:    $("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    echo "haproxy:  $("$HAPROXY" -v 2>&1 | head -1 | awk '{print $3}')"
}

# ---------------------------------------------------------------------------
# Skiff

SKIFF_PID=
SKIFF_GW=
SKIFF_ADM=
SKIFF_DATA=

# SKIFF_TAG names the Skiff the skiff_* functions work on when a script runs
# more than one (its data dir, its logs): "skiff" unless set.
SKIFF_TAG=skiff

# skiff_start [SERVE_ARG...]: `skiff serve` on a temporary data dir, its
# external gateway on 127.0.0.1:SKIFF_GW and its admin API on
# 127.0.0.1:SKIFF_ADM.
# shellcheck disable=SC2120 # the serve arguments are optional
skiff_start() {
    free_port SKIFF_GW
    free_port SKIFF_ADM
    SKIFF_DATA=$TMP/$SKIFF_TAG-data
    start_bg SKIFF_PID "$LOGS/$SKIFF_TAG-serve.log" \
        "$SKIFF_BIN" serve --data-dir "$SKIFF_DATA" --listen "127.0.0.1:$SKIFF_GW" --local-listen 127.0.0.1:0 --admin "127.0.0.1:$SKIFF_ADM" "$@"
    STOP_TIMEOUT[$SKIFF_PID]=40 # it drains for up to 30 s
    if ! wait_listen "$SKIFF_GW" "$SKIFF_PID" 30 || ! wait_listen "$SKIFF_ADM" "$SKIFF_PID" 30; then
        FAIL_REASON="skiff serve did not listen (see logs/$SKIFF_TAG-serve.log)"
        stop_pid "$SKIFF_PID"
        return 1
    fi
    skiff_wait_data 50
}

# skiff_start_callgrind OUT_FILE OPTION... [-- SERVE_ARG...]: `skiff serve`
# as skiff_start does, with SERVE_ARGs, under valgrind's callgrind with these
# options, writing its profiles to OUT_FILE (callgrind's --callgrind-out-file).
skiff_start_callgrind() {
    local out=$1 opts=() serve=()
    shift
    while (($#)) && [[ $1 != -- ]]; do
        opts+=("$1")
        shift
    done
    (($#)) && shift && serve=("$@")
    free_port SKIFF_GW
    free_port SKIFF_ADM
    SKIFF_DATA=$TMP/$SKIFF_TAG-data
    start_bg SKIFF_PID "$LOGS/$SKIFF_TAG-serve.log" valgrind --tool=callgrind "${opts[@]}" \
        --callgrind-out-file="$out" "$SKIFF_BIN" serve --data-dir "$SKIFF_DATA" \
        --listen "127.0.0.1:$SKIFF_GW" --local-listen 127.0.0.1:0 --admin "127.0.0.1:$SKIFF_ADM" \
        --health-listen off --termination-drain-duration 0s "${serve[@]}"
    STOP_TIMEOUT[$SKIFF_PID]=60
    wait_listen "$SKIFF_ADM" "$SKIFF_PID" 120 || die "skiff serve did not listen under valgrind (see $LOGS/$SKIFF_TAG-serve.log)"
    skiff_wait_data 100
}

# skiff_wait_data TRIES: until serve has written the files the CLI reads
# (server.json, token) into SKIFF_DATA, TRIES times 0.1 s at most.
skiff_wait_data() {
    local i
    for ((i = 0; i < $1; i++)); do
        [[ -s $SKIFF_DATA/server.json && -s $SKIFF_DATA/token ]] && break
        sleep 0.1
    done
}

skiff_cli() { "$SKIFF_BIN" --data-dir "$SKIFF_DATA" "$@"; }

# skiff_apply FILE: `skiff apply -f FILE`.
skiff_apply() {
    skiff_cli apply -f "$1" >>"$LOGS/skiff-cli.log" 2>&1 && return 0
    FAIL_REASON="skiff apply failed (see logs/skiff-cli.log)"
    return 1
}

# ksvc_column NAME COLUMN: the COLUMN (READY, LATESTREADY, ...) of ksvc NAME
# in `skiff get ksvc NAME`.
ksvc_column() {
    skiff_cli get ksvc "$1" 2>>"$LOGS/skiff-cli.log" | awk -v name="$1" -v col="$2" '
        NR == 1 { p = match($0, "(^| )" col "( |$)"); if (p && substr($0, p, 1) == " ") p++; next }
        $1 == name && p { split(substr($0, p), a, " "); print a[1] }'
}

# skiff_wait_ready NAME [REVISION]: until ksvc NAME is READY True (and its
# latest ready revision is REVISION), for up to 120 s.
skiff_wait_ready() {
    local name=$1 rev=${2:-} ready='' latest='' i
    for ((i = 0; i < 240; i++)); do
        ready=$(ksvc_column "$name" READY) || true
        [[ -n $rev ]] && { latest=$(ksvc_column "$name" LATESTREADY) || true; }
        [[ $ready == True && $latest == "$rev" ]] && break
        alive "$SKIFF_PID" || break
        sleep 0.5
    done
    skiff_cli get ksvc "$name" >>"$LOGS/skiff-cli.log" 2>&1 || true
    [[ $ready == True && $latest == "$rev" ]] && return 0
    if [[ -n $rev ]]; then
        FAIL_REASON="ksvc $name not READY True at revision $rev within 120 s (READY='$ready', LATESTREADY='$latest'; see logs/skiff-*.log)"
    else
        FAIL_REASON="ksvc $name not READY True within 120 s (READY='$ready'; see logs/skiff-*.log)"
    fi
    return 1
}

# skiff_deploy_profiled_routes: on the running Skiff, the two routes the
# layout tools profile (hot-text.sh, bolt.sh): run.sh's plain Knative route
# (hello) and policy.sh's VirtualService route (ab.example.com); sets URL
# once both answer. Dies on failure.
skiff_deploy_profiled_routes() {
    skiff_apply "$HERE/hello-ksvc.yaml" || die "$FAIL_REASON"
    skiff_wait_ready hello || die "$FAIL_REASON"
    skiff_apply "$HERE/ab-ksvc-v1.yaml" || die "$FAIL_REASON"
    skiff_wait_ready ab ab-00001 || die "$FAIL_REASON"
    skiff_apply "$HERE/ab-policy.yaml" || die "$FAIL_REASON"
    skiff_wait_ready ab ab-00002 || die "$FAIL_REASON"
    URL=http://127.0.0.1:$SKIFF_GW/
    check_hello skiff "$URL" "Hello World!" || die "$FAIL_REASON"
    HOST_HEADER=ab.example.com check_hello skiff-policy "$URL" "Hello v1!" || die "$FAIL_REASON"
}

# skiff_stop: stop Skiff (it stops its instances), keeping the instance logs.
skiff_stop() {
    stop_pid "$SKIFF_PID"
    [[ -d $SKIFF_DATA/logs ]] && cp -r "$SKIFF_DATA/logs" "$LOGS/$SKIFF_TAG-instances" 2>/dev/null
    return 0
}
