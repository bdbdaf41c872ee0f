# SPDX-License-Identifier: MIT
# membound_find_onednn(<out-var>): sets <out-var> to 1 when oneDNN is installed *and usable* (its
# package config loads and a program calling dnnl_sgemm links), else to 0 with a STATUS line saying
# why. Never a configure error: oneDNN is optional (the GEMM entry falls back to Eigen).
#
# Why a probe and not a plain find_package(dnnl CONFIG QUIET): Debian 12's dnnl-config.cmake is
# built with the OpenCL GPU runtime and calls find_package(OpenCL REQUIRED) itself, so on a machine
# with libdnnl-dev but without the OpenCL headers (ocl-icd-opencl-dev, only a Recommends) the QUIET
# find still stops the configure. The config file is read first and every transitive dependency it
# requires (OpenCL, TBB) is looked for quietly before the config itself is loaded.
# Used by the top-level CMakeLists.txt and by the installed membound-config.cmake, so a consumer's
# find_package(membound) makes the same decision on its own machine.
include_guard(GLOBAL)

function(membound_find_onednn out_var)
  set(${out_var} 0 PARENT_SCOPE)
  if(NOT TARGET DNNL::dnnl)
    find_path(_membound_dnnl_dir dnnl-config.cmake
      HINTS "${dnnl_DIR}"
      PATH_SUFFIXES cmake/dnnl lib/cmake/dnnl lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake/dnnl lib64/cmake/dnnl
      NO_CACHE)
    if(NOT _membound_dnnl_dir)
      message(STATUS "membound: oneDNN not found (no dnnl-config.cmake); GEMM entry uses Eigen")
      return()
    endif()
    file(READ "${_membound_dnnl_dir}/dnnl-config.cmake" _cfg)
    if(_cfg MATCHES "DNNL_GPU_RUNTIME \"OCL\"")
      find_package(OpenCL QUIET)
      if(NOT OpenCL_FOUND)
        message(STATUS "membound: oneDNN at ${_membound_dnnl_dir} needs OpenCL (its GPU runtime), "
                       "which is missing (Debian: ocl-icd-opencl-dev); GEMM entry uses Eigen")
        return()
      endif()
    endif()
    if(_cfg MATCHES "DNNL_CPU_THREADING_RUNTIME \"TBB\"")
      find_package(TBB QUIET COMPONENTS tbb)
      if(NOT TBB_FOUND)
        message(STATUS "membound: oneDNN at ${_membound_dnnl_dir} needs TBB, which is missing; GEMM entry uses Eigen")
        return()
      endif()
    endif()
    set(dnnl_DIR "${_membound_dnnl_dir}")
    find_package(dnnl CONFIG QUIET)
    if(NOT dnnl_FOUND OR NOT TARGET DNNL::dnnl)
      message(STATUS "membound: oneDNN's package config at ${_membound_dnnl_dir} did not load; GEMM entry uses Eigen")
      return()
    endif()
  endif()
  # Present is not usable: the headers must compile and the library must link.
  include(CheckCXXSourceCompiles)
  include(CMakePushCheckState)
  cmake_push_check_state(RESET)
  set(CMAKE_REQUIRED_LIBRARIES DNNL::dnnl)
  set(CMAKE_REQUIRED_QUIET ON)
  check_cxx_source_compiles([=[
    #include <dnnl.h>
    int main() { float a = 1, b = 1, c = 0; return dnnl_sgemm('N', 'N', 1, 1, 1, 1.f, &a, 1, &b, 1, 0.f, &c, 1) == dnnl_success ? 0 : 1; }
  ]=] MEMBOUND_ONEDNN_LINKS)
  cmake_pop_check_state()
  if(NOT MEMBOUND_ONEDNN_LINKS)
    message(STATUS "membound: oneDNN was found but a dnnl_sgemm test program does not build "
                   "(see CMakeFiles/CMakeError.log); GEMM entry uses Eigen")
    return()
  endif()
  set(${out_var} 1 PARENT_SCOPE)
  set(dnnl_VERSION "${dnnl_VERSION}" PARENT_SCOPE)
endfunction()
