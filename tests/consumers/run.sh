#!/usr/bin/env bash
# Proves the three ways to consume membound (and pkg-config): install + find_package,
# add_subdirectory, FetchContent, a Meson subproject, and pkg-config flags. Each builds
# tests/consumers/consumer.cpp and runs it; two at a time (env JOBS).
# Usage: tests/consumers/run.sh [workdir]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$root/build/consumers}
rm -rf "$work" && mkdir -p "$work"
cd "$work"
# Each consumer is a function; after the install, they run JOBS at a time (default 2), each
# logging to $work/NAME.log, and the logs are printed in order.
export CMAKE_BUILD_PARALLEL_LEVEL=1

install_prefix() {
  cmake -S "$root" -B install-build -G Ninja -DMEMBOUND_BUILD_TESTS=OFF -DMEMBOUND_BUILD_BENCH=OFF \
    -DMEMBOUND_BUILD_EXAMPLES=OFF -DMEMBOUND_INSTALL=ON -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
  cmake --install install-build >/dev/null
}
find_package_consumer() {
  cmake -S "$root/tests/consumers/find_package" -B find_package -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
  cmake --build find_package >/dev/null && ./find_package/consumer
}
add_subdirectory_consumer() {
  cmake -S "$root/tests/consumers/add_subdirectory" -B add_subdirectory -G Ninja -DMEMBOUND_ROOT="$root" >/dev/null
  cmake --build add_subdirectory >/dev/null && ./add_subdirectory/consumer
}
fetch_content_consumer() {
  tar -C "$root" --exclude=./build --exclude=./.git --exclude='./.venv*' -czf "$work/membound.tar.gz" .
  cmake -S "$root/tests/consumers/fetch_content" -B fetch_content -G Ninja -DMEMBOUND_TARBALL="$work/membound.tar.gz" >/dev/null
  cmake --build fetch_content >/dev/null && ./fetch_content/consumer
}
meson_subproject_consumer() {
  mkdir -p meson_src/subprojects/membound
  cp "$root/tests/consumers/meson_subproject/meson.build" meson_src/
  cp "$root/tests/consumers/consumer.cpp" meson_src/
  (cd "$root" && cp -r include meson.build meson_options.txt "$work/meson_src/subprojects/membound/")
  meson setup meson_build meson_src >/dev/null
  meson compile -C meson_build -j 1 >/dev/null && ./meson_build/consumer
}
pkg_config_consumer() {
  local flags
  flags=$(PKG_CONFIG_PATH="$work/prefix/share/pkgconfig" pkg-config --cflags membound)
  g++ -O2 $flags "$root/tests/consumers/consumer.cpp" -o pkgconfig_consumer
  ./pkgconfig_consumer
}

echo "--- consumer: install (for find_package and pkg-config)"
install_prefix
names=(find_package add_subdirectory fetch_content meson_subproject pkg_config)
titles=("install + find_package" "add_subdirectory" "FetchContent" "Meson subproject" "pkg-config")
jobs=${JOBS:-2}
pids=()
for n in "${names[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  ( set -e; "${n}_consumer" ) >"$work/$n.log" 2>&1 &
  pids+=($!)
done
failed=0
for j in "${!names[@]}"; do
  rc=0
  wait "${pids[j]}" || rc=$?
  echo "--- consumer: ${titles[j]}"
  cat "$work/${names[j]}.log"
  if [ "$rc" -ne 0 ]; then
    echo "--- consumer ${titles[j]} failed (exit $rc)"
    failed=1
  fi
done
[ "$failed" -eq 0 ]
echo "--- all consumers passed"
