# CMake package configuration for optin-telemetry (C ABI + header-only C++ wrapper).
#
#   find_package(OptInTelemetry REQUIRED)
#   target_link_libraries(app PRIVATE OptInTelemetry::optin_telemetry)
#
# The imported target OptInTelemetry::optin_telemetry carries the cdylib, the
# include directories of both optin_telemetry.h and optin_telemetry.hpp, and
# cxx_std_17 for C++ consumers (C consumers may use it too).
#
# This one file works in two layouts:
#  * the source tree: point CMake at bindings/cpp/cmake of a checkout, e.g.
#      cmake -DOptInTelemetry_DIR=/path/to/optin-telemetry/bindings/cpp/cmake ...
#    or -DCMAKE_PREFIX_PATH=/path/to/optin-telemetry/bindings/cpp/cmake .
#    The library is taken from the cargo target directory: $CARGO_TARGET_DIR or
#    <checkout>/target, profile OPTIN_TELEMETRY_CARGO_PROFILE ("debug" or "release";
#    unset: release when built there, else debug). Build it first: cargo build [--release].
#  * an installed prefix (cmake --install of bindings/cpp): <prefix>/lib/cmake/OptInTelemetry.
# In both, -DOPTIN_TELEMETRY_LIBRARY=/full/path/to/liboptin_telemetry.so overrides the library.
#
# Result variables: OptInTelemetry_FOUND, OptInTelemetry_VERSION,
# OptInTelemetry_LIBRARY, OptInTelemetry_INCLUDE_DIRS.

# Policies of 3.14 for this file only: cmake_minimum_required here would change
# the consumer's CMAKE_MINIMUM_REQUIRED_VERSION.
cmake_policy(PUSH)
cmake_policy(VERSION 3.14)

get_filename_component(_ot_dir "${CMAKE_CURRENT_LIST_DIR}" REALPATH)
get_filename_component(_ot_checkout "${_ot_dir}/../../.." ABSOLUTE)

set(_ot_source_tree FALSE)
if(EXISTS "${_ot_checkout}/Cargo.toml" AND EXISTS "${_ot_checkout}/include/optin_telemetry.h")
  # ---- source tree ----
  set(_ot_source_tree TRUE)
  set(_ot_include_dirs "${_ot_checkout}/include" "${_ot_checkout}/bindings/cpp/include")
  if(DEFINED ENV{CARGO_TARGET_DIR} AND NOT "$ENV{CARGO_TARGET_DIR}" STREQUAL "")
    set(_ot_target_dir "$ENV{CARGO_TARGET_DIR}")
  else()
    set(_ot_target_dir "${_ot_checkout}/target")
  endif()
  if(OPTIN_TELEMETRY_CARGO_PROFILE)
    set(_ot_lib_dirs "${_ot_target_dir}/${OPTIN_TELEMETRY_CARGO_PROFILE}")
  else()
    # release when it has been built, else debug
    set(_ot_lib_dirs "${_ot_target_dir}/release" "${_ot_target_dir}/debug")
  endif()
else()
  # ---- installed: <libdir>/cmake/OptInTelemetry, where <libdir> is lib, lib64
  # or lib/<multiarch> (GNUInstallDirs): the prefix is the nearest folder above
  # <libdir> that holds include/optin_telemetry.h.
  get_filename_component(_ot_libdir "${_ot_dir}/../.." ABSOLUTE)
  set(_ot_prefix "")
  foreach(_up ".." "../.." "../../..")
    get_filename_component(_ot_try "${_ot_libdir}/${_up}" ABSOLUTE)
    if(NOT _ot_prefix AND EXISTS "${_ot_try}/include/optin_telemetry.h")
      set(_ot_prefix "${_ot_try}")
    endif()
  endforeach()
  if(NOT _ot_prefix)
    get_filename_component(_ot_prefix "${_ot_libdir}/.." ABSOLUTE)
  endif()
  set(_ot_include_dirs "${_ot_prefix}/include")
  set(_ot_lib_dirs "${_ot_libdir}" "${_ot_prefix}/lib" "${_ot_prefix}/lib64" "${_ot_prefix}/bin")
  list(REMOVE_DUPLICATES _ot_lib_dirs)
endif()

# The library file(s) for this platform.
set(_ot_implib "")
# The MSVC ABI (cl, clang-cl, clang --target=*-windows-msvc) links with an MSVC
# import library: lib/optin_telemetry.lib in the release zip (llvm-dlltool), or
# optin_telemetry.dll.lib from a cargo *-windows-msvc build. Everything else on
# Windows (mingw-w64 gcc, clang for *-windows-gnu) takes the mingw import library
# liboptin_telemetry.dll.a. The zip has both, so the order decides.
set(_ot_msvc_abi FALSE)
if(MSVC OR CMAKE_C_SIMULATE_ID STREQUAL "MSVC" OR CMAKE_CXX_SIMULATE_ID STREQUAL "MSVC"
   OR CMAKE_C_COMPILER_ID STREQUAL "MSVC" OR CMAKE_CXX_COMPILER_ID STREQUAL "MSVC")
  set(_ot_msvc_abi TRUE)
endif()
if(WIN32)
  set(_ot_names optin_telemetry.dll)
  if(_ot_msvc_abi)
    set(_ot_implib_names optin_telemetry.lib optin_telemetry.dll.lib)
  else()
    set(_ot_implib_names liboptin_telemetry.dll.a optin_telemetry.dll.lib optin_telemetry.lib)
  endif()
elseif(APPLE)
  set(_ot_names liboptin_telemetry.dylib)
else()
  set(_ot_names liboptin_telemetry.so)
endif()

if(OPTIN_TELEMETRY_LIBRARY)
  set(_ot_library "${OPTIN_TELEMETRY_LIBRARY}")
else()
  set(_ot_library "")
  foreach(_d IN LISTS _ot_lib_dirs)
    foreach(_n IN LISTS _ot_names)
      if(NOT _ot_library AND EXISTS "${_d}/${_n}")
        set(_ot_library "${_d}/${_n}")
      endif()
    endforeach()
  endforeach()
endif()
if(WIN32 AND _ot_library)
  get_filename_component(_d "${_ot_library}" DIRECTORY)
  foreach(_n IN LISTS _ot_implib_names)
    foreach(_dd "${_d}" "${_d}/../lib")
      if(NOT _ot_implib AND EXISTS "${_dd}/${_n}")
        get_filename_component(_ot_implib "${_dd}/${_n}" ABSOLUTE)
      endif()
    endforeach()
  endforeach()
endif()

set(_ot_missing "")
if(WIN32 AND _ot_library AND _ot_msvc_abi AND NOT _ot_implib)
  set(_ot_missing "no MSVC import library (${_ot_implib_names}) beside ${_ot_library} or in ../lib: an MSVC-ABI build cannot link the mingw liboptin_telemetry.dll.a; use a zip with lib/optin_telemetry.lib")
endif()
if(NOT _ot_library OR NOT EXISTS "${_ot_library}")
  string(REPLACE ";" ", " _ot_where "${_ot_lib_dirs}")
  if(_ot_source_tree)
    set(_ot_missing "${_ot_missing}the optin-telemetry library (${_ot_names}) was not found in ${_ot_where}; build it with `cargo build` / `cargo build --release`, or set OPTIN_TELEMETRY_LIBRARY or OPTIN_TELEMETRY_CARGO_PROFILE")
  else()
    set(_ot_missing "${_ot_missing}the optin-telemetry library (${_ot_names}) was not found in ${_ot_where}: this install of the package is incomplete (reinstall it, or set OPTIN_TELEMETRY_LIBRARY)")
  endif()
endif()
foreach(_h optin_telemetry.h optin_telemetry.hpp)
  set(_ot_found_h FALSE)
  foreach(_d IN LISTS _ot_include_dirs)
    if(EXISTS "${_d}/${_h}")
      set(_ot_found_h TRUE)
    endif()
  endforeach()
  if(NOT _ot_found_h)
    set(_ot_missing "${_ot_missing} ${_h} not found in ${_ot_include_dirs}")
  endif()
endforeach()

if(_ot_missing)
  set(OptInTelemetry_FOUND FALSE)
  set(OptInTelemetry_NOT_FOUND_MESSAGE "${_ot_missing}")
  cmake_policy(POP)
  return()
endif()

if(NOT TARGET OptInTelemetry::optin_telemetry)
  add_library(OptInTelemetry::optin_telemetry SHARED IMPORTED)
  set_target_properties(OptInTelemetry::optin_telemetry PROPERTIES
    IMPORTED_LOCATION "${_ot_library}"
    INTERFACE_INCLUDE_DIRECTORIES "${_ot_include_dirs}"
    INTERFACE_COMPILE_FEATURES cxx_std_17)
  if(WIN32)
    if(_ot_implib)
      set_target_properties(OptInTelemetry::optin_telemetry PROPERTIES IMPORTED_IMPLIB "${_ot_implib}")
    endif()
  elseif(APPLE)
    # Link as -loptin_telemetry so the executable does not record a build path.
    set_target_properties(OptInTelemetry::optin_telemetry PROPERTIES IMPORTED_NO_SONAME TRUE)
  else()
    # The library's SONAME is liboptin_telemetry.so.<major> (build.rs): that
    # is the name an executable records and looks for at run time (through its
    # RPATH). An install has that file (lib/liboptin_telemetry.so.<major>); a
    # cargo target dir has only liboptin_telemetry.so, so in the source tree
    # the link of the SONAME's name is made beside it.
    set(_ot_soname "liboptin_telemetry.so.${OptInTelemetry_VERSION_MAJOR}")
    set_target_properties(OptInTelemetry::optin_telemetry PROPERTIES IMPORTED_SONAME "${_ot_soname}")
    get_filename_component(_ot_libdir "${_ot_library}" DIRECTORY)
    get_filename_component(_ot_libname "${_ot_library}" NAME)
    if(_ot_source_tree AND NOT _ot_libname STREQUAL _ot_soname AND NOT EXISTS "${_ot_libdir}/${_ot_soname}")
      file(CREATE_LINK "${_ot_libname}" "${_ot_libdir}/${_ot_soname}" SYMBOLIC)
    endif()
    # The file itself (liboptin_telemetry.so.<version>), not the development
    # link: install(IMPORTED_RUNTIME_ARTIFACTS) copies IMPORTED_LOCATION and
    # makes the IMPORTED_SONAME link to it; from the .so link it installed
    # only links, pointing at nothing.
    get_filename_component(_ot_real "${_ot_library}" REALPATH)
    set_target_properties(OptInTelemetry::optin_telemetry PROPERTIES IMPORTED_LOCATION "${_ot_real}")
  endif()
endif()

set(OptInTelemetry_LIBRARY "${_ot_library}")
set(OptInTelemetry_INCLUDE_DIRS "${_ot_include_dirs}")
set(OptInTelemetry_FOUND TRUE)
if(NOT OptInTelemetry_FIND_QUIETLY)
  message(STATUS "Found OptInTelemetry ${OptInTelemetry_VERSION}: ${_ot_library}")
endif()

unset(_ot_dir)
unset(_ot_checkout)
unset(_ot_prefix)
unset(_ot_target_dir)
unset(_ot_lib_dirs)
unset(_ot_names)
unset(_ot_implib_names)
unset(_ot_implib)
unset(_ot_msvc_abi)
unset(_ot_library)
unset(_ot_missing)
unset(_ot_where)
unset(_ot_found_h)
unset(_ot_source_tree)
unset(_ot_soname)
unset(_ot_real)
unset(_ot_try)
unset(_up)
unset(_d)
unset(_dd)
unset(_n)
unset(_h)
unset(_ot_libdir)
unset(_ot_libname)
cmake_policy(POP)
