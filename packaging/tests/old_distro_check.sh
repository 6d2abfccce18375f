#!/usr/bin/env bash
# The Linux libraries on an older distribution than the build machine's: Debian 11
# "bullseye" (glibc 2.31, OpenSSL 1.1 only -- the generation of RHEL 8 and Ubuntu
# 20.04), unpacked by debootstrap into a folder and entered with chroot.
#   - the bundled-tls library loads there and examples/python/archiver.py sends
#     one report, byte-identical to its preview, to its loopback collector;
#   - the system-tls library does not load, and says it is libssl.so.3 that is missing
#     (what the README promises about it).
# Debian 10 (glibc 2.28 itself) is no longer on deb.debian.org; 2.28 is checked on
# the symbols (scripts/build-linux, scripts/test-package).
#   packaging/tests/old_distro_check.sh BUNDLED_TLS.so SYSTEM_TLS.so
# Needs root (debootstrap, chroot) and deb.debian.org; otherwise prints one
# "SKIP ..." line and exits 0. The unpacked system is kept in target/old-distro/
# for reruns (about 250 MB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bundled=$(realpath "$1"); system=$(realpath "$2")
SUITE=bullseye
R="$ROOT/target/old-distro/$SUITE"
skip() { echo "  SKIP old distribution ($SUITE): $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root for debootstrap and chroot"
if [ ! -x "$R/usr/bin/python3" ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 \
        || skip "debootstrap is not installed and could not be"
    rm -rf "$R"; mkdir -p "$R"
    debootstrap --variant=minbase --include=python3-minimal,libpython3.9-stdlib "$SUITE" "$R" http://deb.debian.org/debian \
        >"$ROOT/target/old-distro/debootstrap.log" 2>&1 \
        || { tail -5 "$ROOT/target/old-distro/debootstrap.log"; rm -rf "$R"; skip "debootstrap $SUITE failed (mirror unreachable?)"; }
fi
glibc=$(chroot "$R" /usr/bin/ldd --version | sed -n "1s/.* //p")
ssl=$(cd "$R/usr/lib/x86_64-linux-gnu" && ls libssl.so.* 2>/dev/null | paste -sd' ')
T="$R/opt/optin-telemetry-check"
rm -rf "$T"; mkdir -p "$T"
cp -r "$ROOT/bindings/python/optin_telemetry" "$ROOT/examples/python/archiver.py" "$T/"
cp "$bundled" "$T/bundled-tls.so"; cp "$system" "$T/system-tls.so"
in_chroot() { chroot "$R" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root OPTIN_TELEMETRY_LIB="/opt/optin-telemetry-check/$1" \
    /bin/sh -c "cd /opt/optin-telemetry-check && python3 archiver.py --yes"; }
in_chroot bundled-tls.so >"$T/bundled.log" 2>&1 || { cat "$T/bundled.log"; echo "FAIL: the bundled-tls library on $SUITE"; exit 1; }
grep -q "Collector received 1 report(s); byte-identical to preview: True" "$T/bundled.log" \
    || { cat "$T/bundled.log"; echo "FAIL: the bundled-tls library on $SUITE did not deliver one report equal to its preview"; exit 1; }
echo "  ok   $SUITE (glibc $glibc, ${ssl:-no libssl}): the bundled-tls library loads; archiver.py --yes sent 1 report, byte-identical to the preview"
if in_chroot system-tls.so >"$T/system.log" 2>&1; then
    cat "$T/system.log"; echo "FAIL: the system-tls library loaded on $SUITE, which has no OpenSSL 3: the check is not checking"; exit 1
fi
grep -q "libssl.so.3: cannot open shared object file" "$T/system.log" \
    || { cat "$T/system.log"; echo "FAIL: the system-tls library failed on $SUITE for another reason than the missing libssl.so.3"; exit 1; }
echo "  ok   $SUITE: the system-tls library does not load (libssl.so.3: cannot open shared object file), as the README says"
