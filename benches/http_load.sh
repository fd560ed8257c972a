#!/usr/bin/env bash
# Load benchmark of the HTTP API (not a test): requests per second and p50/p99 latency for a
# cached 1 KiB secret at 1, 16 and 64 concurrent keep-alive connections, measured with wrk
# (Debian's package; installed here if missing). Prints a markdown table for the README.
#   benches/http_load.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"

if ! command -v wrk >/dev/null; then
    echo "http_load: installing wrk" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
# SECRETSFS_BIN: measure a binary built already (skips the release build).
bin="${SECRETSFS_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --quiet
    bin=target/release/secretsfs
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

value=$(head -c 768 /dev/urandom | base64 -w0 | head -c 1024)
cat > "$work/secrets.json" <<JSON
{"Secrets": [{"Name": "bench/one-kib", "Versions": [{"VersionId": "00000000-0000-4000-8000-000000000001",
  "VersionStages": ["AWSCURRENT"], "SecretString": "$value"}]}]}
JSON
token=$(head -c 24 /dev/urandom | base64 -w0)
AWS_TOKEN="$token" "$bin" --source "file:$work/secrets.json" --log-level error \
    serve --http-port 0 > "$work/out" &
server_pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/out")/v1/bench/one-kib
curl -sf -H "X-Aws-Parameters-Secrets-Token: $token" "$url" > /dev/null

echo "| connections | requests/s | p50 | p99 |"
echo "| --- | --- | --- | --- |"
for connections in 1 16 64; do
    threads=$(( connections < 2 ? 1 : 2 ))
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency \
        -H "X-Aws-Parameters-Secrets-Token: $token" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "| $connections | $rps | $p50 | $p99 |"
done
