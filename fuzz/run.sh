#!/usr/bin/env bash
# Build every fuzz target once, then run them one after another and print how far each
# got.
#
#   fuzz/run.sh [seconds-per-target] [target...]     default: 150 s, every target
#
# cargo-fuzz needs nightly for -Zsanitizer. Without a nightly toolchain this runs on
# stable with RUSTC_BOOTSTRAP=1, which lets stable rustc accept the -Z flags (fine for a
# fuzzing build, never for a release). New corpus entries go to fuzz/corpus/<target>
# (gitignored); the committed seeds in fuzz/seeds/<target> are read, never written. A
# crash stops that target and leaves its input in fuzz/artifacts/<target>/: keep it in
# fuzz/artifacts-kept/<target>/ with a name that says what it breaks.
set -uo pipefail
cd "$(dirname "$0")"

secs=${1:-150}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request_head response_head chunked request_roundtrip cache_rules client_cert traceparent admin_request template json_field)
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

# One build for all targets (same flags as `cargo fuzz run`), so every target fuzzes
# the same snapshot of the library.
triple=$(rustc -vV | sed -n 's/^host: //p')
if ! cargo "${toolchain[@]}" fuzz build --target "$triple"; then
    echo "fuzz build failed" >&2
    exit 2
fi
bin_dir=target/$triple/release

logs=target/fuzz-logs # under target/, which is gitignored
mkdir -p "$logs"
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t: ${secs}s"
    ASAN_OPTIONS=detect_odr_violation=0 "$bin_dir/$t" "corpus/$t" "seeds/$t" \
        -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -print_final_stats=1 \
        >"$logs/$t.log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1)
    if [ $rc -eq 0 ]; then
        summary+=("$t: ok, ${runs:-?} executions in ${secs}s, $cov")
    else
        status=1
        crash=$(grep -o 'Test unit written to .*' "$logs/$t.log" | tail -1)
        summary+=("$t: FAILED (exit $rc) after ${runs:-?} executions; ${crash:-see fuzz/$logs/$t.log}")
        grep -m1 -A3 'invariant broken\|panicked at' "$logs/$t.log" | sed 's/^/    /'
    fi
done
printf '%s\n' "${summary[@]}"
exit $status
