#!/usr/bin/env bash
# The full test suite: installs missing Debian packages, configures the `release` preset, builds
# everything (tests, benchmarks, examples) and runs CTest. Usage: tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release -j2
