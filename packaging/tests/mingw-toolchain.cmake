# Cross-compiling consumers of the Windows archives with mingw-w64: 64-bit by default
# (Debian gcc-mingw-w64-x86-64), or -DOPTIN_MINGW_TRIPLE=i686-w64-mingw32 for the
# 32-bit zip (gcc-mingw-w64-i686).
if(NOT OPTIN_MINGW_TRIPLE)
  set(OPTIN_MINGW_TRIPLE x86_64-w64-mingw32)
endif()
# try_compile reads this file again in a project of its own: pass the choice on.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES OPTIN_MINGW_TRIPLE)
set(CMAKE_SYSTEM_NAME Windows)
if(OPTIN_MINGW_TRIPLE MATCHES "^i686")
  set(CMAKE_SYSTEM_PROCESSOR x86)
else()
  set(CMAKE_SYSTEM_PROCESSOR x86_64)
endif()
set(CMAKE_C_COMPILER ${OPTIN_MINGW_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${OPTIN_MINGW_TRIPLE}-g++)
set(CMAKE_RC_COMPILER ${OPTIN_MINGW_TRIPLE}-windres)
# The test programs run under Wine beside optin_telemetry.dll only: no mingw runtime DLLs.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")
