#!/bin/sh
# run-all.sh BUILD_DIR - runs every benchmark binary in BUILD_DIR/bench and prints its results.
set -u
build=${1:?usage: run-all.sh BUILD_DIR}
status=0
found=0
for bin in "$build"/bench/*; do
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        continue
    fi
    found=1
    echo "== $(basename "$bin")"
    if ! "$bin"; then
        echo "== $(basename "$bin") FAILED"
        status=1
    fi
    echo
done
if [ "$found" = 0 ]; then
    echo "run-all.sh: no benchmarks in $build/bench (build the bench-all target first)" >&2
    exit 1
fi
exit $status
