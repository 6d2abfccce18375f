# Version file for find_package(OptInTelemetry [version]) from a source checkout:
# the version is read from the checkout's Cargo.toml (cmake --install writes a
# fixed one instead). Compatible: same major version, and for 0.x the same minor
# version, no older than requested.
get_filename_component(_otv_checkout "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(PACKAGE_VERSION "")
if(EXISTS "${_otv_checkout}/Cargo.toml")
  file(STRINGS "${_otv_checkout}/Cargo.toml" _otv_line REGEX "^version *= *\"[^\"]+\"" LIMIT_COUNT 1)
  string(REGEX REPLACE "^version *= *\"([^\"]+)\".*" "\\1" PACKAGE_VERSION "${_otv_line}")
endif()
if(NOT PACKAGE_VERSION)
  set(PACKAGE_VERSION "0.0.0")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()

set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(NOT PACKAGE_FIND_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
else()
  string(REGEX MATCH "^([0-9]+)\\.([0-9]+)" _otv_mm "${PACKAGE_VERSION}")
  set(_otv_major "${CMAKE_MATCH_1}")
  set(_otv_minor "${CMAKE_MATCH_2}")
  if(PACKAGE_VERSION VERSION_GREATER_EQUAL PACKAGE_FIND_VERSION
     AND _otv_major EQUAL PACKAGE_FIND_VERSION_MAJOR
     AND (NOT _otv_major EQUAL 0 OR _otv_minor EQUAL PACKAGE_FIND_VERSION_MINOR))
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
  if(PACKAGE_VERSION VERSION_EQUAL PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
unset(_otv_checkout)
unset(_otv_line)
unset(_otv_mm)
unset(_otv_major)
unset(_otv_minor)
