#!/usr/bin/env bash
# The NuGet package as a consumer's tools see it (called by scripts/test-package):
#   packaging/nuget/test-nupkg.sh PACKAGE.nupkg VERSION UNPACKED_DIR
# 1. packaging/nuget/check.py: nuspec against the files, framework folder = dependency
#    group, licence expression, readme, repository, machine type of each native library;
# 2. monodis --assemblyref: lib/net462/OptInTelemetry.dll references .NET Framework 4.x
#    assemblies only (mscorlib/System*, version 4.0.0.0, key token b77a5c561934e089),
#    never netstandard or a facade;
# 3. packaging/nuget/check-targets.sh: which DLL build/OptInTelemetry.targets copies
#    for x86, x64, AnyCPU with and without Prefer32Bit (xbuild);
# 4. the win-x86 DLL under 32-bit Wine: packaging/tests/win32_host.c (i686-w64-mingw32-gcc)
#    calls tel_version, tel_open, tel_preview_json, tel_close through it; prints SKIP
#    with the reason when 32-bit Wine cannot be installed.
# Installs mono-utils, mono-xbuild, gcc-mingw-w64-i686 and wine32:i386 when missing (root: apt-get).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NUPKG=$1 V=$2 N=$(realpath "$3")
fail() { echo "test-nupkg: FAIL: $*" >&2; exit 1; }
ok() { echo "  ok   $*"; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then $SUDO apt-get update -qq; export APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
need=()
command -v monodis >/dev/null || need+=(mono-utils)
command -v xbuild >/dev/null || need+=(mono-xbuild)
command -v i686-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-i686)
[ ${#need[@]} -eq 0 ] || { echo "== installing Debian packages: ${need[*]}"; apt_install "${need[@]}"; }

python3 "$ROOT/packaging/nuget/check.py" "$NUPKG" "$V" || fail "packaging/nuget/check.py"

monodis --assemblyref "$N/lib/net462/OptInTelemetry.dll" >"$N.refs.txt" || fail "monodis --assemblyref"
refs=$(python3 - "$N.refs.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
refs = re.findall(r"Version=(\S+)\s+Name=(\S+)\s+Flags=\S+\s+Public Key:\s+0x00000000:\s+([0-9A-F ]+)", text)
bad = [r for r in refs if r[1].startswith("System.Runtime") or not (re.fullmatch(r"mscorlib|System(\..+)?", r[1]) and r[0] == "4.0.0.0"
                               and r[2].replace(" ", "") in ("B77A5C561934E089", "B03F5F7F11D50A3A"))]
print(" ".join(f"{n} {v} {k.replace(' ', '').lower()}" for v, n, k in refs))
sys.exit(1 if bad or not refs or len(refs) != text.count("Name=") else 0)
PY
) || { cat "$N.refs.txt"; fail "lib/net462/OptInTelemetry.dll references something besides .NET Framework 4.x assemblies: $refs"; }
ok "monodis --assemblyref lib/net462/OptInTelemetry.dll: $refs (.NET Framework 4.x only; no netstandard)"

"$ROOT/packaging/nuget/check-targets.sh" "$N" || fail "build/OptInTelemetry.targets chose the wrong DLL"
ok "build/OptInTelemetry.targets: x86 / x64 / AnyCPU+Prefer32Bit -> x86 / AnyCPU -> both, in x86\\ and x64\\ (xbuild)"

# The AnyCPU layout's loader step (what TelemetryLibrary does before its first P/Invoke),
# from C: no .NET Framework runs under Wine here. 64-bit Wine now, 32-bit below.
PRE="$N.preload"
mkdir -p "$PRE/x64"
x86_64-w64-mingw32-gcc -std=c99 -Wall -Wextra -Werror -O2 -s -o "$PRE/preload_host.exe" "$ROOT/packaging/tests/preload_host.c" \
    || fail "packaging/tests/preload_host.c does not compile with x86_64-w64-mingw32-gcc"
cp "$N/runtimes/win-x64/native/optin_telemetry.dll" "$PRE/x64/"
out=$("$ROOT/tests/windows/runner" "$PRE/preload_host.exe" 2>&1 | tr -d '\r') || { echo "$out"; fail "preload_host.exe (x64) under Wine"; }
[ "$out" = "preload x64 ok tel_version $V" ] || { echo "$out"; fail "preload_host.exe (x64) output"; }
ok "AnyCPU layout, 64-bit Wine: optin_telemetry.dll not found by name, LoadLibraryW(x64\\optin_telemetry.dll), then the by-name load returns that module (tel_version $V)"

# 4. 32-bit Wine
wine32_reason=""
if [ ! -x /usr/lib/wine/wine ] || ! dpkg -s wine32:i386 >/dev/null 2>&1; then
    echo "== installing wine32:i386 (dpkg --add-architecture i386)"
    if ! { $SUDO dpkg --add-architecture i386 && $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wine32:i386 >/dev/null; } 2>"$N.wine32.log"; then
        wine32_reason="apt-get could not install wine32:i386: $(tail -1 "$N.wine32.log")"
    fi
fi
if [ -n "$wine32_reason" ]; then
    echo "  SKIP win-x86 DLL under 32-bit Wine: $wine32_reason"
    exit 0
fi
X="$N.win32"
mkdir -p "$X"
i686-w64-mingw32-gcc -std=c99 -Wall -Wextra -Werror -O2 -s -o "$X/win32_host.exe" "$ROOT/packaging/tests/win32_host.c" \
    || fail "packaging/tests/win32_host.c does not compile with i686-w64-mingw32-gcc"
cp "$N/runtimes/win-x86/native/optin_telemetry.dll" "$X/"
# tests/windows/runner in its 32-bit mode: 32-bit Wine, its own prefix set to
# Windows 10, and the TEST-ONLY bcryptprimitives.dll stand-in beside the .exe.
RUN32=(env OPTIN_WINE_ARCH=x86 "$ROOT/tests/windows/runner")
"${RUN32[@]}" "$X/win32_host.exe" "$V" 'C:\users\Public\optin-telemetry-x86-test' >"$X/out.crlf" 2>&1 \
    || { cat "$X/out.crlf"; fail "the win-x86 DLL under 32-bit Wine"; }
tr -d '\r' <"$X/out.crlf" >"$X/out.txt"   # the Windows console writes CRLF
grep -q '^pointer size 4 bytes$' "$X/out.txt" && grep -q "^tel_version $V\$" "$X/out.txt" && grep -q '"arch":"x86"' "$X/out.txt" \
    && grep -q '^closed$' "$X/out.txt" || { cat "$X/out.txt"; fail "win32_host.exe output"; }
ok "win-x86 DLL under 32-bit Wine: a 32-bit host found tel_* by plain name (cdecl), tel_version $V, tel_open, tel_preview_json (\"arch\":\"x86\"), tel_close"
mkdir -p "$X/preload/x86"
i686-w64-mingw32-gcc -std=c99 -Wall -Wextra -Werror -O2 -s -o "$X/preload/preload_host.exe" "$ROOT/packaging/tests/preload_host.c" \
    || fail "packaging/tests/preload_host.c does not compile with i686-w64-mingw32-gcc"
cp "$N/runtimes/win-x86/native/optin_telemetry.dll" "$X/preload/x86/"
out=$("${RUN32[@]}" "$X/preload/preload_host.exe" 2>&1 | tr -d '\r') || { echo "$out"; fail "preload_host.exe (x86) under 32-bit Wine"; }
[ "$out" = "preload x86 ok tel_version $V" ] || { echo "$out"; fail "preload_host.exe (x86) output"; }
ok "AnyCPU layout, 32-bit Wine: optin_telemetry.dll not found by name, LoadLibraryW(x86\\optin_telemetry.dll), then the by-name load returns that module (tel_version $V)"
