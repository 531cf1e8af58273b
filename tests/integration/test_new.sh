#!/bin/sh
# test_new.sh - a new user's path: install Petal, `petal new`, build the app out of tree, run it.
# Usage: test_new.sh BUILD_DIR   (a configured and built Petal build tree)
set -u

BUILD=${1:?usage: test_new.sh BUILD_DIR}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/petal-new-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
failures=0
checks=0

fail() {
    echo "test_new: FAIL: $*" >&2
    failures=$((failures + 1))
}

pass() {
    echo "test_new: ok: $*"
}

# Shows a log file and stops: what follows depends on this step.
die() {
    echo "test_new: FAIL: $1" >&2
    [ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/    /' "$2" >&2
    echo "0 passed, 1 failed"
    exit 1
}

# 1. Install the current build into a temporary prefix.
checks=$((checks + 1))
cmake --install "$BUILD" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
    die "cmake --install $BUILD --prefix $tmp/prefix failed" "$tmp/install.log"
petal=$tmp/prefix/bin/petal
[ -x "$petal" ] || die "the install has no bin/petal" "$tmp/install.log"
[ -f "$tmp/prefix/include/petal/plugin.h" ] ||
    die "the install has no include/petal/plugin.h" "$tmp/install.log"
pass "cmake --install into a temporary prefix"

# 2. petal new writes a project.
checks=$((checks + 1))
cd "$tmp" || die "cannot cd to $tmp"
"$petal" new myapp >"$tmp/new.log" 2>&1 || die "petal new myapp failed" "$tmp/new.log"
for f in CMakeLists.txt client.c petal.toml README.md; do
    [ -f "myapp/$f" ] || die "petal new wrote no myapp/$f" "$tmp/new.log"
done
if "$petal" new myapp >"$tmp/new2.log" 2>&1; then
    fail "petal new over an existing directory succeeded"
elif ! grep -q "myapp" "$tmp/new2.log"; then
    fail "petal new over an existing directory does not name it: $(cat "$tmp/new2.log")"
fi
pass "petal new myapp"

# 3. The project configures and builds out of tree against the installed Petal.
checks=$((checks + 1))
cmake -S myapp -B myapp/build -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release \
    >"$tmp/configure.log" 2>&1 || die "the new project does not configure" "$tmp/configure.log"
cmake --build myapp/build >"$tmp/build.log" 2>&1 ||
    die "the new project does not build" "$tmp/build.log"
[ -f myapp/build/app/client.so ] && [ -f myapp/build/app/petal.toml ] ||
    die "the build made no app/client.so + app/petal.toml" "$tmp/build.log"
pass "the project builds with -DCMAKE_PREFIX_PATH"

# 4. The installed petal runs it.
checks=$((checks + 1))
"$petal" sim myapp/build/app --num-supernodes 3 --run-config "num-server-rounds=2" \
    >"$tmp/sim.out" 2>"$tmp/sim.err"
rc=$?
if [ $rc -ne 0 ]; then
    fail "petal sim of the new app exited $rc"
    sed 's/^/    /' "$tmp/sim.out" "$tmp/sim.err" >&2
elif ! grep -q "round 2/2" "$tmp/sim.out"; then
    fail "petal sim printed no \"round 2/2\""
    sed 's/^/    /' "$tmp/sim.out" >&2
else
    pass "petal sim myapp/build/app: round 2/2"
fi

# 5. pkg-config finds the installed headers, and a plugin builds with its flags alone.
checks=$((checks + 1))
pc=$(find "$tmp/prefix" -name petal.pc | head -n 1)
if [ -z "$pc" ]; then
    fail "the install has no petal.pc"
elif ! command -v pkg-config >/dev/null 2>&1; then
    fail "pkg-config is not installed"
else
    cflags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags petal 2>"$tmp/pc.err")
    if [ $? -ne 0 ]; then
        fail "pkg-config --cflags petal failed: $(cat "$tmp/pc.err")"
    else
        # The -I directory (however spelled) must be the installed include directory.
        want=$(cd "$tmp/prefix/include" && pwd -P)
        incdir=
        for flag in $cflags; do
            case $flag in
            -I*)
                d=$(cd "${flag#-I}" 2>/dev/null && pwd -P)
                [ "$d" = "$want" ] && incdir=$d
                ;;
            esac
        done
        if [ -z "$incdir" ]; then
            fail "pkg-config --cflags petal gives '$cflags', which does not point at" \
                "$tmp/prefix/include (petal.pc: $(grep '^prefix=' "$pc"))"
        else
            mkdir -p pcapp
            # shellcheck disable=SC2086 # cflags is a list of flags
            if ! cc $cflags -shared -o pcapp/client.so myapp/client.c -lm \
                >"$tmp/pc-build.log" 2>&1; then
                fail "the scaffold's client.c does not build with pkg-config's flags: $cflags"
                sed 's/^/    /' "$tmp/pc-build.log" >&2
            else
                cp myapp/petal.toml pcapp/
                if "$petal" sim pcapp --num-supernodes 2 --run-config "num-server-rounds=1" \
                    >"$tmp/pc-sim.out" 2>&1 && grep -q "round 1/1" "$tmp/pc-sim.out"; then
                    pass "pkg-config --cflags petal: $cflags"
                else
                    fail "a plugin built with pkg-config's flags does not run"
                    sed 's/^/    /' "$tmp/pc-sim.out" >&2
                fi
            fi
        fi
    fi
fi

# 6. petal new --server: the ServerApp plugin (FedAvg over the Grid by hand) builds and drives the run.
checks=$((checks + 1))
if ! "$petal" new withserver --server >"$tmp/new3.log" 2>&1; then
    fail "petal new withserver --server failed: $(cat "$tmp/new3.log")"
elif ! grep -q '^server = "server.so"' withserver/petal.toml; then
    fail "petal new --server wrote no server line into petal.toml"
elif ! cmake -S withserver -B withserver/build -DCMAKE_PREFIX_PATH="$tmp/prefix"     >"$tmp/configure3.log" 2>&1 || ! cmake --build withserver/build >"$tmp/build3.log" 2>&1; then
    fail "the --server project does not build"
    sed 's/^/    /' "$tmp/build3.log" >&2
elif ! [ -f withserver/build/app/server.so ]; then
    fail "the --server project built no app/server.so"
else
    "$petal" sim withserver/build/app --num-supernodes 3 --run-config "num-server-rounds=2" \
        --history "$tmp/h3.json" >"$tmp/sim3.out" 2>"$tmp/sim3.err"
    rc=$?
    # The hand-written server records train and evaluate metrics, and its loss must go down.
    l1=$(sed -n 's/.*"round": 1, "train": {"train-loss":\([0-9.e+-]*\).*/\1/p' "$tmp/h3.json")
    l2=$(sed -n 's/.*"round": 2, "train": {"train-loss":\([0-9.e+-]*\).*/\1/p' "$tmp/h3.json")
    if [ $rc -ne 0 ] || ! grep -q "round 2/2" "$tmp/sim3.out"; then
        fail "petal sim of the --server app exited $rc"
        sed 's/^/    /' "$tmp/sim3.out" "$tmp/sim3.err" >&2
    elif [ -z "$l1" ] || [ -z "$l2" ] || ! awk "BEGIN { exit !($l2 < $l1) }"; then
        fail "the server plugin's train-loss did not go down: round 1 '$l1', round 2 '$l2'"
    else
        pass "petal new --server: the server plugin ran 2 rounds (train-loss $l1 -> $l2)"
    fi
fi

echo "$((checks - failures)) passed, $failures failed"
[ $failures -eq 0 ]
