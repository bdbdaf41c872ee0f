#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fuzz runs: configures a clang build in build/fuzz, builds the libFuzzer targets and runs each for
# SECONDS (default 60) on a copy of its seed corpus, with its dictionary:
#   fuzz_safetensors  tests/fuzz/corpus        tests/fuzz/safetensors.dict   (safetensors buffer reader)
#   fuzz_index        tests/fuzz/corpus_index  tests/fuzz/index.dict         (sharded index JSON)
#   fuzz_image        tests/fuzz/corpus_image  tests/fuzz/image.dict         (PNG / JPEG via stb_image)
#   fuzz_voxel        tests/fuzz/corpus_voxel  tests/fuzz/voxel.dict         (occupancy voxel grids)
#   fuzz_hf_config    tests/fuzz/corpus_hf_config tests/fuzz/hf_config.dict  (config.json, generation_config.json)
#   fuzz_tokenizer    tests/fuzz/corpus_tokenizer tests/fuzz/tokenizer.dict  (tokenizer.json, encode / decode)
# Exits non-zero if the build fails or a fuzzer finds a crash (its reproducer is left in
# build/fuzz/artifacts/). The last lines of each run (executions, coverage, features) are printed.
# Usage: tests/fuzz/run_smoke.sh [SECONDS] [TARGET ...]
#   env: JOBS=2 build parallelism, PAR=$JOBS fuzz runs side by side, CXX=clang++, MAX_LEN=4096
#   (-max_len), FUZZ_BUILD=build/fuzz (build folder), FUZZ_OUT=$FUZZ_BUILD (logs, working corpora,
#   artifacts)
#   The long runs recorded in tests/fuzz/README.md: MAX_LEN=65536 tests/fuzz/run_smoke.sh 3600 TARGET
set -euo pipefail
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_index fuzz_image fuzz_voxel fuzz_hf_config fuzz_tokenizer)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
for t in "${targets[@]}"; do
  case "$t" in
    fuzz_safetensors | fuzz_index | fuzz_image | fuzz_voxel | fuzz_hf_config | fuzz_tokenizer) ;;
    *) echo "unknown fuzz target $t"; exit 2 ;;
  esac
done
build="${FUZZ_BUILD:-$root/build/fuzz}"
out="${FUZZ_OUT:-$build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
  -DMEMBOUND_FUZZ=ON -DMEMBOUND_BUILD_TESTS=OFF -DMEMBOUND_BUILD_BENCH=OFF -DMEMBOUND_BUILD_EXAMPLES=OFF \
  -DMEMBOUND_INSTALL=OFF >/dev/null
cmake --build "$build" --target "${targets[@]}" -j "${JOBS:-2}"
mkdir -p "$out/artifacts"
# run_one TARGET: one fuzz run; its progress lines go to $out/TARGET.log, its exit code to
# $out/TARGET.rc. PAR runs go side by side (default: JOBS), each on its own working corpus.
run_one() {
  local t=$1 seeds dict
  case "$t" in
    fuzz_safetensors) seeds=corpus; dict=safetensors.dict ;;
    fuzz_index) seeds=corpus_index; dict=index.dict ;;
    fuzz_image) seeds=corpus_image; dict=image.dict ;;
    fuzz_voxel) seeds=corpus_voxel; dict=voxel.dict ;;
    fuzz_hf_config) seeds=corpus_hf_config; dict=hf_config.dict ;;
    fuzz_tokenizer) seeds=corpus_tokenizer; dict=tokenizer.dict ;;
  esac
  local work="$out/work_$t" rc=0
  rm -rf "$work" && mkdir -p "$work"
  cp "$root/tests/fuzz/$seeds"/* "$work"/
  "$build/tests/fuzz/$t" -max_len="${MAX_LEN:-4096}" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$t-" -dict="$root/tests/fuzz/$dict" "$work" >"$out/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$out/$t.rc"
}
par=${PAR:-${JOBS:-2}}
status=0
for ((i = 0; i < ${#targets[@]}; i += par)); do
  batch=("${targets[@]:i:par}")
  for t in "${batch[@]}"; do
    echo "$t: running for ${seconds}s on a copy of its seed corpus (-max_len=${MAX_LEN:-4096})"
    rm -f "$out/$t.rc" # a run that dies before writing its code counts as failed (below)
    run_one "$t" &
  done
  wait
  for t in "${batch[@]}"; do
    log="$out/$t.log"
    rc=$(cat "$out/$t.rc" 2>/dev/null || echo 1)
    echo "--- $t"
    grep -E '^(INFO: (Loaded|seed)|stat::)|ERROR|SUMMARY|Done [0-9]+ runs' "$log" || true
    grep -E '^#[0-9]+' "$log" | tail -n 1 || true
    if [ "$rc" -ne 0 ]; then
      tail -n 60 "$log"
      echo "$t failed (exit $rc); reproducer in $out/artifacts/"
      status=$rc
    fi
  done
done
exit "$status"
