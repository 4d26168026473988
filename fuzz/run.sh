#!/usr/bin/env bash
# Run libFuzzer targets: run.sh MODE SECONDS TARGET...
#   MODE smoke: each target over its committed seeds (fuzz/corpus/<target>/, read only) for
#               SECONDS, new inputs in a temporary directory: `make fuzz-smoke` (in `make test`).
#   MODE fuzz:  each target for SECONDS, its generated corpus kept in fuzz/gen-corpus/<target>/
#               (git-ignored) and grown run after run: `make fuzz`.
# A crash, a failed invariant or a slow input stops the run: the input is in
# fuzz/artifacts/<target>/ and the log tail is printed. One summary line per target.
# Environment: FUZZ_BIN (the built targets), FUZZ_ARGS (more libFuzzer flags), FUZZ_LOGS
# (where logs go, default target/fuzz-logs), FUZZ_BUDGET_MS (per-input budget, default 10).
set -euo pipefail
mode=$1 seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
bin=${FUZZ_BIN:?FUZZ_BIN: directory of the built fuzz targets}
logs=${FUZZ_LOGS:-$here/../target/fuzz-logs}
mkdir -p "$logs"
status=0
for t in "$@"; do
    seeds=$here/corpus/$t
    mkdir -p "$here/artifacts/$t"
    case $mode in
        smoke) work=$(mktemp -d) ;;
        fuzz) work=$here/gen-corpus/$t; mkdir -p "$work" ;;
        *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    args=(-max_total_time="$seconds" -timeout=2 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix="$here/artifacts/$t/")
    case $t in config | jwks) args+=(-dict="$here/dicts/json.dict") ;; esac
    log=$logs/$t.log
    start=$(date +%s)
    # shellcheck disable=SC2086
    if "$bin/$t" "${args[@]}" ${FUZZ_ARGS:-} "$work" "$seeds" >"$log" 2>&1; then
        rc=0
    else
        rc=$?
    fi
    [ "$mode" = smoke ] && rm -rf "$work"
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    if [ "$rc" -ne 0 ] || [ -z "$done_line" ]; then
        echo "FAIL $t (exit $rc) after $(( $(date +%s) - start )) s; log $log:" >&2
        grep -E 'panicked|SLOW|DIFFER|ACCEPTED|REFUSED|ERROR|SUMMARY|Test unit written|^Base64' "$log" >&2 || tail -n 30 "$log" >&2
        status=1
        break
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "ok   $t: $runs runs in $(( $(date +%s) - start )) s; ${done_line#*DONE   }"
done
exit $status
