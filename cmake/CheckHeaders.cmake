# SPDX-License-Identifier: MIT
# Compiles every public header of include/membound on its own with -fsyntax-only.
# Invoked by the header_check_<i> tests:
#   cmake -DCXX=... -DROOT=... -DINCLUDES=... -DDEFS=... [-DSHARD=i -DSHARDS=n] -P CheckHeaders.cmake
# With SHARDS = n, this run checks the headers whose index (in sorted order) is SHARD modulo n, so
# that CTest can run the shards in parallel (the whole check is about 110 compiler runs).
#
# Umbrella headers (nothing but comments, `#pragma once` and #include lines of other membound headers,
# e.g. membound/nn/nn.hpp) are skipped: each header they name is checked here on its own, and every
# umbrella is compiled by each target that includes membound/membound.hpp (which includes them all):
# examples/01_layers.cpp and 10_kv_eviction.cpp, with these warnings and -Wshadow, and
# tests/consumers/consumer.cpp. They are also the most expensive headers to parse (10-17 s each).
file(GLOB_RECURSE found RELATIVE "${ROOT}/include" "${ROOT}/include/membound/*.hpp")
list(SORT found)
set(all_headers "")
foreach(h IN LISTS found)
  # Whole-file regex rather than file(STRINGS): CMake lists merge lines with unbalanced brackets.
  file(READ "${ROOT}/include/${h}" text)
  string(REGEX REPLACE "(^|\n)[ \t]*(//[^\n]*|#pragma once|#include \"membound/[^\n]*)" "\\1" rest "${text}")
  string(STRIP "${rest}" rest)
  if(NOT rest STREQUAL "")
    list(APPEND all_headers "${h}")
  endif()
endforeach()
if(NOT DEFINED SHARDS)
  set(SHARDS 1)
  set(SHARD 0)
endif()
set(headers "")
set(index 0)
foreach(h IN LISTS all_headers)
  math(EXPR r "${index} % ${SHARDS}")
  if(r EQUAL SHARD)
    list(APPEND headers "${h}")
  endif()
  math(EXPR index "${index} + 1")
endforeach()
string(REPLACE "|" ";" INCLUDES "${INCLUDES}")
string(REPLACE "|" ";" DEFS "${DEFS}")
set(flags -std=c++20 -fsyntax-only -Wall -Wextra -Wpedantic -Werror -Wno-psabi -x c++)
if(NATIVE)
  list(APPEND flags -march=native)
endif()
# INCLUDES holds the target's include path and, transitively, its dependencies' paths.
list(REMOVE_DUPLICATES INCLUDES)
foreach(dir IN LISTS INCLUDES)
  if(NOT dir OR dir MATCHES "^/usr(/local)?/include/?$")
    # The compiler's own search path must not be re-added (-isystem /usr/include breaks #include_next).
  elseif(dir MATCHES "^${ROOT}")
    list(APPEND flags -I${dir})
  else()
    list(APPEND flags -isystem ${dir})
  endif()
endforeach()
foreach(d IN LISTS DEFS)
  if(d)
    list(APPEND flags -D${d})
  endif()
endforeach()
set(failed 0)
list(LENGTH headers n)
foreach(h IN LISTS headers)
  execute_process(COMMAND ${CMAKE_COMMAND} -E echo "#include <${h}>"
                  COMMAND ${CXX} ${flags} -
                  RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(SEND_ERROR "header ${h} does not compile on its own:\n${err}")
    math(EXPR failed "${failed}+1")
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "${failed} of ${n} headers failed the one-header check")
endif()
message(STATUS "${n} headers compile on their own")
