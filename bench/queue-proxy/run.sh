#!/usr/bin/env bash
# Per-request cost of the queue-proxy layer (slot + request statistics) and
# of the activator's accounting, against the bookkeeping the gateway did
# before them, measured in the same run (1 and 2 threads).
#
#   bench/queue-proxy/run.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
cargo run --release -q -p skiff-proxy --example layer_cost
