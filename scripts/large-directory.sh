#!/usr/bin/env bash
# Figures for large directories and memory, printed for docs/performance.md ("Large
# directories and memory"):
#   1. `ls -l` of one directory of 2500 secrets in moto: upstream calls and time;
#   2. `ls -l` of one directory of 5000 secrets from the file source: time;
#   3. RSS of the daemon with 10,000 secrets cached (file source, all read once).
# Needs root (it mounts) and the moto venv that scripts/test.sh installs under target/.
#   scripts/large-directory.sh [BINARY]    (default target/release/secretsfs)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/secretsfs}")
venv=target/moto-venv
[[ -x $venv/bin/moto_server ]] || { echo "run scripts/test.sh once: it installs moto" >&2; exit 1; }

work=$(mktemp -d)
pids=()
mounts=()
cleanup() {
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

# The daemon's pid, from its own "mounted" log line.
daemon_pid() { grep -o 'pid=[0-9]*' "$1" | tail -1 | cut -d= -f2; }

# Mounts with ARGS at $work/NAME and prints nothing; the log is $work/NAME.log.
mount_at() {
    local name=$1; shift
    mkdir -p "$work/$name"
    "$bin" "$@" --log-level info mount "$work/$name" --no-http --log-file "$work/$name.log"
    mounts+=("$work/$name")
    pids+=("$(daemon_pid "$work/$name.log")")
}

# Seconds taken by `ls -l DIR` (wall clock), and the number of entries it printed.
time_ls() {
    local started ended count
    started=$(date +%s.%N)
    count=$(ls -l "$1" | grep -c '^-')
    ended=$(date +%s.%N)
    printf '%s %s\n' "$(echo "$ended - $started" | bc)" "$count"
}

# --- 1. moto, 2500 secrets in one directory ---------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto-server.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
"$venv/bin/python" - "$port" <<'EOF'
import sys, boto3
sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}")
for i in range(2500):
    sm.create_secret(Name=f"big/s{i:04}", SecretString=f"value-{i:04}")
EOF
mount_at moto --source aws --endpoint-url "http://127.0.0.1:$port"
read -r seconds count < <(time_ls "$work/moto/big")
umount "$work/moto"
sleep 1
stats=$(grep -o 'stats={.*}' "$work/moto.log" | tail -1 || true)
echo "moto, ls -l of 2500 secrets in one directory: $count files in ${seconds}s"
echo "  upstream calls (from the daemon's final stats): ${stats#stats=}"

# --- 2. file source, 5000 secrets in one directory ---------------------------------------
python3 - "$work/5000.json" 5000 big <<'EOF'
import json, sys
path, n, dir_ = sys.argv[1], int(sys.argv[2]), sys.argv[3]
secrets = [{"Name": f"{dir_}/s{i:05}", "Versions": [{"VersionId": f"00000000-0000-4000-8000-{i:012}",
            "VersionStages": ["AWSCURRENT"], "SecretString": f"value-{i:05}",
            "CreatedDate": "2026-11-30T12:00:00Z"}]} for i in range(n)]
json.dump({"Secrets": secrets}, open(path, "w"))
EOF
mount_at file5000 --source "file:$work/5000.json"
read -r seconds count < <(time_ls "$work/file5000/big")
echo "file source, ls -l of 5000 secrets in one directory: $count files in ${seconds}s"

# --- 3. RSS with 10,000 secrets cached ---------------------------------------------------
python3 - "$work/10000.json" 10000 many <<'EOF'
import json, sys
path, n, dir_ = sys.argv[1], int(sys.argv[2]), sys.argv[3]
secrets = [{"Name": f"{dir_}/d{i % 10}/s{i:05}", "Versions": [{"VersionId": f"00000000-0000-4000-8000-{i:012}",
            "VersionStages": ["AWSCURRENT"], "SecretString": "x" * 100,
            "CreatedDate": "2026-11-30T12:00:00Z"}]} for i in range(n)]
json.dump({"Secrets": secrets}, open(path, "w"))
EOF
mount_at file10000 --source "file:$work/10000.json" --cache-size 20000
pid=${pids[-1]}
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
find "$work/file10000/many" -type f -exec cat {} + >/dev/null
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
echo "RSS of the daemon: ${rss_before} KiB mounted, ${rss_after} KiB with 10,000 secrets (100 bytes each) cached and read"
