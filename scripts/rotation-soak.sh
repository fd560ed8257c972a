#!/usr/bin/env bash
# The rotation soak at length: readers of several kinds read a secret while it rotates every
# 0.4 s (lengths changing, and same-length edits that keep the version id and the second),
# in both read paths, and each path prints reads, torn reads (not exactly one version: any is
# a failure), and how stale the stale reads were (max and mean, TTL 1 s). The test suite runs
# the same soak for 15 s.
#   scripts/rotation-soak.sh [SECONDS]    (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
export SECRETSFS_SOAK_SECONDS="${1:-60}"
cargo test --test it rotation_soak -- --nocapture --test-threads 1 2>&1 |
    grep -oE 'rotation soak \(.*|^test result.*|panicked.*'
