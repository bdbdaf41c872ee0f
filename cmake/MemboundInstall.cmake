# SPDX-License-Identifier: MIT
# install(): headers, the exported INTERFACE target (and the cuda component when built), the
# package config for find_package(membound CONFIG), and a pkg-config file.
include(CMakePackageConfigHelpers)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/membound" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
set(_membound_targets membound)
if(TARGET membound_cuda)
  list(APPEND _membound_targets membound_cuda)
endif()
install(TARGETS ${_membound_targets} EXPORT membound-targets)
install(EXPORT membound-targets NAMESPACE membound:: DESTINATION "${CMAKE_INSTALL_DATADIR}/cmake/membound")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/membound-config.cmake.in"
  "${PROJECT_BINARY_DIR}/membound-config.cmake" INSTALL_DESTINATION "${CMAKE_INSTALL_DATADIR}/cmake/membound")
# Header-only: the package fits any architecture.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/membound-config-version.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/membound-config.cmake" "${PROJECT_BINARY_DIR}/membound-config-version.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/MemboundFindOneDNN.cmake" DESTINATION "${CMAKE_INSTALL_DATADIR}/cmake/membound")

# pkg-config: Eigen, xsimd and nlohmann_json have .pc files on Debian; oneDNN does not, so the
# .pc file leaves it out and the README shows how to add it (-DMEMBOUND_HAS_ONEDNN=1 -ldnnl).
set(MEMBOUND_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
configure_file("${PROJECT_SOURCE_DIR}/cmake/membound.pc.in" "${PROJECT_BINARY_DIR}/membound.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/membound.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
