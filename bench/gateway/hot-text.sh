#!/usr/bin/env bash
# Regenerate crates/skiff/hot-text.ld, the layout of the gateway's hot code:
# records which functions Skiff's release binary runs per proxied request
# (valgrind's callgrind, while wrk sends requests through the plain Knative
# route of run.sh and the VirtualService route of policy.sh), and writes them
# out with bench/gateway/hot_text.py. Then rebuild
# (`cargo build --release -p skiff`) and compare with run.sh.
#
#   bench/gateway/hot-text.sh            # about 2 minutes plus the build
#
# Regenerate when `hot_text.py check` (run.sh prints it) finds entries that
# name no function any more: after a toolchain or dependency update, or a
# change to the request path. An entry that names nothing costs nothing; its
# function is only laid out with the rest.
#
# Environment:
#   DURATION   length of each measured wrk run (default 5s)
#   SKIFF_BIN  use this skiff binary instead of `cargo build --release -p skiff`
#   OUT_DIR    where to save the profiles (default bench/out/hot-text-<timestamp>)
# shellcheck disable=SC2317 # functions run from traps
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$HERE")
ROOT=$(dirname "$BENCH")

DURATION=${DURATION:-5s}
WARMUP=2s
RUNS=1
HOST_HEADER=hello.default.127.0.0.1.sslip.io
OUT=${OUT_DIR:-$BENCH/out/hot-text-$(date +%Y%m%d-%H%M%S)}
LOGS=$OUT/logs
LD=$ROOT/crates/skiff/hot-text.ld
unset TARGET HELLO_THREADS HOST PORT SKIFF_SERVER SKIFF_DATA_DIR

# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $DURATION =~ ^[1-9][0-9]*(s|m|h)?$ ]] || die "DURATION must look like 5s, 1m (wrk's -d), not '$DURATION'"

mkdir -p "$LOGS"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/skiff-hot-text.XXXXXX")

find_peers
install_valgrind
resolve_skiff_bin
SKIFF_BIN=$(realpath "$SKIFF_BIN")

# Mangled names: the linker script names sections by them.
skiff_start_callgrind "$OUT/skiff.callgrind.%p" --demangle=no
skiff_deploy_profiled_routes

wrk_run "$OUT/warmup.txt" -t1 -c4 -d"$WARMUP" "$URL" || die "$FAIL_REASON"
HOST_HEADER=ab.example.com wrk_run "$OUT/warmup-policy.txt" -t1 -c4 -d"$WARMUP" "$URL" || die "$FAIL_REASON"
callgrind_control -z "$SKIFF_PID" >/dev/null 2>&1
wrk_run "$OUT/wrk.txt" -t1 -c4 -d"$DURATION" "$URL" || die "$FAIL_REASON"
HOST_HEADER=ab.example.com wrk_run "$OUT/wrk-policy.txt" -t1 -c4 -d"$DURATION" "$URL" || die "$FAIL_REASON"
callgrind_control -d "$SKIFF_PID" >/dev/null 2>&1
N=$(($(wrk_requests "$OUT/wrk.txt") + $(wrk_requests "$OUT/wrk-policy.txt")))
((N > 0)) || die "wrk completed no requests (see $OUT)"
skiff_stop

# The dump after zeroing is the profile's part 1.
shopt -s nullglob
PROFILES=("$OUT"/skiff.callgrind."$SKIFF_PID".1*)
((${#PROFILES[@]} > 0)) || die "no profile (see $OUT)"
python3 "$HERE/hot_text.py" write "$SKIFF_BIN" "$N" "${PROFILES[@]}" >"$TMP/hot-text.ld" ||
    die "hot_text.py failed"
mv "$TMP/hot-text.ld" "$LD"
log "$N requests; wrote $LD ($(grep -c '^    \*(' "$LD") functions)"
log "rebuild with: cargo build --release -p skiff"
