# cmake -DOUT=<file> -DVERSION=<x.y.z> -DSIZEOF_VOID_P=<8|4> -P write-version-file.cmake
# The ConfigVersion file of a release archive: the same compatibility rule as an
# install of bindings/cpp (same major.minor, no older than requested), and the
# archive's pointer size: a 32-bit build does not accept a 64-bit archive (and
# the reverse) but says "(64bit)"/"(32bit)" at find_package, instead of failing
# at link time. In script mode CMake knows no pointer size, so it is given.
if(NOT SIZEOF_VOID_P MATCHES "^(4|8)$")
  message(FATAL_ERROR "write-version-file.cmake: -DSIZEOF_VOID_P=4 or 8 is required")
endif()
set(CMAKE_SIZEOF_VOID_P "${SIZEOF_VOID_P}")
include(CMakePackageConfigHelpers)
write_basic_package_version_file("${OUT}" VERSION "${VERSION}" COMPATIBILITY SameMinorVersion)
