# SPDX-License-Identifier: MIT
# membound_dev: the flags every test, benchmark and example of ours is built with. The floating-
# point flags are explicit and identical to meson.build's, so the scalar oracle gives the same bits
# in both builds: no FMA contraction, no fast-math, IEEE semantics.
add_library(membound_dev INTERFACE)
target_link_libraries(membound_dev INTERFACE membound::membound)
target_compile_options(membound_dev INTERFACE
  -ffp-contract=off -fno-fast-math -fno-finite-math-only
  -Wall -Wextra -Wpedantic -Wshadow -Wno-psabi
  # GCC 12 reports false (maybe-)uninitialized warnings inside its AVX-512 intrinsics as inlined by
  # Eigen (-Wuninitialized at -O1/-O2 with -march=x86-64-v4, seen by tools/isa_matrix.sh).
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized -Wno-uninitialized>)
if(MEMBOUND_NATIVE)
  target_compile_options(membound_dev INTERFACE -march=native)
endif()
if(MEMBOUND_WERROR)
  target_compile_options(membound_dev INTERFACE -Werror)
endif()
