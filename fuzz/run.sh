#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60): `fuzz/run.sh 3600` is the long run.
# Needs a nightly toolchain and cargo-fuzz, installed here when missing; the project's own
# build needs neither. New inputs go to target/fuzz-corpus/<target>; the seeds under
# fuzz/seeds/<target> are read, never written (corral-master's `fuzzing::seeds` test keeps
# those of requests, agents' messages and registry records). A crash stops the run, leaves
# its input under fuzz/artifacts/<target>/, and fails the script.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

for target in $(cargo +nightly fuzz list); do
    corpus=../target/fuzz-corpus/$target
    mkdir -p "$corpus" "seeds/$target"
    echo "== fuzz $target (${seconds}s)"
    cargo +nightly fuzz run "$target" "$corpus" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
