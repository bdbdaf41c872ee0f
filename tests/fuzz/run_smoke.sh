#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fuzz smoke test: configures a clang build in build/fuzz, builds fuzz_safetensors and runs it for
# SECONDS (default 60) with -max_len=4096 on a copy of tests/fuzz/corpus. Exits non-zero if the
# build fails or the fuzzer finds a crash (its reproducer is left in build/fuzz/artifacts/).
# Usage: tests/fuzz/run_smoke.sh [SECONDS]     (env: JOBS=2 build parallelism, CXX=clang++)
set -euo pipefail
seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$root/build/fuzz"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
  -DMEMBOUND_FUZZ=ON -DMEMBOUND_BUILD_TESTS=OFF -DMEMBOUND_BUILD_BENCH=OFF -DMEMBOUND_BUILD_EXAMPLES=OFF \
  -DMEMBOUND_INSTALL=OFF >/dev/null
cmake --build "$build" --target fuzz_safetensors -j "${JOBS:-2}"
work="$build/corpus_safetensors"
rm -rf "$work"
mkdir -p "$work" "$build/artifacts"
cp "$root"/tests/fuzz/corpus/* "$work"/
echo "fuzz_safetensors: running for ${seconds}s on a copy of tests/fuzz/corpus"
# The fuzzer's progress lines go to build/fuzz/fuzz.log; the log's tail is printed either way.
log="$build/fuzz.log"
rc=0
"$build/tests/fuzz/fuzz_safetensors" -max_len=4096 -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$build/artifacts/" -dict="$root/tests/fuzz/safetensors.dict" "$work" >"$log" 2>&1 || rc=$?
grep -E '^(INFO: (Loaded|seed)|stat::)|ERROR|SUMMARY|Done [0-9]+ runs' "$log" || true
if [ "$rc" -ne 0 ]; then
  tail -n 60 "$log"
  echo "fuzz_safetensors failed (exit $rc); reproducer in $build/artifacts/"
fi
exit "$rc"
