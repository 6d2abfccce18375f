/*
 * TEST SHIM - NEVER SHIPPED.
 *
 * Wine 8 has no bcryptprimitives.dll, but every Rust program built for
 * Windows imports ProcessPrng from it (Rust's std random source since 1.78),
 * so Rust test .exe files fail to start under Wine ("status c0000135").
 * This stand-in implements ProcessPrng with RtlGenRandom (advapi32
 * SystemFunction036). It is built by tests/windows/build-shim and copied
 * only beside test executables (target/.../deps, target/windows-test);
 * scripts/build-windows never copies it to target/windows-dist. Real
 * Windows 10 and later have the real bcryptprimitives.dll.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE; /* the real one never fails; let the caller notice */
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
