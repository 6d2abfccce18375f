# Cross-compiling MSVC-ABI consumers of the Windows archive on Linux:
#   -DOPTIN_CLANG_CL=<a clang-cl link to clang> (Debian clang 14 ships no clang-cl
#    command): CMake's MSVC-like front end (MSVC is true), linking with lld-link;
#   else clang --target=x86_64-pc-windows-msvc: the GNU-like front end simulating
#    MSVC (CMAKE_C_SIMULATE_ID MSVC, MSVC false), linking through -fuse-ld=lld. There is no MSVC C runtime or Windows SDK here: the compiler checks
# build static libraries only, and no default Windows libraries are linked.
# -DOPTIN_MSVC_TARGET=i686-pc-windows-msvc: the same for the 32-bit zip.
if(NOT OPTIN_MSVC_TARGET)
  set(OPTIN_MSVC_TARGET x86_64-pc-windows-msvc)
endif()
# try_compile reads this file again in a project of its own: pass the choice on.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES OPTIN_MSVC_TARGET)
set(CMAKE_SYSTEM_NAME Windows)
if(OPTIN_MSVC_TARGET MATCHES "^i686")
  set(CMAKE_SYSTEM_PROCESSOR X86)
else()
  set(CMAKE_SYSTEM_PROCESSOR AMD64)
endif()
if(OPTIN_CLANG_CL)
  set(CMAKE_C_COMPILER "${OPTIN_CLANG_CL}")
else()
  set(CMAKE_C_COMPILER clang)
endif()
set(CMAKE_C_COMPILER_TARGET ${OPTIN_MSVC_TARGET})
set(CMAKE_LINKER lld-link)
set(CMAKE_RC_COMPILER llvm-rc)
set(CMAKE_MT llvm-mt)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(CMAKE_C_STANDARD_LIBRARIES "" CACHE STRING "" FORCE)
if(OPTIN_CLANG_CL)
  set(CMAKE_EXE_LINKER_FLAGS_INIT "/manifest:no")
endif()
