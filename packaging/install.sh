#!/bin/sh
# Installs secretsfs from source on a Debian- or RHEL-like host, as the packages do: the
# binary, the mount(8) helper, the systemd units, a default config (an existing one is never
# overwritten), the man page, the README and the documentation pages (docs/*.md, into
# PREFIX/share/doc/secretsfs/docs/, where the README's links find them); the system group
# secretsfs-token and the system user secretsfs; and the HTTP API's token
# (/run/secretsfs/token), through secretsfs-token.service where systemd runs, else written
# directly. No service is enabled or started. Running it again upgrades the files in place and
# changes nothing else.
#
#   packaging/install.sh                          # cargo build --release --locked, then install
#   packaging/install.sh --binary ./secretsfs     # a prebuilt binary (no cargo needed)
#   DESTDIR=/tmp/stage packaging/install.sh --no-build --no-systemctl
#
# Options:
#   --binary PATH    install this binary instead of building one (implies --no-build)
#   --no-build       do not build; use target/release/secretsfs (or --binary)
#   --prefix DIR     /usr by default: DIR/bin, DIR/share/man, DIR/share/doc, DIR/lib/systemd/system
#   --unitdir DIR    where the units go (default PREFIX/lib/systemd/system)
#   --sbindir DIR    where mount.secretsfs goes (default /sbin, where mount(8) looks)
#   --no-systemctl   never run systemctl (no daemon-reload; the token is written directly)
#   --no-accounts    do not create the secretsfs user and the secretsfs-token group
#   --no-token       do not create the token
#   -h, --help       this text
#
# DESTDIR: install under this directory instead of /. Accounts then go into DESTDIR/etc
# (useradd --prefix) when DESTDIR/etc/passwd and DESTDIR/etc/group exist, and are skipped
# otherwise; systemctl is never run.
set -eu

repo_root=$(cd "$(dirname "$0")/.." && pwd)

prefix=/usr
unitdir=
sbindir=/sbin
binary=
build=true
systemctl=true
accounts=true
token=true
destdir=${DESTDIR:-}
destdir=${destdir%/}

say() { printf 'install.sh: %s\n' "$*"; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$0"
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case $1 in
    --binary)
        [ $# -ge 2 ] || die "--binary needs a path"
        binary=$2
        build=false
        shift
        ;;
    --binary=*)
        binary=${1#*=}
        build=false
        ;;
    --no-build) build=false ;;
    --prefix)
        [ $# -ge 2 ] || die "--prefix needs a directory"
        prefix=$2
        shift
        ;;
    --prefix=*) prefix=${1#*=} ;;
    --unitdir)
        [ $# -ge 2 ] || die "--unitdir needs a directory"
        unitdir=$2
        shift
        ;;
    --unitdir=*) unitdir=${1#*=} ;;
    --sbindir)
        [ $# -ge 2 ] || die "--sbindir needs a directory"
        sbindir=$2
        shift
        ;;
    --sbindir=*) sbindir=${1#*=} ;;
    --no-systemctl) systemctl=false ;;
    --no-accounts) accounts=false ;;
    --no-token) token=false ;;
    -h | --help) usage 0 ;;
    *)
        printf 'install.sh: unknown argument: %s\n' "$1" >&2
        usage 2 >&2
        ;;
    esac
    shift
done

case $prefix in /*) ;; *) die "--prefix must be absolute: $prefix" ;; esac
prefix=${prefix%/}
[ -n "$unitdir" ] || unitdir=$prefix/lib/systemd/system
bindir=$prefix/bin
mandir=$prefix/share/man
docdir=$prefix/share/doc/secretsfs
confdir=/etc/secretsfs
rundir=/run/secretsfs
user=secretsfs
token_group=secretsfs-token

# systemctl only for the running host, and only where systemd is the init.
[ -z "$destdir" ] || systemctl=false
if $systemctl && { [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; }; then
    systemctl=false
fi

is_root() { [ "$(id -u)" -eq 0 ]; }

# --- the binary ----------------------------------------------------------------------------

if $build; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain, or pass --binary PATH"
    say "building: cargo build --release --locked"
    (cd "$repo_root" && cargo build --release --locked)
fi
if [ -z "$binary" ]; then
    target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
    binary=$target_dir/release/secretsfs
fi
if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    die "no executable binary at $binary (build it, or pass --binary PATH)"
fi
"$binary" --version >/dev/null 2>&1 || die "$binary does not run on this host"

for f in packaging/mount.secretsfs systemd/secretsfs.service systemd/secretsfs-http.service \
    systemd/secretsfs-token.service packaging/config.toml README.md; do
    [ -f "$repo_root/$f" ] || die "missing $repo_root/$f"
done
for page in "$repo_root"/docs/*.md; do
    [ -f "$page" ] || die "missing $repo_root/docs/*.md"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- files ---------------------------------------------------------------------------------

# put MODE SOURCE DEST: DEST under DESTDIR, replaced atomically (a running binary keeps its
# inode), leading directories created 0755.
put() {
    dest=$destdir$3
    mkdir -p "$(dirname "$dest")"
    install -m "$1" "$2" "$dest.install-tmp"
    mv -f "$dest.install-tmp" "$dest"
    say "installed $3"
}

# The units and the helper name /usr/bin/secretsfs; another prefix gets its own path.
rewrite_bin() {
    if [ "$bindir" = /usr/bin ]; then
        cat "$1"
    else
        sed "s|/usr/bin/secretsfs|$bindir/secretsfs|g" "$1"
    fi
}

put 0755 "$binary" "$bindir/secretsfs"

rewrite_bin "$repo_root/packaging/mount.secretsfs" >"$tmp/mount.secretsfs"
put 0755 "$tmp/mount.secretsfs" "$sbindir/mount.secretsfs"

for unit in secretsfs.service secretsfs-http.service secretsfs-token.service; do
    rewrite_bin "$repo_root/systemd/$unit" >"$tmp/$unit"
    put 0644 "$tmp/$unit" "$unitdir/$unit"
done

if [ -e "$destdir$confdir/config.toml" ]; then
    say "kept the existing $confdir/config.toml (the default is $repo_root/packaging/config.toml)"
else
    put 0644 "$repo_root/packaging/config.toml" "$confdir/config.toml"
fi

"$binary" man >"$tmp/secretsfs.1" || die "$binary man failed"
[ -s "$tmp/secretsfs.1" ] || die "$binary man printed nothing"
gzip -9n <"$tmp/secretsfs.1" >"$tmp/secretsfs.1.gz"
put 0644 "$tmp/secretsfs.1.gz" "$mandir/man1/secretsfs.1.gz"

put 0644 "$repo_root/README.md" "$docdir/README.md"
# Every page, as the packages install them (Cargo.toml's `docs/*.md` assets).
for page in "$repo_root"/docs/*.md; do
    put 0644 "$page" "$docdir/docs/${page##*/}"
done

# --- accounts ------------------------------------------------------------------------------

# Accounts in DESTDIR/etc (useradd --prefix), or the host's (with NSS: LDAP, sssd).
if [ -n "$destdir" ]; then
    set -- --prefix "$destdir"
else
    set --
fi

group_exists() {
    if [ -n "$destdir" ]; then grep -q "^$1:" "$destdir/etc/group"
    else getent group "$1" >/dev/null; fi
}
user_exists() {
    if [ -n "$destdir" ]; then grep -q "^$1:" "$destdir/etc/passwd"
    else getent passwd "$1" >/dev/null; fi
}
in_group() {
    if [ -n "$destdir" ]; then
        grep "^$2:" "$destdir/etc/group" | cut -d: -f4 | tr , '\n' | grep -qx "$1"
    else
        id -nG "$1" | tr ' ' '\n' | grep -qx "$2"
    fi
}
group_id() {
    if [ -n "$destdir" ]; then grep "^$1:" "$destdir/etc/group" | cut -d: -f3
    else getent group "$1" | cut -d: -f3; fi
}

if $accounts && [ -n "$destdir" ] && { [ ! -f "$destdir/etc/passwd" ] || [ ! -f "$destdir/etc/group" ]; }; then
    say "no $destdir/etc/passwd or group: the user $user and the group $token_group are not created"
    accounts=false
fi
if $accounts && ! is_root && [ -z "$destdir" ]; then
    die "creating the user $user and the group $token_group needs root (or pass --no-accounts)"
fi

if $accounts; then
    for tool in groupadd useradd usermod; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found (the passwd/shadow-utils package)"
    done
    if group_exists "$token_group"; then
        say "group $token_group exists"
    else
        groupadd "$@" --system "$token_group"
        say "created the system group $token_group"
    fi
    if user_exists "$user"; then
        if in_group "$user" "$token_group"; then
            say "user $user exists"
        else
            usermod "$@" --append --groups "$token_group" "$user"
            say "added the user $user to $token_group"
        fi
    else
        nologin=/bin/false
        for shell in /usr/sbin/nologin /sbin/nologin; do
            if [ -x "$shell" ]; then
                nologin=$shell
                break
            fi
        done
        if group_exists "$user"; then own_group="--gid $user"; else own_group=--user-group; fi
        # shellcheck disable=SC2086  # own_group is one or two words
        useradd "$@" --system $own_group --groups "$token_group" --no-create-home \
            --home-dir /nonexistent --shell "$nologin" --comment "secretsfs daemon" "$user"
        say "created the system user $user (in $token_group)"
    fi
fi

# --- systemd and the token -----------------------------------------------------------------

if $systemctl; then
    systemctl daemon-reload
    say "systemctl daemon-reload"
fi

if $token; then
    if $systemctl; then
        if systemctl start secretsfs-token.service; then
            say "token: started secretsfs-token.service ($rundir/token)"
        else
            die "systemctl start secretsfs-token.service failed (does the group $token_group exist?)"
        fi
    elif [ -s "$destdir$rundir/token" ]; then
        say "token: kept $rundir/token"
    else
        # As secretsfs-token.service makes it: root:secretsfs-token, 0640 in a 0750 directory,
        # written to a temporary file and renamed.
        gid=
        group_exists "$token_group" 2>/dev/null && gid=$(group_id "$token_group")
        mkdir -p "$destdir$rundir"
        chmod 0750 "$destdir$rundir"
        t=$(umask 077 && mktemp "$destdir$rundir/.token.XXXXXX")
        head -c 32 /dev/urandom | base64 >"$t"
        chmod 0640 "$t"
        if [ -n "$gid" ] && is_root; then
            chgrp "$gid" "$destdir$rundir" "$t"
        else
            say "token: group $token_group not found or not root: $rundir/token left in the current group"
        fi
        mv -f "$t" "$destdir$rundir/token"
        say "token: wrote $rundir/token"
    fi
fi

say "done. Enable one of (not both: each listens on 127.0.0.1:2773):"
say "  systemctl enable --now secretsfs.service        # /secrets and the HTTP API"
say "  systemctl enable --now secretsfs-http.service   # the HTTP API alone"
