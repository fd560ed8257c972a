#!/usr/bin/env bash
# Start-up of the Lambda extension (not a test): builds the release binary and runs
# benches/lambda_startup.py on it. Prints a markdown table for docs/lambda.md ("Start-up").
#   benches/lambda_startup.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SECRETSFS_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --quiet
    bin=target/release/secretsfs
fi
exec python3 benches/lambda_startup.py "$bin" "${1:-20}"
