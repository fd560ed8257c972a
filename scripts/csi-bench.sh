#!/usr/bin/env bash
# Upstream calls of one node's CSI provider for an hour (tests/it/csi/bench.rs), beside the
# AWS provider's, printed for docs/kubernetes-csi.md ("What it costs"). Runs against moto
# (installed by scripts/test.sh) in simulated time: SECRETSFS_CSI_BENCH_SCALE (default 100)
# times faster, about 80 s on a 2-core machine.
#   scripts/csi-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test.sh --test it -- --ignored --exact csi::bench::upstream_calls_of_one_node_for_an_hour \
    --nocapture 2>&1 | grep -E '^csi-bench:|test result|panicked|assert' | sed 's/^csi-bench: //'
