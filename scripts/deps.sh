#!/bin/sh
# deps.sh - installs the Debian packages Petal needs that are missing; quiet when none are.
set -eu
PKGS="build-essential cmake pkg-config libuv1-dev libmsgpack-dev libsodium-dev libssl-dev check libsqlite3-dev
libinih-dev zlib1g-dev libopenblas-dev dataset-fashion-mnist clang libclang-rt-14-dev
libcairo2-dev libjson-c-dev fonts-dejavu-core"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "petal: installing missing packages:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
