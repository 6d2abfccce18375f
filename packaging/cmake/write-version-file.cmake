# cmake -DOUT=<file> -DVERSION=<x.y.z> -P write-version-file.cmake
# The ConfigVersion file of a release archive: the same compatibility rule as an
# install of bindings/cpp (same major.minor, no older than requested).
include(CMakePackageConfigHelpers)
write_basic_package_version_file("${OUT}" VERSION "${VERSION}" COMPATIBILITY SameMinorVersion)
