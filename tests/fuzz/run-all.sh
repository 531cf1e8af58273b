#!/bin/sh
# run-all.sh - runs every libFuzzer target of a fuzz build on its seed corpus and prints what each did.
#
#   run-all.sh BUILD_DIR [SECONDS]
#
# Each BUILD_DIR/fuzz/fuzz_<x> runs for SECONDS (default 60) on tests/fuzz/corpus/<x>; new inputs
# go to fuzz-corpus-out/<x>, the full libFuzzer log to fuzz-corpus-out/fuzz_<x>.log and a crashing
# input to fuzz-corpus-out/fuzz_<x>-crash-*. A summary (executions, rate, coverage) ends the run;
# the exit status is 1 if any target found a crash.
set -eu
build=${1:?usage: run-all.sh BUILD_DIR [SECONDS]}
secs=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$here/../.." && pwd)/fuzz-corpus-out
status=0
found=0
summary=""
mkdir -p "$out"
for bin in "$build"/fuzz/fuzz_*; do
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        continue
    fi
    found=1
    name=$(basename "$bin")
    short=${name#fuzz_}
    seeds=$here/corpus/$short
    work=$out/$short
    log=$out/$name.log
    mkdir -p "$work"
    echo "== $name: ${secs}s on $seeds (new inputs in $work, log in $log)"
    if "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$out/$name-" \
        "$work" "$seeds" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\) .*/\1/p')
    if [ "$result" = FAILED ]; then
        # the report (sanitizer or CHECK message, stack, the crashing input's name)
        grep -v -E '^#[0-9]+' "$log" | tail -n 60
        echo "== $name FAILED (crash input saved under $out/$name-*)"
    fi
    echo "== $name: $result, ${execs:-?} executions (${rate:-?}/s), coverage ${cov:-?} edges"
    summary="$summary$(printf '%-16s %-7s %12s %10s %9s' "$name" "$result" "${execs:-?}" \
        "${rate:-?}" "${cov:-?}")
"
done
if [ "$found" = 0 ]; then
    echo "run-all.sh: no fuzz targets in $build/fuzz (configure with -DPETAL_FUZZ=ON and build fuzz-all)" >&2
    exit 1
fi
echo
echo "fuzzing summary (${secs}s per target)"
printf '%-16s %-7s %12s %10s %9s\n' target result executions "exec/s" coverage
printf '%s' "$summary"
exit $status
