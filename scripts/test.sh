#!/usr/bin/env bash
# The project's single test command (README and CI call exactly this).
# Needs only the Rust toolchain and python3: moto, the AWS Secrets Manager
# emulator the integration tests run against, is installed into a venv under
# target/ on first use. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh --test it moto
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

moto_version="5.2.5"
venv="$repo_root/target/moto-venv"

say() { printf 'test.sh: %s\n' "$*"; }

# Checks the installed distributions rather than trusting a marker file, so a
# half-finished install (interrupted pip) is repaired on the next run.
moto_installed() {
    [[ -x "$venv/bin/python" && -x "$venv/bin/moto_server" ]] || return 1
    "$venv/bin/python" - "$moto_version" <<'EOF' 2>/dev/null
import importlib.metadata as md
import sys

if md.version("moto") != sys.argv[1]:
    sys.exit(1)
# The [server] extra: without these moto_server exits at startup.
for dist in ("flask", "flask-cors"):
    md.version(dist)
EOF
}

if [[ ! -x "$venv/bin/python" ]]; then
    say "creating venv $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
fi

if moto_installed; then
    say "moto $moto_version already installed"
else
    say "installing moto[server]==$moto_version into $venv"
    start=$SECONDS
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$moto_version"
    moto_installed || { say "moto install did not take effect" >&2; exit 1; }
    say "moto installed in $((SECONDS - start))s"
fi

export SECRETSFS_MOTO_SERVER="$venv/bin/moto_server"

# The real runtimes' tiers (tests/it/runc.rs, scripts/systemd-tier.sh) need Debian's runc,
# busybox-static, debootstrap and systemd-container. Installed when missing; where that cannot
# be done, those tiers fail saying what is missing, never pass by skipping.
runtime_packages=()
command -v runc >/dev/null || runtime_packages+=(runc)
[[ -x /bin/busybox || -x /usr/bin/busybox ]] || runtime_packages+=(busybox-static)
command -v debootstrap >/dev/null || runtime_packages+=(debootstrap)
command -v systemd-nspawn >/dev/null || runtime_packages+=(systemd-container)
if ((${#runtime_packages[@]})); then
    say "installing ${runtime_packages[*]}"
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        # A fresh machine may have no package lists yet: then update once and try again.
        apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${runtime_packages[@]}" >/dev/null; }
        apt_install || { apt-get update -q >/dev/null && apt_install; } ||
            say "could not install ${runtime_packages[*]}: the tiers that need them will fail" >&2
    else
        say "cannot install ${runtime_packages[*]} (needs root and apt-get): the tiers that need them will fail" >&2
    fi
fi

run_cargo_test() {
    say "cargo test $*"
    cargo test "$@"
}

# The layers the compiler cannot hold: which crate may use which, and no module cycle
# (docs/ARCHITECTURE.md#layers). A second, not a build.
python3 "$repo_root/scripts/check-layers.py"
# Every relative link of the README and docs/ resolves, anchors included.
python3 "$repo_root/scripts/check-doc-links.py"

# Arguments that pick targets themselves (e.g. `--test it`) cannot be combined
# with --doc, so then the caller's selection is run alone.
selects_targets=false
for arg in "$@"; do
    case "$arg" in
        --) break ;;
        --lib | --bin | --bin=* | --bins | --test | --test=* | --tests | \
            --bench | --bench=* | --benches | --example | --example=* | \
            --examples | --all-targets | --doc)
            selects_targets=true ;;
    esac
done

if $selects_targets; then
    run_cargo_test "$@"
else
    # Every crate of the workspace, so that none of their tests drops out silently.
    # --all-targets leaves out doctests, hence the second run. The feature brings in the
    # cache_hit bench (required-features), so that it is still built and smoke-run here.
    run_cargo_test --workspace --all-targets --features memory-source "$@"
    run_cargo_test --workspace --doc "$@"
    # The packages tier (a release build, the .deb and the .rpm, installs into scratch roots)
    # runs with the whole suite only, not with a filtered run.
    if [[ $# -eq 0 ]]; then
        say "packages"
        packaging/build-packages.sh
        # The Lambda layer, from the release binary the packages tier built.
        say "lambda layer"
        packaging/lambda/build-layer.sh --no-build
        # The package the packages tier just built, under a real systemd booted in a container.
        say "systemd tier"
        scripts/systemd-tier.sh
        # The fuzz targets' smoke run, also with the whole suite only. They need nightly; a
        # machine without it says so in capitals rather than pass as if they had run.
        if cargo +nightly --version >/dev/null 2>&1; then
            say "fuzz smoke (20 s a target)"
            scripts/fuzz.sh 20
        else
            say "FUZZ SMOKE SKIPPED: no nightly toolchain (cargo +nightly --version fails)"
        fi
    fi
fi
say "all tests passed"
