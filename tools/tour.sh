#!/usr/bin/env bash
# The tour: installs missing Debian packages, builds the example notebooks and runs them in order
# on their embedded defaults. Outputs (CSV, PNG where gnuplot exists; 40_efficientvit writes its
# PNGs itself) go to ./out/.
# Usage: tools/tour.sh [name-filter]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target examples
mkdir -p out
for exe in $(ls build/release/examples/ | grep -E '^[0-9][0-9]_' | sort); do
  [ -x "build/release/examples/$exe" ] || continue
  case "$exe" in *"${1:-}"*) ;; *) continue ;; esac
  echo
  echo "=================== examples/$exe.cpp ==================="
  (cd out && "../build/release/examples/$exe")
done
