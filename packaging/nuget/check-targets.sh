#!/usr/bin/env bash
# Builds a tiny non-SDK .NET Framework 4.6.2 project that imports an unpacked
# package's build/OptInTelemetry.targets, once per platform setting, with Mono's
# xbuild (Debian mono-xbuild; MSBuild and Visual Studio are not available here),
# and checks which optin_telemetry.dll lands beside App.exe ("both": none beside
# it, the x86 one in bin/x86/ and the x64 one in bin/x64/, the AnyCPU layout):
#   packaging/nuget/check-targets.sh UNPACKED_NUPKG_DIR
set -euo pipefail
PKG=$(realpath "$1")
command -v xbuild >/dev/null || { echo "check-targets: xbuild not found (apt-get install mono-xbuild)" >&2; exit 2; }
W=$(mktemp -d /tmp/optin-telemetry-targets.XXXXXX)
trap 'rm -rf "$W"' EXIT
x86=$(sha256sum "$PKG/runtimes/win-x86/native/optin_telemetry.dll" | cut -d' ' -f1)
x64=$(sha256sum "$PKG/runtimes/win-x64/native/optin_telemetry.dll" | cut -d' ' -f1)
[ "$x86" != "$x64" ] || { echo "check-targets: FAIL: the x86 and x64 DLLs are the same file" >&2; exit 1; }
echo 'class App { static void Main() {} }' > "$W/App.cs"
cat > "$W/App.csproj" <<XML
<?xml version="1.0" encoding="utf-8"?>
<Project ToolsVersion="4.0" DefaultTargets="Build" xmlns="http://schemas.microsoft.com/developer/msbuild/2003">
  <PropertyGroup>
    <Configuration Condition="'\$(Configuration)' == ''">Release</Configuration>
    <Platform Condition="'\$(Platform)' == ''">AnyCPU</Platform>
    <OutputType Condition="'\$(OutputType)' == ''">Exe</OutputType>
    <AssemblyName>App</AssemblyName>
    <TargetFrameworkVersion>v4.6.2</TargetFrameworkVersion>
    <OutputPath>bin\\</OutputPath>
  </PropertyGroup>
  <ItemGroup><Compile Include="App.cs" /></ItemGroup>
  <Import Project="\$(MSBuildToolsPath)\\Microsoft.CSharp.targets" />
  <Import Project="$PKG/build/OptInTelemetry.targets" />
</Project>
XML
fail=0
check() { # $1 expected (x86|x64|none), then xbuild properties
    local want=$1; shift
    rm -rf "$W/bin" "$W/obj"
    (cd "$W" && xbuild /nologo /v:normal "$@" App.csproj) >"$W/build.log" 2>&1 || { cat "$W/build.log"; echo "check-targets: FAIL: xbuild $*" >&2; fail=1; return; }
    local got=none
    which() { case "$(sha256sum "$1" | cut -d' ' -f1)" in "$x86") echo x86 ;; "$x64") echo x64 ;; *) echo other ;; esac; }
    if [ -f "$W/bin/optin_telemetry.dll" ]; then
        got=$(which "$W/bin/optin_telemetry.dll")
        [ -e "$W/bin/x86" ] || [ -e "$W/bin/x64" ] && got="$got+subfolders"
    elif [ -f "$W/bin/x86/optin_telemetry.dll" ] && [ -f "$W/bin/x64/optin_telemetry.dll" ]; then
        got="x86:$(which "$W/bin/x86/optin_telemetry.dll"),x64:$(which "$W/bin/x64/optin_telemetry.dll")"
        [ "$got" = "x86:x86,x64:x64" ] && got=both
    elif [ -e "$W/bin/x86" ] || [ -e "$W/bin/x64" ]; then
        got="one-subfolder"
    fi
    local warn=""; grep -q OPTINTEL001 "$W/build.log" && warn=" (warning OPTINTEL001)"
    if [ "$got" = "$want" ]; then echo "  ok   $* -> $got$warn"; else echo "  FAIL $* -> $got, expected $want$warn"; fail=1; fi
}
check x86 /p:PlatformTarget=x86
check x64 /p:PlatformTarget=x64
check x86 /p:Platform=x86
check x64 /p:Platform=x64
check both /p:PlatformTarget=AnyCPU /p:Prefer32Bit=false
check x86 /p:PlatformTarget=AnyCPU /p:Prefer32Bit=true
check both /p:Platform=AnyCPU
check both "/p:Platform=Any CPU"
check both /p:PlatformTarget=AnyCPU /p:Prefer32Bit=true /p:OutputType=Library
check x86 /p:PlatformTarget=AnyCPU /p:OptInTelemetryNativePlatform=x86
check x64 /p:PlatformTarget=AnyCPU /p:OptInTelemetryNativePlatform=x64
check none /p:PlatformTarget=arm
exit $fail
