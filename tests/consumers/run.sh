#!/usr/bin/env bash
# Proves the three ways to consume membound (and pkg-config): install + find_package,
# add_subdirectory, FetchContent, a Meson subproject, and pkg-config flags. Each builds
# tests/consumers/consumer.cpp and runs it. Usage: tests/consumers/run.sh [workdir]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$root/build/consumers}
rm -rf "$work" && mkdir -p "$work"
cd "$work"
step() { echo "--- consumer: $1"; }

step "install + find_package"
cmake -S "$root" -B install-build -G Ninja -DMEMBOUND_BUILD_TESTS=OFF -DMEMBOUND_BUILD_BENCH=OFF \
  -DMEMBOUND_BUILD_EXAMPLES=OFF -DMEMBOUND_INSTALL=ON -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
cmake --install install-build >/dev/null
cmake -S "$root/tests/consumers/find_package" -B find_package -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build find_package >/dev/null && ./find_package/consumer

step "add_subdirectory"
cmake -S "$root/tests/consumers/add_subdirectory" -B add_subdirectory -G Ninja -DMEMBOUND_ROOT="$root" >/dev/null
cmake --build add_subdirectory >/dev/null && ./add_subdirectory/consumer

step "FetchContent"
tar -C "$root" --exclude=./build --exclude=./.git --exclude=./.venv -czf "$work/membound.tar.gz" .
cmake -S "$root/tests/consumers/fetch_content" -B fetch_content -G Ninja -DMEMBOUND_TARBALL="$work/membound.tar.gz" >/dev/null
cmake --build fetch_content >/dev/null && ./fetch_content/consumer

step "Meson subproject"
mkdir -p meson_src/subprojects/membound
cp "$root/tests/consumers/meson_subproject/meson.build" meson_src/
cp "$root/tests/consumers/consumer.cpp" meson_src/
(cd "$root" && cp -r include meson.build meson_options.txt "$work/meson_src/subprojects/membound/")
meson setup meson_build meson_src >/dev/null
meson compile -C meson_build >/dev/null && ./meson_build/consumer

step "pkg-config"
export PKG_CONFIG_PATH="$work/prefix/share/pkgconfig"
flags=$(pkg-config --cflags membound)
g++ -O2 $flags "$root/tests/consumers/consumer.cpp" -o pkgconfig_consumer
./pkgconfig_consumer
echo "--- all consumers passed"
