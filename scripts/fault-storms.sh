#!/usr/bin/env bash
# Fault storms at the sizes issue 14 names, against the fake Secrets Manager, and the figures
# for docs/reliability.md ("Fault storms"): a 30 s throttling storm over 20 secrets and
# its recovery; 12 secrets at 10 s a call read at once through a mount (more than its FUSE
# threads) while other reads go on; connections reset and answers cut short; 100,000 secrets
# read once each through a cache of 1,000, over the HTTP API and through the mount, with the
# daemon's VmRSS and VmHWM; 900 idle connections over max_conn; oversized requests. The test
# suite runs the same tests shorter (tests/it/storms, tests/it/http); each asserts its bounds
# at both sizes. Needs root (it mounts). Takes about 15 minutes on a 2-core machine.
#   scripts/fault-storms.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SECRETSFS_STORMS=full
cargo test --features memory-source --test it -- --include-ignored --nocapture --test-threads 1 \
    storms:: http::connections::nine_hundred http::oversized 2>&1 |
    grep -oE 'storm figure: .*|^test .* (ok|FAILED)$|^test result.*|panicked.*'
