#!/usr/bin/env bash
# Builds and runs Flux's fuzz targets, one after another (one job, one core), each for
# SECONDS, and prints per target: executions, final coverage (cov/ft from libFuzzer's
# last status line), corpus size and crashes. See fuzz/README.md.
#
#   fuzz/run.sh all 600          every target for 10 minutes each
#   fuzz/run.sh log_scan 60      one target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). The stable toolchain is used with
# RUSTC_BOOTSTRAP=1, which lets it accept the -Z sanitizer flags cargo-fuzz passes.
# The corpus grows in fuzz/corpus/TARGET (not checked in), seeded from fuzz/seeds/TARGET;
# crashes land in fuzz/artifacts/TARGET, logs in fuzz/logs/TARGET.log.
set -euo pipefail

TARGETS=(http_pipeline http_query ingest_decode ws_message log_scan snapshot_load registry_file)

# Largest input per target: room past the limits each parser enforces (16 KiB heads,
# 16 KiB WebSocket messages, a segment of more than one page).
max_len() {
    case "$1" in
        http_pipeline) echo 20480 ;;
        ws_message) echo 16640 ;;
        ingest_decode | log_scan | snapshot_load) echo 9216 ;;
        *) echo 4096 ;;
    esac
}

usage() {
    echo "usage: $0 TARGET|all SECONDS   (targets: ${TARGETS[*]})" >&2
    exit 2
}

[[ $# -eq 2 && $2 =~ ^[0-9]+$ ]] || usage
if [[ $1 == all ]]; then
    selected=("${TARGETS[@]}")
else
    [[ " ${TARGETS[*]} " == *" $1 "* ]] || usage
    selected=("$1")
fi
seconds=$2

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
# Cargo caches rustc's answers to its target-info probe in this file without the
# environment in the key: a probe that once failed (a `cargo fuzz` run without
# RUSTC_BOOTSTRAP) keeps failing with "the option `Z` is only accepted on the nightly
# compiler" until the file goes. Re-probing costs a fraction of a second.
rm -f target/.rustc_info.json
nice -n 10 cargo fuzz build

rows=()
for t in "${selected[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" logs
    before=$(find "artifacts/$t" -type f | wc -l)
    log="logs/$t.log"
    echo "== $t: ${seconds}s (log: fuzz/$log)" >&2
    # -timeout: one input taking 10 s is a finding too (bounded work per request).
    set +e
    nice -n 10 cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(find "corpus/$t" -type f | wc -l)
    crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        echo "$t: cargo fuzz exited with $status and no artifact; see fuzz/$log" >&2
        crashes="?"
    fi
    rows+=("$(printf '%-14s %8s %12s %6s %7s %7s %7s' "$t" "$seconds" "${execs:-?}" \
        "${cov:-?}" "${ft:-?}" "$corpus" "$crashes")")
    if [[ $crashes != 0 ]]; then
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" >&2 || true
    fi
done

printf '%-14s %8s %12s %6s %7s %7s %7s\n' target seconds execs cov ft corpus crashes
printf '%s\n' "${rows[@]}"
