#!/usr/bin/env bash
# Installs the Debian 12 packages membound's builds need, only those missing. Run as root (or with
# sudo available). Usage: tools/deps.sh [extra-package ...]
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-14-dev pkg-config meson
      libeigen3-dev libxsimd-dev xtl-dev nlohmann-json3-dev libdnnl-dev ocl-icd-opencl-dev doctest-dev libbenchmark-dev libstb-dev libpcre2-dev
      libpython3-stdlib "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "membound: installing missing Debian packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
