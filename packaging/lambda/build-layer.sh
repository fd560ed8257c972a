#!/usr/bin/env bash
# Builds the Lambda layer of the secretsfs extension (docs/lambda.md): a zip holding
# extensions/secretsfs, the stripped release binary, which Lambda runs as an external
# extension from /opt/extensions/. Then checks it: the layout, the mode, that the binary runs,
# and the glibc it needs (Lambda's Amazon Linux 2023 runtimes have 2.34; Amazon Linux 2's
# 2.26 is too old for a binary built here).
#   packaging/lambda/build-layer.sh [--no-build]     -> target/lambda/secretsfs-layer-x86_64.zip
# Only this machine's architecture is built (x86_64 here): the arm64 layer needs the
# aarch64-unknown-linux-gnu Rust target and a cross linker, which this script does not
# install.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=1
[[ ${1:-} == --no-build ]] && build=0
arch=$(uname -m)
say() { printf 'build-layer: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

for tool in zip unzip; do
    command -v "$tool" >/dev/null || {
        say "installing $tool"
        apt-get install -y "$tool" >/dev/null 2>&1 ||
            { apt-get update >/dev/null && apt-get install -y "$tool" >/dev/null; }
    }
done
if [[ $build == 1 ]]; then
    cargo build --release --locked --quiet
fi
bin=target/release/secretsfs
[[ -x $bin ]] || fail "no $bin: build it, or leave out --no-build"

out=target/lambda
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/extensions"
strip -o "$stage/extensions/secretsfs" "$bin"
chmod 755 "$stage/extensions/secretsfs"
zip_path=$out/secretsfs-layer-$arch.zip
rm -f "$zip_path"
# zip keeps the Unix mode, which Lambda needs to run the extension.
(cd "$stage" && zip -q -X -r "../$(basename "$zip_path")" extensions)

# --- checks ------------------------------------------------------------------------------
listing=$(unzip -Z1 "$zip_path")
[[ $listing == $'extensions/\nextensions/secretsfs' ]] || fail "the zip holds $listing"
unzip -Z "$zip_path" extensions/secretsfs | grep -q '^-rwxr-xr-x' ||
    fail "extensions/secretsfs is not mode 755 in the zip"
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
unzip -q "$zip_path" -d "$check"
"$check/extensions/secretsfs" --version >/dev/null || fail "the binary in the zip does not run"
glibc=$(objdump -T "$check/extensions/secretsfs" | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
highest=${glibc#GLIBC_}
if [[ $(printf '%s\n2.34\n' "$highest" | sort -V | tail -1) != 2.34 ]]; then
    fail "the binary needs glibc $highest; Lambda's Amazon Linux 2023 has 2.34"
fi
size=$(stat -c %s "$zip_path")
say "$zip_path: extensions/secretsfs ($arch, needs glibc $highest or later), $size bytes"
echo "$zip_path"
