# Install.cmake - `make install`: executables, public headers, petal.pc and a CMake package.
install(TARGETS petal_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Plugins need only these: the ABI header and the dataset module's (the embedding API is not
# installed until libpetal is).
install(FILES include/petal/plugin.h include/petal/data.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/petal)
if(TARGET petal-superlink)
  install(TARGETS petal-superlink RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
if(TARGET petal-supernode)
  install(TARGETS petal-supernode RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
if(TARGET petal_data)
  install(TARGETS petal_data ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()

file(RELATIVE_PATH PETAL_PC_REL_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
configure_file(${CMAKE_SOURCE_DIR}/cmake/petal.pc.in ${CMAKE_BINARY_DIR}/petal.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/petal.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
file(RELATIVE_PATH PETAL_REL_PREFIX "/${CMAKE_INSTALL_LIBDIR}/cmake/Petal" "/")
configure_file(${CMAKE_SOURCE_DIR}/cmake/PetalConfig.cmake.in
               ${CMAKE_BINARY_DIR}/PetalConfig.cmake @ONLY)
include(CMakePackageConfigHelpers)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/PetalConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/PetalConfig.cmake ${CMAKE_BINARY_DIR}/PetalConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/Petal)
