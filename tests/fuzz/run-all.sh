#!/bin/sh
# run-all.sh BUILD_DIR [SECONDS] - runs every libFuzzer target in BUILD_DIR/fuzz for SECONDS each
# (default 60) on its seed corpus tests/fuzz/corpus/<name>; new inputs go to fuzz-corpus-out/<name>.
set -eu
build=${1:?usage: run-all.sh BUILD_DIR [SECONDS]}
secs=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$here/../.." && pwd)/fuzz-corpus-out
status=0
found=0
for bin in "$build"/fuzz/fuzz_*; do
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        continue
    fi
    found=1
    name=$(basename "$bin")
    short=${name#fuzz_}
    seeds=$here/corpus/$short
    work=$out/$short
    mkdir -p "$work"
    echo "== $name: ${secs}s on $seeds (new inputs in $work)"
    if ! "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$out/$name-" \
        "$work" "$seeds"; then
        echo "== $name FAILED (crash input saved under $out/$name-*)"
        status=1
    fi
done
if [ "$found" = 0 ]; then
    echo "run-all.sh: no fuzz targets in $build/fuzz (configure with -DPETAL_FUZZ=ON and build fuzz-all)" >&2
    exit 1
fi
exit $status
