#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The ISA matrix: builds the tests of every file with ISA-specific code paths (the `test_isa`
# target: backend kernels and conversions, the GEMM entry, nn convolutions, kv decode and prefill
# attention) once per x86 level, with -Wall -Wextra -Werror (MEMBOUND_WERROR) and no -march=native:
#   g++:     -march=x86-64 (baseline: SSE2, the scalar paths), x86-64-v2 (SSE4.2), x86-64-v3 (AVX2 +
#            FMA + F16C), x86-64-v4 (AVX-512 F/BW/DQ/VL/CD)
#   clang++: -march=x86-64 and -march=x86-64-v4 (the two ends)
# Each level this host can execute is run; a level it cannot (glibc's loader says which it
# supports) is compiled only, and the log says so. Builds at -O1 without the 2^32 conversion
# sweeps to stay cheap (about 8 minutes on 2 cores; figures in bench/README.md).
# Usage: tools/isa_matrix.sh [CONFIG ...]   CONFIG: gcc-x86-64, gcc-x86-64-v2, ..., clang-x86-64-v4
#   env: ISA_BUILD=build/isa (build folders), CMAKE_BUILD_PARALLEL_LEVEL
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(gcc-x86-64 gcc-x86-64-v2 gcc-x86-64-v3 gcc-x86-64-v4 clang-x86-64 clang-x86-64-v4)
root=${ISA_BUILD:-build/isa}
supported=$(/lib64/ld-linux-x86-64.so.2 --help 2>/dev/null | grep -oE 'x86-64-v[234] \(supported' | cut -d' ' -f1 || true)
can_run() { [ "$1" = x86-64 ] || grep -qx "$1" <<<"$supported"; }
summary=()
for c in "${configs[@]}"; do
  cc=${c%%-*}
  level=${c#*-}
  case "$cc" in gcc) cxx=g++ ;; clang) cxx=clang++ ;; *) echo "unknown compiler in $c"; exit 2 ;; esac
  t0=$(date +%s)
  dir="$root/$c"
  echo "::: isa $c: configure and build test_isa with $cxx -march=$level -O1 -Werror"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="-march=$level" -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
    -DMEMBOUND_NATIVE=OFF -DMEMBOUND_WERROR=ON -DMEMBOUND_EXHAUSTIVE=OFF \
    -DMEMBOUND_BUILD_BENCH=OFF -DMEMBOUND_BUILD_EXAMPLES=OFF -DMEMBOUND_INSTALL=OFF >/dev/null
  cmake --build "$dir" --target test_isa
  if can_run "$level"; then
    "$dir/tests/test_isa" --minimal
    summary+=("$c: built and passed ($(( $(date +%s) - t0 )) s)")
  else
    echo "::: isa $c: this host cannot execute -march=$level; compiled only"
    summary+=("$c: compiled only, this host cannot execute $level ($(( $(date +%s) - t0 )) s)")
  fi
done
printf '::: isa %s\n' "${summary[@]}"
