#!/usr/bin/env bash
# Installs the Debian 12 packages accmig needs; does nothing when they are
# already there (idempotent). Run as root or with sudo available.
set -euo pipefail

pkgs=(meson ninja-build pkg-config gcc clang libclang-rt-14-dev
      libisal-dev zlib1g-dev libjson-c-dev libcmocka-dev libssl-dev iproute2)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
