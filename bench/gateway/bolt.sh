#!/usr/bin/env bash
# The optimized release binary: Skiff's release build, re-laid out by BOLT
# (LLVM's post-link optimizer) after a profile of the gateway at work.
#
#   bench/gateway/bolt.sh            # about 2 minutes plus the build
#
# cargo cannot give rustc a profile of this workload, so the code LLVM lays
# out keeps the rare paths of every function among the common ones, and a
# proxied request runs through far more instruction-cache lines than it
# uses. BOLT moves the blocks and functions a request runs next to each
# other and the rest aside, from a profile it records itself:
#
# 1. instrument the release binary (llvm-bolt -instrument);
# 2. run it: `skiff serve` with the plain Knative route of run.sh and the
#    VirtualService route of policy.sh, each under wrk (-t2 -c16);
# 3. lay out the release binary again from the serve process's profile.
#
# The release binary must keep its relocations (ld --emit-relocs), which
# crates/skiff/build.rs asks for in release builds on Linux. llvm-bolt and
# its instrumentation runtime come from Debian's bolt-19 and libbolt-19-dev
# (installed with apt-get when no llvm-bolt is found).
#
# Environment:
#   SKIFF_BIN  the binary to optimize (default: `cargo build --release -p skiff`)
#   BOLT_OUT   where to write the result (default: SKIFF_BIN-bolt, e.g.
#              target/release/skiff-bolt)
#   DURATION   length of each profiled wrk run (default 5s)
#   OUT_DIR    where to save the profile (profile.fdata) and the logs
#              (default bench/out/bolt-<timestamp>)
# shellcheck disable=SC2317 # functions run from traps
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
ROOT=$(dirname "$BENCH")

DURATION=${DURATION:-5s}
WARMUP=1s
RUNS=1
HOST_HEADER=hello.default.127.0.0.1.sslip.io
OUT=${OUT_DIR:-$BENCH/out/bolt-$(date +%Y%m%d-%H%M%S)}
LOGS=$OUT/logs
BOLT_PACKAGES=(bolt-19 libbolt-19-dev)
unset TARGET HELLO_THREADS HOST PORT SKIFF_SERVER SKIFF_DATA_DIR

# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $DURATION =~ ^[1-9][0-9]*(s|m|h)?$ ]] || die "DURATION must look like 5s, 1m (wrk's -d), not '$DURATION'"

# find_bolt: LLVM_BOLT, the newest /usr/lib/llvm-N/bin/llvm-bolt whose
# instrumentation runtime is installed next to it (llvm-bolt looks for it in
# ../lib of the path it was started by, so not through /usr/bin's links).
find_bolt() {
    local b
    LLVM_BOLT=
    for b in $(printf '%s\n' /usr/lib/llvm-*/bin/llvm-bolt | sort -V); do
        [[ -x $b && -f $(dirname "$(dirname "$b")")/lib/libbolt_rt_instr.a ]] && LLVM_BOLT=$b
    done
    [[ -n $LLVM_BOLT ]]
}

mkdir -p "$LOGS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/skiff-bolt.XXXXXX")

if ! find_bolt; then
    log "installing ${BOLT_PACKAGES[*]} with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${BOLT_PACKAGES[@]}" >"$LOGS/apt.log" 2>&1 || {
        as_root apt-get update >>"$LOGS/apt.log" 2>&1
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${BOLT_PACKAGES[@]}" >>"$LOGS/apt.log" 2>&1
    } || die "could not install ${BOLT_PACKAGES[*]} (see $LOGS/apt.log)"
    find_bolt || die "no llvm-bolt with its instrumentation runtime after installing ${BOLT_PACKAGES[*]}"
fi
install_apt_peers wrk
WRK=$(find_tool wrk) || die "wrk is not installed"
resolve_skiff_bin
RELEASE_BIN=$(realpath "$SKIFF_BIN")
BOLT_OUT=${BOLT_OUT:-$RELEASE_BIN-bolt}
[[ $(readelf -S -W "$RELEASE_BIN") == *" .rela.text "* ]] ||
    die "$RELEASE_BIN has no relocations for BOLT: build it with crates/skiff/build.rs's --emit-relocs (cargo build --release on Linux)"

log "instrumenting $RELEASE_BIN with $LLVM_BOLT"
PROFILE=$OUT/profile.fdata
"$LLVM_BOLT" "$RELEASE_BIN" -instrument -o "$TMP/skiff-instrumented" \
    --instrumentation-file="$PROFILE" --instrumentation-file-append-pid \
    >"$LOGS/instrument.log" 2>&1 || die "llvm-bolt -instrument failed (see $LOGS/instrument.log)"

# The profile: serve writes it when it exits, into PROFILE.<pid>.fdata (its
# instances, the same binary, write theirs too; they are dropped).
SKIFF_BIN=$TMP/skiff-instrumented
skiff_start --health-listen off --termination-drain-duration 0s || die "$FAIL_REASON"
skiff_deploy_profiled_routes
log "profiling: wrk -t2 -c16 -d$DURATION on each route"
wrk_run "$OUT/wrk.txt" -t2 -c16 -d"$DURATION" "$URL" || die "$FAIL_REASON"
HOST_HEADER=ab.example.com wrk_run "$OUT/wrk-policy.txt" -t2 -c16 -d"$DURATION" "$URL" || die "$FAIL_REASON"
SERVE_PID=$SKIFF_PID
skiff_stop
[[ -s $PROFILE.$SERVE_PID.fdata ]] || die "skiff serve wrote no profile ($PROFILE.$SERVE_PID.fdata)"
mv "$PROFILE.$SERVE_PID.fdata" "$TMP/profile.fdata"
rm -f "$PROFILE".*.fdata
mv "$TMP/profile.fdata" "$PROFILE"

log "optimizing"
"$LLVM_BOLT" "$RELEASE_BIN" -o "$TMP/skiff-bolt" -data="$PROFILE" \
    -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold -split-eh \
    -icf=1 -use-gnu-stack -update-debug-sections -dyno-stats \
    >"$LOGS/optimize.log" 2>&1 || die "llvm-bolt failed (see $LOGS/optimize.log)"
"$TMP/skiff-bolt" --version >/dev/null || die "the optimized binary does not run"
mv "$TMP/skiff-bolt" "$BOLT_OUT"
log "wrote $BOLT_OUT ($(grep -m1 -o '[0-9]* out of [0-9]* functions in the binary ([0-9.]*%) have non-empty execution profile' "$LOGS/optimize.log" || echo 'see logs/optimize.log'))"
