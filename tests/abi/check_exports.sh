#!/bin/sh
# check_exports.sh - every plugin under DIR exports exactly one symbol: petal_plugin_entry_v1.
# Usage: check_exports.sh BUILD/plugins
# Symbols a sanitizer build adds on its own (__asan_*, __ubsan_*, __odr_asan_*, __tsan_*) and
# the ELF section markers (_init, _fini, _edata, _end, __bss_start) are not the plugin's.
set -u
dir=${1:?usage: check_exports.sh PLUGIN_DIR}
command -v nm >/dev/null 2>&1 || { echo "check_exports: nm not found" >&2; exit 1; }

plugins=$(find "$dir" -name '*.so' -type f | sort)
if [ -z "$plugins" ]; then
    echo "check_exports: no plugins under $dir" >&2
    exit 1
fi

status=0
count=0
for so in $plugins; do
    count=$((count + 1))
    syms=$(nm -D --defined-only "$so" | awk '{ print $NF }' |
           grep -Ev '^(_init|_fini|_edata|_end|__bss_start|__(asan|ubsan|odr_asan|tsan|sanitizer)[A-Za-z0-9_.]*)$' |
           sort)
    if [ "$syms" != "petal_plugin_entry_v1" ]; then
        echo "FAIL $so exports:" >&2
        printf '%s\n' "$syms" | sed 's/^/    /' >&2
        echo "  (build plugins with -fvisibility=hidden and mark only the entry point" \
             "PETAL_PLUGIN_EXPORT)" >&2
        status=1
    else
        echo "ok   $so"
    fi
done
echo "check_exports: $count plugin(s) checked"
exit $status
