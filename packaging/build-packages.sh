#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317  # checks run `bash -c` scripts taking $1.., and functions by name
# Builds the .deb (cargo-deb) and the .rpm (cargo-generate-rpm) and checks them, and checks
# packaging/install.sh. Run by scripts/test.sh; needs the Rust toolchain, python3 and dpkg, and
# as root installs what is missing from Debian (dpkg-dev for dpkg-shlibdeps, rpm for rpm -qp).
#
#   1. cargo-deb and cargo-generate-rpm, pinned, into target/tools (only when missing)
#   2. cargo build --release --locked; the man page (`secretsfs man`, gzipped) and a stripped
#      binary for the rpm into target/release/packaging/ (Cargo.toml's assets name them)
#   3. cargo deb --no-build, cargo generate-rpm, into target/packages/
#   4. the .deb: its exact file list, modes and owners (dpkg-deb -c); its control data
#      (Depends, the conffile, the maintainer scripts); then `dpkg --root` installs it into a
#      scratch root (maintainer scripts included, chrootless), and every file must be in place
#      with its mode and the repository's bytes, the accounts created; a reinstall keeps an
#      edited conffile and creates no second account; remove keeps the conffile, purge removes it
#   5. the .rpm: its exact file list, modes, owners, config flag, scripts and requirements
#      (rpm -qp, or a header reader in python when rpm cannot be had), and an install into a
#      scratch root with rpm --root (--noscripts: they would chroot into an empty root)
#   6. DESTDIR=... packaging/install.sh --no-build --no-systemctl into a scratch root, twice
#
# Prints one line per check and ends with "packaging: N passed, N failed"; exits 1 on any
# failure. Packages are left in target/packages/.
set -euo pipefail

# All in one block, which bash reads whole before running it: an edit to this file while it
# runs cannot derail the run.
{
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cargo_deb_version=3.8.0
generate_rpm_version=0.21.1

say() { printf 'build-packages.sh: %s\n' "$*"; }
die() {
    printf 'build-packages.sh: error: %s\n' "$*" >&2
    exit 1
}

passed=0
failed=0
failures=()
pass() {
    passed=$((passed + 1))
    printf '  ok    %s\n' "$1"
}
fail() {
    failed=$((failed + 1))
    failures+=("$1")
    printf '  FAIL  %s\n' "$1"
}
# check DESCRIPTION COMMAND...: the command's status decides; its output is shown on failure.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$what"
    else
        fail "$what"
        [[ -z "$out" ]] || printf '%s\n' "$out" | sed 's/^/        /' | head -20
    fi
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

apt_updated=false
# apt_install PACKAGE: as root, from Debian; false when that is not possible.
apt_install() {
    is_root && command -v apt-get >/dev/null 2>&1 || return 1
    say "installing $1 from Debian (apt-get)"
    if ! $apt_updated; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" \
            >/dev/null 2>&1 && return 0
        apt-get update -qq >/dev/null 2>&1 || true
        apt_updated=true
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

start=$SECONDS
phase_start=$SECONDS
phase() {
    say "$1 ($((SECONDS - phase_start)) s)"
    phase_start=$SECONDS
}

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
tools="$target_dir/tools"
stage="$target_dir/release/packaging"
out="$target_dir/packages"
version=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "secretsfs"))')

# dpkg --root and rpm --root install files owned by root, and the maintainer scripts run
# useradd: both need root (CI runs as root).
is_root || die "must run as root (it installs the packages into scratch roots)"

for f in packaging/mount.secretsfs packaging/config.toml systemd/secretsfs.service \
    systemd/secretsfs-http.service systemd/secretsfs-token.service README.md \
    packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
    packaging/rpm/post.sh packaging/rpm/preun.sh packaging/rpm/postun.sh; do
    [[ -f "$f" ]] || die "missing $f"
done
compgen -G 'docs/*.md' >/dev/null || die "missing docs/*.md"

# --- 1. tools --------------------------------------------------------------------------------

# tool BINARY CRATE VERSION: the pinned version in target/tools, installed when missing.
tool() {
    local bin="$tools/bin/$1"
    if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -qF "$3"; then
        return 0
    fi
    say "installing $2 $3 into $tools"
    cargo install --locked --force --quiet --root "$tools" "$2" --version "$3"
}
tool cargo-deb cargo-deb "$cargo_deb_version"
tool cargo-generate-rpm cargo-generate-rpm "$generate_rpm_version"
export PATH="$tools/bin:$PATH"
# cargo-deb computes Depends ($auto) with dpkg-shlibdeps, from dpkg-dev.
command -v dpkg-shlibdeps >/dev/null 2>&1 || apt_install dpkg-dev ||
    say "dpkg-shlibdeps missing and not installable: the Depends check will fail"
phase "tools ready: cargo-deb $cargo_deb_version, cargo-generate-rpm $generate_rpm_version"

# --- 2. release build, man page, stripped binary ---------------------------------------------

cargo build --release --locked
bin="$target_dir/release/secretsfs"
mkdir -p "$stage"
"$bin" man >"$stage/secretsfs.1"
[[ -s "$stage/secretsfs.1" ]] || die "$bin man printed nothing"
gzip -9n <"$stage/secretsfs.1" >"$stage/secretsfs.1.gz"
strip -o "$stage/secretsfs" "$bin"
phase "release build and man page done"

# --- 3. packages -----------------------------------------------------------------------------

rm -rf "$out"
mkdir -p "$out"
deb=$(cargo deb --no-build --locked --output "$out/" | tail -n 1)
rpm_pkg="$out/secretsfs-$version-1.$(uname -m).rpm"
cargo generate-rpm --target-dir "$target_dir" --output "$rpm_pkg" >/dev/null
[[ -f "$deb" ]] || die "cargo deb made no package (it printed: $deb)"
[[ -f "$rpm_pkg" ]] || die "cargo generate-rpm made no package"
phase "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB), $(basename "$rpm_pkg") ($(du -k "$rpm_pkg" | cut -f1) KiB)"

# The files of both packages, with their sources in the repository (or target/) and modes.
# Each line: MODE PATH-IN-DEB PATH-IN-RPM SOURCE ("-": not in that package; the rpm has the
# Fedora/RHEL paths, where /sbin and /lib are /usr's). The documentation pages are every
# docs/*.md, as the `docs/*.md` assets of Cargo.toml's two sections glob them: a page added to
# docs/ is expected in both packages without a change here, and a package that misses one
# fails the file-list checks.
files_table() {
    cat <<EOF
755 /usr/bin/secretsfs /usr/bin/secretsfs -
755 /sbin/mount.secretsfs /usr/sbin/mount.secretsfs packaging/mount.secretsfs
644 /lib/systemd/system/secretsfs.service /usr/lib/systemd/system/secretsfs.service systemd/secretsfs.service
644 /lib/systemd/system/secretsfs-http.service /usr/lib/systemd/system/secretsfs-http.service systemd/secretsfs-http.service
644 /lib/systemd/system/secretsfs-token.service /usr/lib/systemd/system/secretsfs-token.service systemd/secretsfs-token.service
644 /etc/secretsfs/config.toml /etc/secretsfs/config.toml packaging/config.toml
644 /usr/share/doc/secretsfs/README.md /usr/share/doc/secretsfs/README.md README.md
644 /usr/share/man/man1/secretsfs.1.gz /usr/share/man/man1/secretsfs.1.gz $stage/secretsfs.1.gz
644 /usr/share/doc/secretsfs/copyright - -
EOF
    local page
    for page in docs/*.md; do
        printf '644 /usr/share/doc/secretsfs/%s /usr/share/doc/secretsfs/%s %s\n' "$page" "$page" "$page"
    done
}

# perms OCTAL: ls's notation for a regular file, e.g. 755 -> -rwxr-xr-x.
perms() { python3 -c 'import stat, sys; print(stat.filemode(0o100000 | int(sys.argv[1], 8)))' "$1"; }

# expected_list COLUMN: "PERMS PATH" lines of the deb (2) or rpm (3) column, sorted.
expected_list() {
    files_table | while read -r mode d r _; do
        local p
        if [[ $1 -eq 2 ]]; then p=$d; else p=$r; fi
        [[ "$p" == - ]] || printf '%s %s\n' "$(perms "$mode")" "$p"
    done | sort
}

# same_lists WHAT EXPECTED ACTUAL: equal, else the difference.
same_lists() {
    if [[ "$2" == "$3" ]]; then
        return 0
    fi
    diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed -n 's/^[<>]/&/p' |
        sed 's/^</missing:   /; s/^>/unexpected:/'
    return 1
}

# installed_files_match ROOT COLUMN: every file of the table under ROOT, a regular file of
# owner root and the table's mode, with the bytes of its source.
installed_files_match() {
    local root=$1 col=$2 bad=0 mode d r src p st
    while read -r mode d r src; do
        if [[ $col -eq 2 ]]; then p=$d; else p=$r; fi
        [[ "$p" != - ]] || continue
        if [[ ! -f "$root$p" ]]; then
            echo "missing: $p"
            bad=1
            continue
        fi
        st=$(stat -c '%a %U' "$root$p")
        if [[ "$st" != "$mode root" ]]; then
            echo "$p: mode/owner $st, expected $mode root"
            bad=1
        fi
        case $src in
        -) ;;
        *) cmp -s "$src" "$root$p" || {
            echo "$p: differs from $src"
            bad=1
        } ;;
        esac
    done < <(files_table)
    return "$bad"
}

# --- 4. the .deb -----------------------------------------------------------------------------

say "checking $deb"
deb_list=$(dpkg-deb -c "$deb")
deb_files=$(awk '$1 ~ /^-/ { p = $6; sub(/^\./, "", p); print $1, p }' <<<"$deb_list" | sort)
check "deb: exactly the expected files, with their modes" \
    same_lists deb "$(expected_list 2)" "$deb_files"
check "deb: every entry owned by root (0/0)" \
    bash -c '! awk "\$2 != \"0/0\" && \$2 != \"root/root\"" <<<"$1" | grep .' _ "$deb_list"
check "deb: no symlinks or devices" \
    bash -c '! awk "\$1 !~ /^[-d]/" <<<"$1" | grep .' _ "$deb_list"

deb_info=$(dpkg-deb -I "$deb")
check "deb: Package secretsfs, version $version" \
    test "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" = "secretsfs $version-1"
check "deb: Depends on libc6 (from dpkg-shlibdeps)" \
    grep -Eq '^libc6( |$)' <<<"$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/^ *//')"
check "deb: no FUSE library dependency" \
    bash -c '! dpkg-deb -f "$1" Depends | grep -qi fuse' _ "$deb"
check "deb: /etc/secretsfs/config.toml is a conffile" \
    test "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/secretsfs/config.toml
for script in postinst prerm postrm; do
    check "deb: $script is packaging/debian/$script, mode 0755" \
        bash -c 'grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +\* +$2 " <<<"$1" &&
            cmp -s <(dpkg-deb --ctrl-tarfile "$3" | tar -xO "./$2") "packaging/debian/$2"' \
        _ "$deb_info" "$script" "$deb"
done
check "deb: the maintainer scripts parse (sh -n)" \
    sh -n packaging/debian/postinst -n packaging/debian/prerm -n packaging/debian/postrm
check "deb: the binary in it is stripped" \
    bash -c 'd=$(mktemp -d); trap "rm -rf $d" EXIT; dpkg-deb -x "$1" "$d";
        file "$d/usr/bin/secretsfs" 2>/dev/null | grep -q ", stripped" ||
        ! readelf -S "$d/usr/bin/secretsfs" | grep -q "\.symtab"' _ "$deb"

# A scratch root: an admin dir whose status holds only the packages the .deb depends on,
# copied from this host's (so dpkg checks Depends for real, with no --force-depends), and an
# /etc with root's accounts only. --force-script-chrootless runs the maintainer scripts on the
# host with DPKG_ROOT set, which they honour (useradd --prefix).
droot="$out/deb-root"
rm -rf "$droot"
mkdir -p "$droot/var/lib/dpkg/info" "$droot/var/lib/dpkg/updates" "$droot/var/lib/dpkg/triggers" \
    "$droot/etc"
: >"$droot/var/lib/dpkg/available"
: >"$droot/var/lib/dpkg/status"
for dep in $(dpkg-deb -f "$deb" Depends | tr ',|' '\n' | sed 's/(.*//; s/:any//' | tr -d ' ' | sort -u); do
    if dpkg-query -s "$dep" >/dev/null 2>&1; then
        {
            dpkg-query -s "$dep"
            echo
        } >>"$droot/var/lib/dpkg/status"
        : >"$droot/var/lib/dpkg/info/$(dpkg-query -W -f '${binary:Package}' "$dep" | head -n 1).list"
    fi
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$droot/etc/passwd"
printf 'root:x:0:\n' >"$droot/etc/group"
dpkg_root=(dpkg --root="$droot" --force-script-chrootless --force-unsafe-io)
host_accounts=$(cat /etc/passwd /etc/group | sha256sum)

check "deb: dpkg --root installs it (dependencies checked, maintainer scripts run)" \
    "${dpkg_root[@]}" -i "$deb"
check "deb: dpkg reports it installed" \
    test "$(dpkg-query --root="$droot" -W -f '${Status}' secretsfs)" = "install ok installed"
check "deb: dpkg registered the conffile" \
    grep -q '^ /etc/secretsfs/config.toml ' <<<"$(dpkg-query --root="$droot" -W -f '${Conffiles}\n' secretsfs)"
check "deb: every file in place, owner root, its mode, the repository's bytes" \
    installed_files_match "$droot" 2
check "deb: the man page is the binary's own (secretsfs man)" \
    cmp -s <(zcat "$droot/usr/share/man/man1/secretsfs.1.gz") "$stage/secretsfs.1"
check "deb: the man page is roff with a .TH title" \
    bash -c 'zcat "$1" | grep -q "^\.TH secretsfs"' _ "$droot/usr/share/man/man1/secretsfs.1.gz"
if command -v man >/dev/null 2>&1; then
    check "deb: man renders the page without warnings" \
        bash -c 'w=$(MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null) && [[ -z $w ]] || { echo "$w"; false; }' \
        _ "$droot/usr/share/man/man1/secretsfs.1.gz"
fi
check "deb: the installed binary runs (--version)" \
    bash -c '"$1" --version | grep -q "^secretsfs $2"' _ "$droot/usr/bin/secretsfs" "$version"
check "deb: the installed binary accepts the installed config (check-config)" \
    "$droot/usr/bin/secretsfs" check-config "$droot/etc/secretsfs/config.toml"
check "deb: the installed mount helper builds a secretsfs command (-f)" \
    bash -c 'SECRETSFS_BIN="$1/usr/bin/secretsfs" "$1/sbin/mount.secretsfs" -f secretsfs /secrets -o ro,ttl=60 |
        grep -Eq "/usr/bin/secretsfs mount .*--ttl 60.* /secrets\$"' _ "$droot"
check "deb: postinst created the system group secretsfs-token" \
    grep -Eq '^secretsfs-token:x:[0-9]+:' "$droot/etc/group"
check "deb: postinst created the system user secretsfs (nologin, no home)" \
    bash -c 'IFS=: read -r n _ uid _ _ home shell < <(grep "^secretsfs:" "$1/etc/passwd") &&
        [[ $uid -lt 1000 && $home == /nonexistent && $shell == */nologin ]]' _ "$droot"
check "deb: the user secretsfs is a member of secretsfs-token" \
    bash -c 'grep "^secretsfs-token:" "$1/etc/group" | cut -d: -f4 | tr , "\n" | grep -qx secretsfs' _ "$droot"
check "deb: the host's own accounts are untouched" \
    test "$(cat /etc/passwd /etc/group | sha256sum)" = "$host_accounts"

echo '# edited by the operator' >>"$droot/etc/secretsfs/config.toml"
check "deb: reinstalling (an upgrade) succeeds" \
    "${dpkg_root[@]}" --force-confold -i "$deb"
check "deb: the reinstall kept the edited conffile" \
    grep -q '^# edited by the operator$' "$droot/etc/secretsfs/config.toml"
check "deb: the reinstall created no second user or group" \
    test "$(grep -c '^secretsfs:' "$droot/etc/passwd") $(grep -c '^secretsfs-token:' "$droot/etc/group")" = "1 1"
check "deb: dpkg -r removes the files and keeps the conffile" \
    bash -c '"${@:2}" -r secretsfs && [[ ! -e $1/usr/bin/secretsfs && ! -e $1/sbin/mount.secretsfs &&
        ! -e $1/lib/systemd/system/secretsfs.service && -f $1/etc/secretsfs/config.toml ]]' \
    _ "$droot" "${dpkg_root[@]}"
check "deb: dpkg -P purges the conffile and /etc/secretsfs" \
    bash -c '"${@:2}" -P secretsfs && [[ ! -e $1/etc/secretsfs ]]' _ "$droot" "${dpkg_root[@]}"
phase "deb checked"

# --- 5. the .rpm -----------------------------------------------------------------------------

say "checking $rpm_pkg"
command -v rpm >/dev/null 2>&1 || apt_install rpm ||
    say "rpm not available: reading the rpm header with python instead"

# rpm_query FORMAT-NAME: lines from the package's header: "files" (PERMS USER PATH), "config"
# (config files), "requires", "scripts" (the scriptlets' text). rpm -qp when rpm is here, else
# a reader of the header format (lead, signature header, main header; tags of rpm's tagtbl).
rpm_query() {
    if command -v rpm >/dev/null 2>&1; then
        case $1 in
        files) rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\n]' "$rpm_pkg" ;;
        config) rpm -qcp "$rpm_pkg" ;;
        requires) rpm -qp --requires "$rpm_pkg" ;;
        scripts) rpm -qp --scripts "$rpm_pkg" ;;
        esac
        return
    fi
    python3 - "$1" "$rpm_pkg" <<'EOF'
import stat, struct, sys

what, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()

def header(off):
    assert data[off:off + 3] == b"\x8e\xad\xe8", "not an rpm header"
    nindex, hsize = struct.unpack(">II", data[off + 8:off + 16])
    store = off + 16 + 16 * nindex
    tags = {}
    for i in range(nindex):
        tag, typ, offset, count = struct.unpack(">IIII", data[off + 16 + 16 * i:off + 32 + 16 * i])
        p = store + offset
        if typ == 3:
            tags[tag] = list(struct.unpack(">%dH" % count, data[p:p + 2 * count]))
        elif typ == 4:
            tags[tag] = list(struct.unpack(">%dI" % count, data[p:p + 4 * count]))
        elif typ in (6, 8, 9):
            strings = data[p:].split(b"\0")[:count]
            tags[tag] = [s.decode() for s in strings]
    return tags, store + hsize

_, end = header(96)
main, _ = header(end + (-end % 8))
names = [main[1118][d] + b for d, b in zip(main[1116], main[1117])]
if what == "files":
    for name, mode, user in zip(names, main[1030], main[1039]):
        print(stat.filemode(mode), user, name)
elif what == "config":
    for name, flags in zip(names, main[1037]):
        if flags & 1:
            print(name)
elif what == "requires":
    for name in main.get(1049, []):
        print(name)
elif what == "scripts":
    for tag in (1024, 1025, 1026, 1027):
        for s in main.get(tag, []):
            print(s)
EOF
}

rpm_files=$(rpm_query files | awk '$1 ~ /^-/ { print $1, $3 }' | sort)
check "rpm: exactly the expected files, with their modes" \
    same_lists rpm "$(expected_list 3)" "$rpm_files"
check "rpm: every file owned by root" \
    test -z "$(rpm_query files | awk '$2 != "root"')"
check "rpm: /etc/secretsfs/config.toml is a config file" \
    test "$(rpm_query config)" = /etc/secretsfs/config.toml
if command -v rpm >/dev/null 2>&1; then
    check "rpm: the config file is %config(noreplace)" \
        grep -qx 'cn /etc/secretsfs/config.toml' <<<"$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_pkg")"
fi
check "rpm: requires libc.so.6 (from ldd)" \
    grep -q '^libc\.so\.6' <<<"$(rpm_query requires)"
rpm_scripts=$(rpm_query scripts)
check "rpm: %post creates the group and the user" \
    bash -c 'grep -q "groupadd --system secretsfs-token" <<<"$1" && grep -q "useradd --system" <<<"$1"' _ "$rpm_scripts"
check "rpm: %preun and %postun are packaged" \
    bash -c 'grep -q "disable --now" <<<"$1" && [[ $(grep -c "daemon-reload" <<<"$1") -ge 2 ]]' _ "$rpm_scripts"
check "rpm: the scriptlets parse (sh -n)" \
    sh -n packaging/rpm/post.sh -n packaging/rpm/preun.sh -n packaging/rpm/postun.sh

if command -v rpm >/dev/null 2>&1; then
    rroot="$out/rpm-root"
    rm -rf "$rroot"
    mkdir -p "$rroot"
    # Debian's rpm refuses to install without --force-debian; scripts would chroot into the
    # empty root, hence --noscripts (the deb above runs the equivalent scripts).
    rpm_flags=(--root "$rroot" --dbpath /var/lib/rpm)
    rpm --help 2>/dev/null | grep -q -- --force-debian && rpm_flags+=(--force-debian)
    check "rpm: rpm --root installs it (--nodeps --noscripts)" \
        bash -c 'rpm --root "$1" --dbpath /var/lib/rpm --initdb &&
            rpm "${@:2}" -i --nodeps --noscripts "$0"' "$rpm_pkg" "$rroot" "${rpm_flags[@]}"
    check "rpm: rpm reports it installed" \
        rpm --root "$rroot" --dbpath /var/lib/rpm -q secretsfs
    check "rpm: every file in place, owner root, its mode, the repository's bytes" \
        installed_files_match "$rroot" 3
    check "rpm: the installed binary is the stripped release binary" \
        cmp -s "$rroot/usr/bin/secretsfs" "$stage/secretsfs"
fi
phase "rpm checked"

# --- 6. packaging/install.sh into a scratch root ---------------------------------------------

iroot="$out/install-root"
rm -rf "$iroot"
mkdir -p "$iroot/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$iroot/etc/passwd"
printf 'root:x:0:\n' >"$iroot/etc/group"
install_sh() { DESTDIR="$iroot" sh packaging/install.sh --no-build --binary "$bin" --no-systemctl "$@"; }
check "install.sh: DESTDIR install succeeds" install_sh
ifiles() {
    cat <<EOF
755 /usr/bin/secretsfs $bin
755 /sbin/mount.secretsfs packaging/mount.secretsfs
644 /usr/lib/systemd/system/secretsfs.service systemd/secretsfs.service
644 /usr/lib/systemd/system/secretsfs-http.service systemd/secretsfs-http.service
644 /usr/lib/systemd/system/secretsfs-token.service systemd/secretsfs-token.service
644 /etc/secretsfs/config.toml packaging/config.toml
644 /usr/share/doc/secretsfs/README.md README.md
644 /usr/share/man/man1/secretsfs.1.gz $stage/secretsfs.1.gz
EOF
    local page
    for page in docs/*.md; do
        printf '644 /usr/share/doc/secretsfs/%s %s\n' "$page" "$page"
    done
}
install_files_match() {
    local bad=0 mode p src st
    while read -r mode p src; do
        if [[ ! -f "$iroot$p" ]]; then
            echo "missing: $p"
            bad=1
            continue
        fi
        st=$(stat -c '%a' "$iroot$p")
        [[ "$st" == "$mode" ]] || {
            echo "$p: mode $st, expected $mode"
            bad=1
        }
        cmp -s "$src" "$iroot$p" || {
            echo "$p: differs from $src"
            bad=1
        }
    done < <(ifiles)
    return "$bad"
}
check "install.sh: every file in place, its mode, the repository's bytes" install_files_match
check "install.sh: the group secretsfs-token and the user secretsfs in it" \
    bash -c 'grep -q "^secretsfs:" "$1/etc/passwd" &&
        grep "^secretsfs-token:" "$1/etc/group" | cut -d: -f4 | tr , "\n" | grep -qx secretsfs' _ "$iroot"
check "install.sh: the token, 0640 root:secretsfs-token in a 0750 directory, 44 base64 bytes" \
    bash -c 'gid=$(grep "^secretsfs-token:" "$1/etc/group" | cut -d: -f3);
        [[ $(stat -c "%a %u %g" "$1/run/secretsfs/token") == "640 0 $gid" &&
           $(stat -c "%a %u %g" "$1/run/secretsfs") == "750 0 $gid" &&
           $(tr -d "\n" < "$1/run/secretsfs/token" | wc -c) -eq 44 ]]' _ "$iroot"
cp "$iroot/run/secretsfs/token" "$out/token.before"
echo '# edited by the operator' >>"$iroot/etc/secretsfs/config.toml"
check "install.sh: running it again succeeds" install_sh
check "install.sh: the second run kept the edited config and the token" \
    bash -c 'grep -q "^# edited by the operator$" "$1/etc/secretsfs/config.toml" &&
        cmp -s "$2" "$1/run/secretsfs/token"' _ "$iroot" "$out/token.before"
check "install.sh: the second run created no second user or group" \
    test "$(grep -c '^secretsfs:' "$iroot/etc/passwd") $(grep -c '^secretsfs-token:' "$iroot/etc/group")" = "1 1"
proot="$out/install-prefix-root"
rm -rf "$proot"
check "install.sh: --prefix /usr/local points the units and the helper at /usr/local/bin" \
    bash -c 'DESTDIR="$1" sh packaging/install.sh --no-build --binary "$2" --prefix /usr/local \
            --no-accounts --no-token >/dev/null &&
        [[ -x $1/usr/local/bin/secretsfs && -f $1/usr/local/share/man/man1/secretsfs.1.gz ]] &&
        grep -q "^ExecStart=/usr/local/bin/secretsfs " "$1/usr/local/lib/systemd/system/secretsfs.service" &&
        ! grep -rq "/usr/bin/secretsfs" "$1/usr/local/lib/systemd/system" "$1/sbin/mount.secretsfs"' \
    _ "$proot" "$bin"
rm -f "$out/token.before"
phase "install.sh checked"

# --- summary ---------------------------------------------------------------------------------

say "packages: $deb"
say "          $rpm_pkg"
say "took $((SECONDS - start)) s"
if [[ $failed -gt 0 ]]; then
    say "FAIL:"
    printf '  %s\n' "${failures[@]}"
fi
echo "packaging: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
exit
}
