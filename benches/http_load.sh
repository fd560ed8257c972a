#!/usr/bin/env bash
# Load benchmark of the HTTP API (not a test): requests per second, p50/p99 latency and the
# server's CPU time per request for a cached 1 KiB secret at 1, 16 and 64 concurrent
# keep-alive connections, measured with wrk (Debian's package; installed here if missing).
# Prints a markdown table for docs/performance.md ("The HTTP API").
#   benches/http_load.sh [SECONDS]
# AGENT_BIN=/path/to/aws_secretsmanager_agent: also measures the AWS Secrets Manager Agent,
# side by side in the same run, both reading the same secret from a local moto (the agent has
# no file source). Build the agent from its public source yourself (`git archive` a tag,
# `cargo build --release -p aws_secretsmanager_agent`); this script never fetches or builds it.
# MOTO_SERVER: the moto_server to use with AGENT_BIN (default: the one scripts/test.sh installs
# under target/moto-venv).
# SECRETSFS_BIN: measure a binary built already (skips the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
agent="${AGENT_BIN:-}"

if ! command -v wrk >/dev/null; then
    echo "http_load: installing wrk" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
bin="${SECRETSFS_BIN:-}"
if [[ -z "$bin" ]]; then
    cargo build --release --quiet
    bin=target/release/secretsfs
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for_port() {
    for _ in $(seq 200); do
        (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "http_load: nothing listens on port $1" >&2
    exit 1
}
# User and system CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

value=$(head -c 768 /dev/urandom | base64 -w0 | head -c 1024)
token=$(head -c 24 /dev/urandom | base64 -w0)
export AWS_TOKEN="$token" AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true
secretsfs_port=$(free_port)

if [[ -z "$agent" ]]; then
    cat > "$work/secrets.json" <<JSON
{"Secrets": [{"Name": "bench/one-kib", "Versions": [{"VersionId": "00000000-0000-4000-8000-000000000001",
  "VersionStages": ["AWSCURRENT"], "SecretString": "$value"}]}]}
JSON
    "$bin" --source "file:$work/secrets.json" --log-level error \
        serve --http-port "$secretsfs_port" > "$work/secretsfs.out" &
    secretsfs_pid=$!
    pids+=($!)
else
    moto="${MOTO_SERVER:-target/moto-venv/bin/moto_server}"
    [[ -x "$moto" ]] || { echo "http_load: no moto at $moto (run scripts/test.sh once, or set MOTO_SERVER)" >&2; exit 1; }
    moto_port=$(free_port)
    "$moto" -H 127.0.0.1 -p "$moto_port" > "$work/moto.log" 2>&1 &
    pids+=($!)
    wait_for_port "$moto_port"
    export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
    "$(dirname "$moto")/python" - "$value" <<'PY'
import sys, boto3
import os
client = boto3.client("secretsmanager", region_name="us-east-1",
                      endpoint_url=os.environ["AWS_ENDPOINT_URL"])
client.create_secret(Name="bench/one-kib", SecretString=sys.argv[1])
PY
    "$bin" --source aws --log-level error serve --http-port "$secretsfs_port" > "$work/secretsfs.out" &
    secretsfs_pid=$!
    pids+=($!)
    agent_port=$(free_port)
    printf 'http_port = %s\nlog_level = "ERROR"\n' "$agent_port" > "$work/agent.toml"
    (cd "$work" && exec "$agent" --config "$work/agent.toml") > "$work/agent.out" 2>&1 &
    pids+=($!)
    agent_pid=$!
    wait_for_port "$agent_port"
fi
wait_for_port "$secretsfs_port"

header="X-Aws-Parameters-Secrets-Token: $token"
ticks_per_second=$(getconf CLK_TCK)

# One wrk run against a server: prints a table row. The server's CPU time is split into user
# and system (the kernel's TCP work on its side of loopback), and wrk's own CPU time per
# request is given too: on a machine where wrk shares the cores, the two together bound the
# requests per second any server can reach.
measure() {
    local name=$1 pid=$2 url=$3 connections=$4
    curl -sf -H "$header" "$url" > /dev/null
    local threads=$(( connections < 2 ? 1 : 2 ))
    local before after out client
    read -r -a before < <(cpu_ticks "$pid")
    client=$( { TIMEFORMAT='%U %S'; time wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency \
        -H "$header" "$url" > "$work/wrk.out"; } 2>&1 )
    out=$(cat "$work/wrk.out")
    read -r -a after < <(cpu_ticks "$pid")
    local requests rps p50 p99 server
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    server=$(awk -v u=$((after[0] - before[0])) -v s=$((after[1] - before[1])) \
        -v hz="$ticks_per_second" -v n="$requests" \
        'BEGIN { printf "%.1f us (%.1f user + %.1f system)", (u + s) / hz / n * 1e6, u / hz / n * 1e6, s / hz / n * 1e6 }')
    local wrk_cpu
    wrk_cpu=$(awk -v n="$requests" '{ printf "%.1f us", ($1 + $2) / n * 1e6 }' <<<"$client")
    echo "| $name | $connections | $rps | $p50 | $p99 | $server | $wrk_cpu |"
}

echo "| server | connections | requests/s | p50 | p99 | server CPU per request | wrk CPU per request |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for connections in 1 16 64; do
    measure secretsfs "$secretsfs_pid" "http://127.0.0.1:$secretsfs_port/v1/bench/one-kib" "$connections"
    if [[ -n "$agent" ]]; then
        measure agent "$agent_pid" "http://127.0.0.1:$agent_port/v1/bench/one-kib" "$connections"
    fi
done
