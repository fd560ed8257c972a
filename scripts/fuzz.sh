#!/usr/bin/env bash
# Builds the cargo-fuzz targets (fuzz/) and runs each for a bounded time, one after another,
# one process each (one core):
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Needs a nightly toolchain (`cargo +nightly`); installs cargo-fuzz, pinned, into
# target/tools/fuzz when that version is missing. The committed seeds (fuzz/corpus/TARGET/) are
# read, never written: the corpus grows under target/fuzz/corpus/TARGET/, crashes land in
# target/fuzz/artifacts/TARGET/, libFuzzer's output in target/fuzz/logs/TARGET.log.
#
# Prints one line per target (runs executed, crash or not) and exits 1 when any crashed, 2
# when it could not run (no nightly, the install or the build failed).
set -euo pipefail

{
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cargo_fuzz_version=0.13.2
say() { printf 'fuzz.sh: %s\n' "$*"; }
die() {
    printf 'fuzz.sh: error: %s\n' "$*" >&2
    exit 2
}

seconds=${1:-60}
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "SECONDS_PER_TARGET must be a whole number above 0, not ${seconds@Q}"
shift || true
all_targets=(selector http config secrets_file template_compile template_render sdk_answer)
targets=("${@:-${all_targets[@]}}")
for t in "${targets[@]}"; do
    [[ -f "fuzz/fuzz_targets/$t.rs" ]] || die "no fuzz target $t (fuzz/fuzz_targets/)"
done

cargo +nightly --version >/dev/null 2>&1 || die "no nightly toolchain (cargo +nightly --version fails)"

work="$repo_root/target/fuzz"
tools="$repo_root/target/tools/fuzz"
if "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -qxF "cargo-fuzz $cargo_fuzz_version"; then
    say "cargo-fuzz $cargo_fuzz_version already installed"
else
    say "installing cargo-fuzz $cargo_fuzz_version into $tools"
    cargo install --locked --force --quiet --root "$tools" cargo-fuzz --version "$cargo_fuzz_version" ||
        die "installing cargo-fuzz $cargo_fuzz_version failed"
fi
export PATH="$tools/bin:$PATH"

# No sanitizer: the code fuzzed is safe Rust, whose bugs are panics, and ASan would halve the
# executions. Release with debug assertions and overflow checks (cargo-fuzz's default).
say "building the targets"
mkdir -p "$work"
cargo +nightly fuzz build --sanitizer none --target-dir "$work" >"$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log" >&2; die "the build failed (log: $work/build.log)"; }
bin_dir="$work/x86_64-unknown-linux-gnu/release"

crashed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
    log="$work/logs/$t.log"
    status=0
    started=$SECONDS
    # -timeout: an input that takes this long is a hang, reported as a crash.
    "$bin_dir/$t" "$work/corpus/$t" "fuzz/corpus/$t" \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
        -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    took=$((SECONDS - started))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "$work/corpus/$t" -type f | wc -l)
    if [[ $status -eq 0 ]]; then
        say "$t: ${runs:-?} runs in $took s, no crash (corpus $corpus inputs)"
    else
        crashed=$((crashed + 1))
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        say "$t: CRASH after ${runs:-?} runs in $took s (exit $status; input ${artifact:-not written}; log $log)"
        # The panic's place and message (the targets' own messages never show a value).
        grep -m1 -A1 "panicked at" "$log" | sed 's/^/    /' || grep -m1 "ERROR: libFuzzer" "$log" || true
    fi
done

if [[ $crashed -gt 0 ]]; then
    say "$crashed of ${#targets[@]} targets crashed"
    exit 1
fi
say "no crash in ${#targets[@]} target(s)"
exit 0
}
