#!/usr/bin/env bash
# shellcheck disable=SC2016  # single-quoted scripts run in the container take $1.., unexpanded here
# The systemd tier: secretsfs's package under a real systemd (Debian 12's, 252), booted in a
# container with systemd-nspawn. Run as root after the packages tier, which leaves the .deb in
# target/packages/ (or name one: SYSTEMD_TIER_DEB=path/to/secretsfs.deb). Needs debootstrap,
# systemd-nspawn (systemd-container), nsenter (util-linux), /dev/fuse and the Debian mirror
# apt is configured with.
#
#   1. A Debian rootfs (debootstrap --variant=minbase with systemd, dbus and fuse3), cached
#      outside the clone in /var/cache/secretsfs-tests/rootfs-SUITE-HASH-YYYYMMDD.tar (HASH:
#      of the debootstrap arguments) and reused for SYSTEMD_TIER_CACHE_DAYS (7) days; each run
#      unpacks a fresh copy under target/ and removes it at the end.
#   2. The .deb installed in it with dpkg inside the container (systemd-nspawn --pipe), the
#      conffile /etc/secretsfs/config.toml edited: the `file` source, a short TTL, a policy
#      rule and four change hooks; helper units for the hooks and a LoadCredential= consumer.
#   3. Boot (systemd-nspawn --boot --private-network --bind=/dev/fuse); the container's PID 1
#      is driven with nsenter.
#   4. Each step runs with a reader loop inside the container (cat of two files of the mount,
#      a listing), and must give zero read errors and no wrong value: start, restart (the
#      mount taken over from the file descriptor store: same mount id, same inode numbers),
#      kill -9 (Restart=on-failure), SIGHUP, a rotation (readers see it within the TTL; the
#      hooks fire: exec as another user, signal by pid_file, signal to a unit, reload), an
#      upgrade with dpkg (the old process runs on until `systemctl restart`), stop (no mount
#      left), LoadCredential= from the mount in a unit ordered after secretsfs.service, and
#      systemd-analyze security (printed).
#
# One line per check; ends with "systemd-tier: N passed", or exits 1 with a line saying what
# failed (the container's journal for secretsfs before it).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

say() { printf 'systemd-tier: %s\n' "$*"; }
passed=0
ok() {
    passed=$((passed + 1))
    say "ok: $*"
}

# The host's own suite: the package links against the host's libraries.
# shellcheck disable=SC1091  # the host's, read as it is
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
includes=systemd,systemd-sysv,dbus,fuse3
cache_dir=${SYSTEMD_TIER_CACHE_DIR:-/var/cache/secretsfs-tests}
cache_days=${SYSTEMD_TIER_CACHE_DAYS:-7}
ttl=3 # the config's ttl: how soon a rotation must show
tier_start=$SECONDS

# --- state the EXIT trap cleans up -----------------------------------------------------------
work=""
build_dir=""
nspawn_pid=""
pid1=""
declare -A reader_pids=()

# The mounts left under DIR in the host's namespace (deepest first).
mounts_under() {
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

# Unmounts what is left under DIR, then removes DIR, never crossing into another file system
# (a bind of a host directory left behind would otherwise be emptied).
remove_tree() {
    local dir=$1 m
    [[ -n "$dir" && -d "$dir" ]] || return 0
    for m in $(mounts_under "$dir"); do umount "$m" 2>/dev/null || umount -l "$m" || true; done
    if [[ -n "$(mounts_under "$dir")" ]]; then
        say "warning: mounts are left under $dir; not removing it" >&2
        return 0
    fi
    rm -rf --one-file-system "$dir"
}

cleanup() {
    local status=$? name pid i t
    set +e
    for name in "${!reader_pids[@]}"; do
        pid=${reader_pids[$name]}
        kill "$pid" 2>/dev/null
    done
    if [[ -n "$nspawn_pid" ]] && kill -0 "$nspawn_pid" 2>/dev/null; then
        t=$SECONDS
        if [[ -n "$pid1" ]]; then
            timeout 10 nsenter -t "$pid1" -a sh -c 'touch /run/tier/all.stop' >/dev/null 2>&1
            timeout 20 nsenter -t "$pid1" -a systemctl poweroff --no-block >/dev/null 2>&1
        fi
        for ((i = 0; i < 300; i++)); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            say "cleanup: the container did not power off within $((SECONDS - t)) s; killing systemd-nspawn" >&2
            # nspawn asks the container's init to halt on SIGTERM; SIGKILL ends the container.
            kill -TERM "$nspawn_pid" 2>/dev/null
            for ((i = 0; i < 100; i++)); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$nspawn_pid" 2>/dev/null
        fi
        wait "$nspawn_pid" 2>/dev/null
    fi
    for name in "${!reader_pids[@]}"; do
        pid=${reader_pids[$name]}
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    remove_tree "$build_dir"
    remove_tree "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'printf "systemd-tier: FAILED: interrupted (SIGINT)\n" >&2; exit 130' INT
trap 'printf "systemd-tier: FAILED: interrupted (SIGTERM)\n" >&2; exit 143' TERM

# --- failure -----------------------------------------------------------------------------------
# fail WHAT: the container's secretsfs journal (when it is up), then one line, and exit 1.
fail() {
    if [[ -n "$pid1" ]] && [[ -d "/proc/$pid1" ]]; then
        {
            echo "--- journalctl -u secretsfs (last 40 lines) ---"
            timeout 20 nsenter -t "$pid1" -a journalctl -u secretsfs -u secretsfs-token \
                --no-pager -n 40 -o short-monotonic 2>&1
            echo "---"
        } | sed 's/^/    /' >&2
    fi
    printf 'systemd-tier: FAILED: %s\n' "$*" >&2
    exit 1
}

[[ "$(id -u)" -eq 0 ]] || fail "must run as root (debootstrap, systemd-nspawn, nsenter)"
# From Debian when missing (a fresh machine): debootstrap, and systemd-nspawn.
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing ${missing[*]} from Debian (apt-get)"
    command -v apt-get >/dev/null || fail "${missing[*]} missing and no apt-get to install them"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        >/dev/null 2>&1 || fail "apt-get install ${missing[*]} failed"
fi
for tool in debootstrap systemd-nspawn nsenter tar dpkg-deb flock timeout sha256sum python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done
[[ -c /dev/fuse ]] || fail "/dev/fuse is missing"

# --- the package -------------------------------------------------------------------------------
# Where packaging/build-packages.sh leaves it: the target directory cargo uses.
target_dir=$repo_root/target
if command -v cargo >/dev/null && meta=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null); then
    target_dir=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' <<<"$meta")
fi
if [[ -n "${SYSTEMD_TIER_DEB:-}" ]]; then
    deb=$SYSTEMD_TIER_DEB
else
    debs=("$target_dir"/packages/*.deb)
    [[ ${#debs[@]} -eq 1 && -f "${debs[0]}" ]] ||
        fail "expected exactly one .deb in $target_dir/packages/ (run packaging/build-packages.sh), found: ${debs[*]}"
    deb=${debs[0]}
fi
[[ -f "$deb" ]] || fail "no package at $deb"
deb_version=$(dpkg-deb -f "$deb" Version)
say "package $(basename "$deb") (version $deb_version)"

# --- 1. the rootfs, cached -------------------------------------------------------------------
# The mirror apt uses for SUITE (deb822 .sources or one-line .list), else deb.debian.org.
debian_mirror() {
    local f uri=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri=$(awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^Types:/) types = $i
                    if ($i ~ /^URIs:/) uris = $i
                    if ($i ~ /^Suites:/) suites = $i
                }
                if (types !~ /(^|[ \t])deb([ \t]|$)/) next
                n = split(suites, s, /[ \t]+/)
                for (j = 2; j <= n; j++) if (s[j] == suite) { split(uris, u, /[ \t]+/); print u[2]; exit }
            }' "$f")
        [[ -z "$uri" ]] || break
    done
    if [[ -z "$uri" ]]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -f "$f" ]] || continue
            uri=$(awk -v suite="$suite" '$1 == "deb" {
                    i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ($(i + 1) == suite) { print $i; exit }
                }' "$f")
            [[ -z "$uri" ]] || break
        done
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

key=$(printf '%s\n' "minbase $suite $includes" | sha256sum | cut -c1-8)
cache_prefix="rootfs-$suite-$key-"

# The newest cached tar of this key, if younger than cache_days.
fresh_cache() {
    local newest
    newest=$(find "$cache_dir" -maxdepth 1 -name "${cache_prefix}*.tar" -mtime "-$cache_days" \
        2>/dev/null | sort | tail -n 1)
    [[ -n "$newest" ]] && printf '%s\n' "$newest"
}

mkdir -p "$cache_dir"
exec {cache_lock}>"$cache_dir/.lock"
flock "$cache_lock" # one build at a time; a second run waits and reuses it
if rootfs_tar=$(fresh_cache); then
    say "rootfs: cached $rootfs_tar"
else
    mirror=$(debian_mirror)
    say "rootfs: debootstrap --variant=minbase --include=$includes $suite from $mirror (no cache younger than $cache_days days in $cache_dir)"
    phase=$SECONDS
    build_dir=$(mktemp -d "$cache_dir/.build.XXXXXX")
    if ! debootstrap --variant=minbase --include="$includes" "$suite" "$build_dir/root" "$mirror" \
        >"$build_dir/debootstrap.log" 2>&1; then
        tail -n 20 "$build_dir/debootstrap.log" | sed 's/^/    /' >&2
        fail "debootstrap failed (log above)"
    fi
    # What only the build needed.
    rm -rf "$build_dir/root/var/cache/apt/archives/"*.deb "$build_dir/root/var/lib/apt/lists/"* \
        "$build_dir/root/var/log/bootstrap.log"
    [[ -z "$(mounts_under "$build_dir")" ]] || fail "debootstrap left mounts under $build_dir"
    rootfs_tar="$cache_dir/${cache_prefix}$(date +%Y%m%d).tar"
    tar --numeric-owner --xattrs -C "$build_dir/root" -cf "$build_dir/rootfs.tar" .
    mv -f "$build_dir/rootfs.tar" "$rootfs_tar"
    remove_tree "$build_dir"
    build_dir=""
    # Older tars of this suite are stale now.
    find "$cache_dir" -maxdepth 1 -name "rootfs-$suite-*.tar" ! -path "$rootfs_tar" -delete
    say "rootfs: built and cached $rootfs_tar in $((SECONDS - phase)) s ($(du -m "$rootfs_tar" | cut -f1) MiB)"
fi
flock -u "$cache_lock"
ok "rootfs $suite ready ($(basename "$rootfs_tar"))"

mkdir -p "$target_dir"
work=$(mktemp -d "$target_dir/systemd-tier.XXXXXX")
root=$work/root
mkdir "$root"
tar --numeric-owner --xattrs -C "$root" -xf "$rootfs_tar"
# The package, and an upgrade of it: the same files under a higher version (a rebuild would
# take the release build's minutes; what an upgrade does to the running unit is the same).
cp "$deb" "$root/var/tmp/secretsfs.deb"
(
    mkdir "$work/upgrade"
    dpkg-deb -R "$deb" "$work/upgrade/pkg"
    sed -i "s/^Version: .*/Version: ${deb_version}+tier1/" "$work/upgrade/pkg/DEBIAN/control"
    dpkg-deb -b -Zxz -z1 "$work/upgrade/pkg" "$root/var/tmp/secretsfs-upgrade.deb" >/dev/null
    rm -rf "$work/upgrade"
) || fail "cannot build the upgrade package"

# --- 2. install and configure, before the boot ---------------------------------------------
install -d -m 0755 "$root/usr/local/bin"
# The secrets: the demo file, and rotations of api-key (a new version, a new value).
rotated() { # N: the demo file with api-key at version N
    sed -e "s/demo-api-key-0123456789/demo-api-key-rotated-$1/" \
        -e "s/b1b2c3d4-0000-4000-8000-000000000001/b1b2c3d4-0000-4000-8000-00000000100$1/" \
        examples/demo-secrets.json
}
install -m 0600 examples/demo-secrets.json "$root/var/tmp/secrets.json"

cat >"$root/var/tmp/config.toml" <<EOF
# secretsfs systemd tier: the package's conffile, as an operator edits it (the source and the
# TTL come from a drop-in of the unit: secretsfs.service.d/tier.conf).
log_level = "info"
# Directories others may enter: the exec hook's user reads api-key (the rule below).
dir_mode = "0555"

# The exec hook's user reads api-key through the mount.
[[policy]]
path = "api-key"
owner = "root"
group = "hookuser"
mode = "0440"

[[hook]]
name = "tier-exec"
secrets = ["api-key"]
exec = ["/usr/local/bin/tier-exec-hook"]
user = "hookuser"
timeout = 20

[[hook]]
name = "tier-pidfile"
secrets = ["api-key"]
signal = "HUP"
pid_file = "/run/tier-pidfile/pid"

[[hook]]
name = "tier-unit"
secrets = ["api-key"]
signal = "USR1"
unit = "tier-sigunit.service"

[[hook]]
name = "tier-reload"
secrets = ["api-key"]
reload = "tier-reload.service"

# Watches a key that no rotation here changes: must never fire.
[[hook]]
name = "tier-quiet"
secrets = ["prod/db:password"]
exec = ["/bin/sh", "-c", "echo fired >> /var/lib/tierhook/quiet"]
EOF

# tier-reader NAME: reads through the mount until /run/tier/NAME.stop exists, then writes
# "LOOPS ERRORS WRONG LONGEST-LOOP-CS LAST-API-KEY-VALUE" to /run/tier/NAME.out (the longest
# loop in centiseconds, from /proc/uptime without a fork: how long a read waited); errors go
# to NAME.err.
cat >"$root/usr/local/bin/tier-reader" <<'EOF'
#!/bin/sh
name=$1
dir=/run/tier
n=0 err=0 bad=0 last= longest=0
: >"$dir/$name.err"
read -r up _ </proc/uptime
before=${up%.*}${up#*.}
touch "$dir/$name.started"
while [ ! -e "$dir/$name.stop" ] && [ ! -e "$dir/all.stop" ]; do
    if v=$(cat /secrets/api-key 2>>"$dir/$name.err"); then
        case $v in
        demo-api-key-*) last=$v ;;
        *) bad=$((bad + 1)); echo "api-key read as: $v" >>"$dir/$name.err" ;;
        esac
    else
        err=$((err + 1)); echo "cat /secrets/api-key failed" >>"$dir/$name.err"
    fi
    if v=$(cat /secrets/prod/db:password 2>>"$dir/$name.err"); then
        [ "$v" = "demo-Pa55:w/rd" ] || { bad=$((bad + 1)); echo "prod/db:password read as: $v" >>"$dir/$name.err"; }
    else
        err=$((err + 1)); echo "cat /secrets/prod/db:password failed" >>"$dir/$name.err"
    fi
    if ! ls /secrets/prod >/dev/null 2>>"$dir/$name.err"; then
        err=$((err + 1)); echo "ls /secrets/prod failed" >>"$dir/$name.err"
    fi
    n=$((n + 1))
    read -r up _ </proc/uptime
    now=${up%.*}${up#*.}
    [ $((now - before)) -le "$longest" ] || longest=$((now - before))
    before=$now
done
echo "$n $err $bad $longest $last" >"$dir/$name.out.tmp"
mv "$dir/$name.out.tmp" "$dir/$name.out"
EOF

# The exec hook: as hookuser, records who it ran as, what changed and the value it reads.
cat >"$root/usr/local/bin/tier-exec-hook" <<'EOF'
#!/bin/sh
set -e
out=/var/lib/tierhook/exec
{
    id -un
    echo "$SECRETSFS_HOOK $SECRETSFS_SECRET $SECRETSFS_NEW_VERSION"
    cat "$SECRETSFS_PATH"; echo
} >"$out.tmp"
mv "$out.tmp" "$out"
EOF

# A daemon that counts the signal SIG into FILE, and writes its pid to PIDFILE if given.
cat >"$root/usr/local/bin/tier-sigtarget" <<'EOF'
#!/bin/sh
sig=$1 file=$2 pidfile=${3:-}
trap 'echo "$sig" >>"$file"' "$sig"
[ -z "$pidfile" ] || echo $$ >"$pidfile"
while :; do
    sleep 1 &
    wait $! || true
done
EOF
chmod 0755 "$root/usr/local/bin/"tier-*

# The source and the cache's timing from a drop-in, as an operator configures the shipped
# unit without editing it (the environment outranks the config file).
mkdir -p "$root/etc/systemd/system/secretsfs.service.d"
cat >"$root/etc/systemd/system/secretsfs.service.d/tier.conf" <<EOF
[Service]
Environment=SECRETSFS_SOURCE=file:/etc/secretsfs/secrets.json
Environment=SECRETSFS_TTL=$ttl
Environment=SECRETSFS_TTL_JITTER=0
EOF

cat >"$root/etc/systemd/system/tier-pidfile.service" <<'EOF'
[Unit]
Description=tier: a daemon of another user, signalled through its pid file
[Service]
User=hookuser
RuntimeDirectory=tier-pidfile
ExecStart=/usr/local/bin/tier-sigtarget HUP /run/tier-pidfile/got /run/tier-pidfile/pid
EOF
cat >"$root/etc/systemd/system/tier-sigunit.service" <<'EOF'
[Unit]
Description=tier: a unit signalled with systemctl kill
[Service]
RuntimeDirectory=tier-sigunit
ExecStart=/usr/local/bin/tier-sigtarget USR1 /run/tier-sigunit/got
EOF
cat >"$root/etc/systemd/system/tier-reload.service" <<'EOF'
[Unit]
Description=tier: a unit reloaded with systemctl reload
[Service]
RuntimeDirectory=tier-reload
RuntimeDirectoryPreserve=yes
ExecStart=/bin/sleep infinity
ExecReload=/bin/sh -c 'echo reload >> /run/tier-reload/got'
EOF
# A unit handed a secret of the mount as a credential, ordered after the mount's unit.
cat >"$root/etc/systemd/system/tier-credential.service" <<'EOF'
[Unit]
Description=tier: LoadCredential= from /secrets
Requires=secretsfs.service
After=secretsfs.service
[Service]
Type=oneshot
RemainAfterExit=yes
LoadCredential=dbpass:/secrets/prod/db:password
ExecStart=/bin/sh -c 'cp "$CREDENTIALS_DIRECTORY/dbpass" /var/lib/tier-credential'
EOF

cat >"$root/var/tmp/setup.sh" <<'EOF'
set -eu
dpkg -i /var/tmp/secretsfs.deb >/var/tmp/dpkg-install.log 2>&1 || { cat /var/tmp/dpkg-install.log; exit 1; }
useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin hookuser
install -m 0600 /var/tmp/secrets.json /etc/secretsfs/secrets.json
install -m 0644 /var/tmp/config.toml /etc/secretsfs/config.toml
install -d -o hookuser -g hookuser -m 0755 /var/lib/tierhook
secretsfs check-config >/var/tmp/check-config.out 2>&1 || { cat /var/tmp/check-config.out; exit 1; }
for u in tier-pidfile tier-sigunit tier-reload; do
    ln -s "/etc/systemd/system/$u.service" "/etc/systemd/system/multi-user.target.wants/$u.service"
done
EOF
phase=$SECONDS
nspawn_common=(--register=no --keep-unit --quiet -D "$root" --private-network)
if ! out=$(timeout 120 systemd-nspawn "${nspawn_common[@]}" --pipe /bin/sh /var/tmp/setup.sh 2>&1); then
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    fail "installing the package in the container failed"
fi
ok "dpkg -i installed $(basename "$deb") in the container; check-config accepts the edited conffile ($((SECONDS - phase)) s)"

# --- 3. boot ---------------------------------------------------------------------------------
phase=$SECONDS
# No --property=DeviceAllow=: that needs a host systemd to ask for a scope.
systemd-nspawn "${nspawn_common[@]}" -M secretsfs-tier --boot --bind=/dev/fuse \
    --console=read-only </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!

# The container's PID 1: the child of nspawn whose pid in its own namespace is 1.
for ((i = 0; i < 200; i++)); do
    pid1=$(awk -v parent="$nspawn_pid" '
        FNR == 1 { pid = ""; ppid = "" }
        $1 == "Pid:" { pid = $2 }
        $1 == "PPid:" { ppid = $2 }
        $1 == "NSpid:" && ppid == parent && $NF == 1 { print pid; exit }' /proc/[0-9]*/status 2>/dev/null || true)
    [[ -z "$pid1" ]] || break
    kill -0 "$nspawn_pid" 2>/dev/null || { sed 's/^/    /' "$work/console.log" >&2; fail "systemd-nspawn exited during the boot"; }
    sleep 0.1
done
[[ -n "$pid1" ]] || fail "no PID 1 under systemd-nspawn (pid $nspawn_pid) after 20 s"

# cexec COMMAND...: runs COMMAND in the container (all its namespaces, its root), with a clean
# environment and a deadline.
cexec() {
    timeout -k 5 "${CEXEC_TIMEOUT:-60}" nsenter -t "$pid1" -a \
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

# Until the boot is done (the first tries may come before systemd listens).
state=""
while ((SECONDS - phase < 90)); do
    state=$(CEXEC_TIMEOUT=60 cexec systemctl is-system-running --wait 2>/dev/null) && break
    case $state in running | degraded | maintenance | stopping) break ;; esac
    sleep 0.2
done
case $state in
running) ;;
degraded) say "the container's boot is degraded: $(cexec systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')" ;;
*) sed 's/^/    /' "$work/console.log" | tail -n 30 >&2; fail "the container did not boot (is-system-running: ${state:-nothing})" ;;
esac
ok "systemd $(cexec systemctl --version | awk 'NR == 1 { print $2 }') booted in the container in $((SECONDS - phase)) s (PID 1 is host pid $pid1, state $state)"

# --- helpers for the checks ------------------------------------------------------------------
prop() { cexec systemctl show -p "$1" --value "${2:-secretsfs.service}"; }
declare -A fdstore_at=()
fdstore() { # STEP: records NFileDescriptorStore in fdstore_at[STEP] (not in a subshell)
    fdstore_at[$1]=$(prop NFileDescriptorStore)
}
# The mounts at /secrets in the container, one "MOUNT-ID FSTYPE" line each.
secrets_mounts() {
    awk '$5 == "/secrets" { for (i = 7; $i != "-"; i++); print $1, $(i + 1) }' "/proc/$pid1/mountinfo"
}
# one_fuse_mount STEP: there is one mount at /secrets and it is FUSE; sets mount_now to its id.
one_fuse_mount() {
    local m
    m=$(secrets_mounts)
    [[ $(wc -l <<<"$m") -eq 1 && "$(cut -d' ' -f2 <<<"$m")" == fuse* ]] ||
        fail "$1: expected one FUSE mount at /secrets, /proc/$pid1/mountinfo has: ${m:-none}"
    mount_now=${m%% *}
}
journal_of_pid() { cexec journalctl --no-pager -o cat "_PID=$1"; }
wait_active_with_new_pid() { # OLD-PID SECONDS: prints the new MainPID once active
    local i pid
    for ((i = 0; i < $2 * 10; i++)); do
        pid=$(prop MainPID)
        if [[ "$pid" != 0 && "$pid" != "$1" && "$(prop ActiveState)" == active ]]; then
            printf '%s\n' "$pid"
            return 0
        fi
        sleep 0.1
    done
    return 1
}
# The HTTP API from inside the container, with the token: GET PATH, prints the response.
http_get() {
    cexec bash -c 'exec 3<>/dev/tcp/127.0.0.1/2773 &&
        printf "GET %s HTTP/1.1\r\nHost: localhost\r\nX-Aws-Parameters-Secrets-Token: %s\r\nConnection: close\r\n\r\n" \
            "$1" "$(cat /run/secretsfs/token)" >&3 && timeout 10 cat <&3' _ "$1"
}

cexec mkdir -p /run/tier
reader_start() { # NAME
    CEXEC_TIMEOUT=600 cexec /usr/local/bin/tier-reader "$1" >/dev/null 2>&1 &
    reader_pids[$1]=$!
    local i
    for ((i = 0; i < 100; i++)); do
        cexec test -e "/run/tier/$1.started" && return 0
        sleep 0.05
    done
    fail "reader $1 did not start"
}
# reader_stop NAME STEP: stops the reader, fails on any read error or wrong value; sets
# reader_reads and reader_last (the last api-key value it read).
reader_stop() {
    local name=$1 step=$2 i out
    cexec touch "/run/tier/$name.stop"
    for ((i = 0; i < 300; i++)); do kill -0 "${reader_pids[$name]}" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "${reader_pids[$name]}" 2>/dev/null; then
        fail "$step: the reader did not finish within 30 s of being told to (a read hangs?)"
    fi
    wait "${reader_pids[$name]}" || true
    unset "reader_pids[$name]"
    out=$(cexec cat "/run/tier/$name.out") || fail "$step: the reader left no result"
    read -r reader_reads reader_errors reader_wrong reader_longest reader_last <<<"$out"
    reader_longest=$((reader_longest * 10))
    if [[ "$reader_errors" != 0 || "$reader_wrong" != 0 ]]; then
        cexec head -n 10 "/run/tier/$name.err" | sed 's/^/    /' >&2
        fail "$step: $reader_errors read errors and $reader_wrong wrong values in $reader_reads reader loops"
    fi
    [[ "$reader_reads" -gt 0 ]] || fail "$step: the reader made no read at all"
}

# --- 4a. start -------------------------------------------------------------------------------
steps_start=$SECONDS
cexec systemctl start secretsfs.service || fail "a: systemctl start secretsfs failed"
[[ "$(prop ActiveState)" == active ]] || fail "a: secretsfs.service is $(prop ActiveState) after start"
# Right after start returns: READY=1 came after the mount answered.
v=$(cexec cat /secrets/api-key) || fail "a: cat /secrets/api-key failed right after systemctl start"
[[ "$v" == demo-api-key-0123456789 ]] || fail "a: /secrets/api-key reads '$v'"
[[ "$(cexec cat /secrets/tls/client.key | sha256sum)" == "$(base64 -d <<<'AAECc2VjcmV0c2ZzLWRlbW///g==' | sha256sum)" ]] ||
    fail "a: /secrets/tls/client.key is not the binary secret's bytes"
[[ "$(cexec cat '/secrets/prod/db:password')" == 'demo-Pa55:w/rd' ]] || fail "a: /secrets/prod/db:password is wrong"
one_fuse_mount a
mount_id=$mount_now
[[ "$(cexec stat -c '%U:%G %a' /secrets/api-key)" == "root:hookuser 440" ]] ||
    fail "a: the policy rule does not show on /secrets/api-key: $(cexec stat -c '%U:%G %a' /secrets/api-key)"
http=$(http_get /secretsmanager/get?secretId=api-key) || fail "a: the HTTP API did not answer"
grep -q '"SecretString":"demo-api-key-0123456789"' <<<"$http" ||
    fail "a: the HTTP API answered: $(head -c 300 <<<"$http")"
reader_start a
sleep 1
reader_stop a a
fdstore a
ok "a: systemctl start: active, /secrets has the demo bytes (string, binary, JSON key), policy applied, HTTP API answers; NFileDescriptorStore=${fdstore_at[a]}; reader: $reader_reads loops, 0 errors, longest loop $reader_longest ms"

# --- 4b. restart -----------------------------------------------------------------------------
old_pid=$(prop MainPID)
inode=$(cexec stat -c %i /secrets/api-key)
# A process holding a secret open across the restart reads it after.
CEXEC_TIMEOUT=120 cexec sh -c 'exec 3</secrets/api-key; touch /run/tier/hold.ready
    while [ ! -e /run/tier/hold.stop ]; do sleep 0.1; done
    cat <&3 >/run/tier/hold.out 2>/run/tier/hold.err; echo $? >/run/tier/hold.status' &
hold_pid=$!
reader_pids[hold]=$hold_pid
for ((i = 0; i < 50; i++)); do cexec test -e /run/tier/hold.ready && break; sleep 0.1; done
reader_start b
t=$(date +%s%N)
cexec systemctl restart secretsfs.service || fail "b: systemctl restart secretsfs failed"
restart_ms=$((($(date +%s%N) - t) / 1000000))
sleep 1
reader_stop b b
new_pid=$(prop MainPID)
[[ "$(prop ActiveState)" == active && "$new_pid" != "$old_pid" && "$new_pid" != 0 ]] ||
    fail "b: after restart: $(prop ActiveState), MainPID $old_pid -> $new_pid"
one_fuse_mount b
[[ "$mount_now" == "$mount_id" ]] || fail "b: the mount at /secrets is a new one (mount id $mount_id -> $mount_now)"
journal_of_pid "$new_pid" | grep -q "took over the mount" ||
    fail "b: the new process ($new_pid) did not log that it took the mount over"
[[ "$(cexec stat -c %i /secrets/api-key)" == "$inode" ]] || fail "b: the inode number of api-key changed"
cexec touch /run/tier/hold.stop
wait "$hold_pid" || true
unset "reader_pids[hold]"
[[ "$(cexec cat /run/tier/hold.status)" == 0 && "$(cexec cat /run/tier/hold.out)" == demo-api-key-0123456789 ]] ||
    fail "b: a file opened before the restart does not read after it: $(cexec cat /run/tier/hold.err)"
http_get /v1/api-key | grep -q demo-api-key-0123456789 || fail "b: the HTTP API does not answer after the restart"
fdstore b
# What the store handed the new process: systemd names them in its environment.
fdnames=$(cexec cat "/proc/$new_pid/environ" | tr '\0' '\n' | sed -n 's/^LISTEN_FDNAMES=//p')
[[ "${fdstore_at[a]}" == 3 && "${fdstore_at[b]}" == 3 &&
    "$(tr : '\n' <<<"$fdnames" | sort | paste -sd,)" == secretsfs-fuse,secretsfs-inodes-0,secretsfs-inodes-1 ]] ||
    fail "b: expected 3 stored descriptors (the FUSE connection, the inode journal's two memory files); NFileDescriptorStore: start ${fdstore_at[a]}, restart ${fdstore_at[b]}; LISTEN_FDNAMES=$fdnames"
ok "b: systemctl restart ($restart_ms ms): MainPID $old_pid -> $new_pid, the same mount (id $mount_id) taken over from the store (LISTEN_FDNAMES=$fdnames), same inode, a file open across it reads; NFileDescriptorStore=${fdstore_at[b]}; reader: $reader_reads loops, 0 errors, longest loop $reader_longest ms"

# --- 4c. kill -9 -----------------------------------------------------------------------------
old_pid=$new_pid
restarts=$(prop NRestarts)
reader_start c
cexec sh -c 'kill -9 "$1"' _ "$old_pid"
new_pid=$(wait_active_with_new_pid "$old_pid" 15) ||
    fail "c: no new process within 15 s of kill -9 $old_pid ($(prop ActiveState)/$(prop SubState))"
sleep 1
reader_stop c c
[[ "$(prop NRestarts)" == $((restarts + 1)) ]] || fail "c: NRestarts went $restarts -> $(prop NRestarts)"
one_fuse_mount c
[[ "$mount_now" == "$mount_id" ]] || fail "c: the mount at /secrets is a new one after kill -9 (mount id $mount_id -> $mount_now)"
journal_of_pid "$new_pid" | grep -q "took over the mount" || fail "c: the restarted process did not take the mount over"
fdstore c
ok "c: kill -9 $old_pid: Restart=on-failure started $new_pid, which took the mount over; NFileDescriptorStore=${fdstore_at[c]}; reader: $reader_reads loops, 0 errors, longest loop $reader_longest ms"

# --- 4d. reload (SIGHUP) ---------------------------------------------------------------------
old_pid=$new_pid
[[ -n "$(prop ExecReload)" ]] || fail "d: the unit has no ExecReload=: systemctl reload is refused"
reload=(systemctl reload secretsfs.service)
how="systemctl reload"
# A key SIGHUP applies: the mode of files no rule covers.
cexec sed -i 's/^log_level = "info"$/&\nfile_mode = "0400"/' /etc/secretsfs/config.toml
reader_start d
cexec "${reload[@]}" || fail "d: ${reload[*]} failed"
for ((i = 0; i < 50; i++)); do
    [[ "$(cexec stat -c %a /secrets/prod/cache/redis)" == 400 ]] && break
    sleep 0.1
done
sleep 0.5
reader_stop d d
[[ "$(cexec stat -c %a /secrets/prod/cache/redis)" == 400 ]] ||
    fail "d: file_mode 0400 did not take effect after SIGHUP (mode $(cexec stat -c %a /secrets/prod/cache/redis))"
[[ "$(prop ActiveState)" == active && "$(prop MainPID)" == "$old_pid" ]] ||
    fail "d: after SIGHUP: $(prop ActiveState), MainPID $old_pid -> $(prop MainPID)"
journal_of_pid "$old_pid" | grep -q "SIGHUP: configuration re-read" || fail "d: no 'SIGHUP: configuration re-read' in the journal"
fdstore d
ok "d: $how: still active, same MainPID, file_mode change applied; NFileDescriptorStore=${fdstore_at[d]}; reader: $reader_reads loops, 0 errors, longest loop $reader_longest ms"

# --- 4e/4g. rotation and change hooks --------------------------------------------------------
for f in /var/lib/tierhook/exec /var/lib/tierhook/quiet /run/tier-pidfile/got /run/tier-sigunit/got /run/tier-reload/got; do
    ! cexec test -e "$f" || fail "g: a hook fired before any rotation ($f exists)"
done
[[ "$(prop ActiveState tier-pidfile.service) $(prop ActiveState tier-sigunit.service) $(prop ActiveState tier-reload.service)" == "active active active" ]] ||
    fail "g: the hooks' target units are not all active"
# rotate N: writes version N of the secrets file in the container (a new file, renamed), then
# waits for the mount to show it; sets rotate_ms.
rotate() {
    local n=$1 t i
    rotated "$n" | cexec sh -c 'umask 077; cat >/etc/secretsfs/secrets.json.new &&
        mv -f /etc/secretsfs/secrets.json.new /etc/secretsfs/secrets.json'
    t=$(date +%s%N)
    for ((i = 0; i < (ttl + 5) * 20; i++)); do
        [[ "$(cexec cat /secrets/api-key)" == "demo-api-key-rotated-$n" ]] && break
        sleep 0.05
    done
    rotate_ms=$((($(date +%s%N) - t) / 1000000))
    [[ "$(cexec cat /secrets/api-key)" == "demo-api-key-rotated-$n" ]] ||
        fail "e: rotation $n not seen through the mount $((ttl + 5)) s after it"
    [[ $rotate_ms -le $((ttl * 1000 + 1000)) ]] ||
        fail "e: rotation $n seen after $rotate_ms ms, more than the TTL ($ttl s) + 1 s"
}
# wait_for_file PATH SECONDS PATTERN: until the file's contents match the glob PATTERN.
wait_for_file() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        # shellcheck disable=SC2053  # a glob, on purpose
        if cexec test -s "$1" && [[ "$(cexec cat "$1")" == $3 ]]; then return 0; fi
        sleep 0.1
    done
    return 1
}
reader_start e
rotate 1
hooks_t=$SECONDS
new_version=b1b2c3d4-0000-4000-8000-000000001001
exec_want=$'hookuser\ntier-exec api-key '"$new_version"$'\ndemo-api-key-rotated-1'
wait_for_file /var/lib/tierhook/exec 20 "$exec_want" ||
    fail "g: the exec hook (user=hookuser) did not run, or wrote: $(cexec cat /var/lib/tierhook/exec 2>&1 | tr '\n' '|')"
wait_for_file /run/tier-pidfile/got 10 HUP ||
    fail "g: the pid_file hook did not deliver SIGHUP to the hookuser daemon: $(cexec cat /run/tier-pidfile/got 2>&1)"
wait_for_file /run/tier-sigunit/got 10 'USR1*' ||
    fail "g: the unit hook did not deliver SIGUSR1 to tier-sigunit.service: $(cexec cat /run/tier-sigunit/got 2>&1)"
wait_for_file /run/tier-reload/got 10 reload ||
    fail "g: the reload hook did not reload tier-reload.service: $(cexec cat /run/tier-reload/got 2>&1)"
hooks_s=$((SECONDS - hooks_t))
sleep 1
reader_stop e e
[[ "$reader_last" == demo-api-key-rotated-1 ]] || fail "e: the reader's last read of api-key was '$reader_last'"
ok "e: a rotation of the secrets file was seen through the mount after $rotate_ms ms (ttl $ttl s); reader: $reader_reads loops, 0 errors, longest loop $reader_longest ms, last value the new one"
! cexec test -e /var/lib/tierhook/quiet || fail "g: the hook on prod/db:password fired, but only api-key changed"
for f in /run/tier-pidfile/got /run/tier-sigunit/got /run/tier-reload/got; do
    [[ "$(cexec cat "$f" | wc -l)" == 1 ]] || fail "g: a hook fired more than once for one rotation: $f has $(cexec cat "$f" | tr '\n' ' ')"
done
ok "g: hooks under the unit's sandbox fired once each within ${hooks_s} s of the new value: exec as hookuser (read the new value through the mount, SECRETSFS_* right), SIGHUP by pid_file to hookuser's daemon, SIGUSR1 to a unit (systemctl kill), systemctl reload of a unit; the hook on an unchanged key did not fire"
for hook in tier-exec tier-pidfile tier-unit tier-reload; do
    cexec journalctl --no-pager -o cat -u secretsfs.service | grep -q "$hook" || fail "g: no journal line about hook $hook"
done

# --- 4f. upgrade -----------------------------------------------------------------------------
old_pid=$(prop MainPID)
reader_start f
# As apt does it for a conffile the operator edited: keep it.
dpkg_out=$(CEXEC_TIMEOUT=120 cexec dpkg --force-confold -i /var/tmp/secretsfs-upgrade.deb 2>&1) ||
    { printf '%s\n' "$dpkg_out" | sed 's/^/    /' >&2; fail "f: dpkg -i of the upgrade failed"; }
[[ "$(cexec dpkg-query -W -f '${Version}' secretsfs)" == "${deb_version}+tier1" ]] || fail "f: dpkg did not install ${deb_version}+tier1"
grep -q "secretsfs.service still runs the old version" <<<"$dpkg_out" ||
    fail "f: postinst did not say the running unit keeps the old version: $dpkg_out"
cexec grep -q 'secretsfs.service.d/tier.conf' /etc/secretsfs/config.toml || fail "f: the edited conffile was not kept"
sleep 1
[[ "$(prop ActiveState)" == active && "$(prop MainPID)" == "$old_pid" ]] ||
    fail "f: the upgrade restarted or stopped the unit: $(prop ActiveState), MainPID $old_pid -> $(prop MainPID)"
exe=$(cexec readlink "/proc/$old_pid/exe")
[[ "$exe" == "/usr/bin/secretsfs (deleted)" ]] || fail "f: the old process runs $exe, not the replaced binary"
[[ "$(cexec cat /secrets/api-key)" == demo-api-key-rotated-1 ]] || fail "f: /secrets/api-key after dpkg -i"
cexec systemctl restart secretsfs.service || fail "f: systemctl restart after the upgrade failed"
new_pid=$(prop MainPID)
sleep 1
reader_stop f f
[[ "$(prop ActiveState)" == active && "$new_pid" != "$old_pid" ]] || fail "f: after the restart: $(prop ActiveState), MainPID $new_pid"
[[ "$(cexec readlink "/proc/$new_pid/exe")" == /usr/bin/secretsfs ]] || fail "f: the new process does not run the new /usr/bin/secretsfs"
one_fuse_mount f
[[ "$mount_now" == "$mount_id" ]] || fail "f: the mount at /secrets is a new one after the upgrade's restart (mount id $mount_id -> $mount_now)"
journal_of_pid "$new_pid" | grep -q "took over the mount" || fail "f: the upgraded process did not take the mount over"
fdstore f
ok "f: dpkg -i ${deb_version}+tier1 (same binary repacked, higher version): the old process ($old_pid, its binary deleted) served until systemctl restart, then $new_pid took the mount over; conffile kept; NFileDescriptorStore=${fdstore_at[f]}; reader: $reader_reads loops, 0 errors, longest loop $reader_longest ms"

# A rotation after the take-overs still fires the hooks of the new process.
reader_start f2
rotate 2
wait_for_file /var/lib/tierhook/exec 20 $'hookuser\ntier-exec api-key b1b2c3d4-0000-4000-8000-000000001002\ndemo-api-key-rotated-2' ||
    fail "g: after the upgrade, the exec hook did not run for rotation 2"
wait_for_file /run/tier-pidfile/got 10 $'HUP\nHUP' || fail "g: after the upgrade, the pid_file hook did not fire for rotation 2"
reader_stop f2 f2
ok "e/g: after the upgrade, rotation 2 seen after $rotate_ms ms and the hooks fired again; reader: $reader_reads loops, 0 errors, longest loop $reader_longest ms"

# --- 4i. stop --------------------------------------------------------------------------------
cexec systemctl stop secretsfs.service || fail "i: systemctl stop secretsfs failed"
[[ "$(prop ActiveState)" == inactive ]] || fail "i: after stop, secretsfs.service is $(prop ActiveState)"
m=$(secrets_mounts)
[[ -z "$m" ]] || fail "i: after stop, /proc/$pid1/mountinfo still has at /secrets: $m"
[[ "$(cexec ls -A /secrets)" == "" ]] || fail "i: /secrets is not an empty directory after stop"
cexec journalctl --no-pager -o cat -u secretsfs.service | grep -q 'unmounting.*the unit is stopping' ||
    fail "i: ExecStopPost= (secretsfs stop-post) did not log the unmount"
fdstore i
[[ "${fdstore_at[i]}" == 0 ]] || fail "i: the file descriptor store still holds ${fdstore_at[i]} descriptors after stop"
ok "i: systemctl stop: inactive, no mount at /secrets in PID 1's mountinfo, an empty directory (no dead mount); NFileDescriptorStore=${fdstore_at[i]}"

# --- 4h. LoadCredential= ---------------------------------------------------------------------
# Started while secretsfs is down: Requires= starts it, After= waits for its READY=1.
cexec systemctl start tier-credential.service || fail "h: systemctl start tier-credential (LoadCredential=dbpass:/secrets/prod/db:password) failed"
[[ "$(cexec cat /var/lib/tier-credential)" == 'demo-Pa55:w/rd' ]] ||
    fail "h: the unit's credential was '$(cexec cat /var/lib/tier-credential)'"
[[ "$(prop ActiveState)" == active ]] || fail "h: secretsfs.service is $(prop ActiveState)"
ready_at=$(prop ActiveEnterTimestampMonotonic)
cred_at=$(prop ExecMainStartTimestampMonotonic tier-credential.service)
[[ "$ready_at" -gt 0 && "$cred_at" -ge "$ready_at" ]] ||
    fail "h: the credential unit started (at $cred_at us) before secretsfs was ready (at $ready_at us)"
one_fuse_mount h
mount_id=$mount_now
fdstore h
ok "h: a oneshot with LoadCredential=dbpass:/secrets/prod/db:password, Requires=/After=secretsfs.service, started with secretsfs down, got the secret; it started $(((cred_at - ready_at) / 1000)) ms after secretsfs's READY=1 (a new mount); NFileDescriptorStore=${fdstore_at[h]}"

# --- 4j. systemd-analyze security --------------------------------------------------------------
analysis=$(cexec systemd-analyze security secretsfs.service 2>&1) || true
exposure=$(grep -i 'overall exposure level' <<<"$analysis" | sed 's/.*secretsfs.service: *//')
[[ -n "$exposure" ]] || fail "j: systemd-analyze security secretsfs.service printed no exposure level: $(tail -n 3 <<<"$analysis")"
ok "j: systemd-analyze security secretsfs.service (online, in the container): $exposure"

# --- the journal -------------------------------------------------------------------------------
# Everything secretsfs logged at WARN or above over the run (it logs text to stderr, which the
# journal keeps at priority info, hence the grep): only what the checks caused.
warnings=$(cexec journalctl --no-pager -o cat -t secretsfs | grep -E '^[^ ]+ +(WARN|ERROR) |panic' || true)
say "secretsfs logged $(grep -c . <<<"$warnings" || true) lines at WARN or above"
[[ -z "$warnings" ]] || printf '%s\n' "$warnings" | cut -c1-240 | sed 's/^/    /'
! grep -qE '^[^ ]+ +ERROR |panic' <<<"$warnings" || fail "secretsfs logged an error or a panic (above)"
ok "no error or panic from secretsfs in the container's journal"

# --- shutdown with the mount up ----------------------------------------------------------------
t=$SECONDS
cexec systemctl poweroff --no-block >/dev/null 2>&1 || fail "systemctl poweroff failed"
for ((i = 0; i < 600; i++)); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$nspawn_pid" 2>/dev/null && fail "the container did not power off within 60 s with secretsfs running"
nspawn_status=0
wait "$nspawn_pid" || nspawn_status=$?
nspawn_pid=""
pid1=""
[[ $nspawn_status -eq 0 ]] || fail "systemd-nspawn exited $nspawn_status after poweroff"
ok "poweroff with secretsfs running: the container halted in $((SECONDS - t)) s, systemd-nspawn exited 0"

stores=""
for s in a b c d f i h; do stores+=" $s=${fdstore_at[$s]}"; done
say "NFileDescriptorStore by step:$stores"
remove_tree "$work"
work=""
say "checks took $((SECONDS - steps_start)) s; the whole tier $((SECONDS - tier_start)) s"
say "$passed passed"
