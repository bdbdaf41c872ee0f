# SPDX-License-Identifier: MIT
# The CUDA component. CMake 3.25 knows no CUDA20 standard level for nvcc, so -std=c++20 is added
# by hand. Architectures: the toolkit's default plus sm_90 (H100/H200), unless the user sets them.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 75 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
add_library(membound_cuda INTERFACE)
add_library(membound::cuda ALIAS membound_cuda)
set_target_properties(membound_cuda PROPERTIES EXPORT_NAME cuda)
target_link_libraries(membound_cuda INTERFACE membound CUDA::cudart)
target_compile_options(membound_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --expt-relaxed-constexpr>)
target_compile_definitions(membound_cuda INTERFACE MEMBOUND_HAS_CUDA=1)
