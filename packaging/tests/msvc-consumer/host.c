/* A C host without the Microsoft C runtime (none is available here): it calls
 * tel_version() through the import library CMake chose and writes
 * "tel_version <v>" to stdout with kernel32 only. */
#include <stddef.h>
#include "optin_telemetry.h"

typedef void *HANDLE;
__declspec(dllimport) HANDLE __stdcall GetStdHandle(unsigned long);
__declspec(dllimport) int __stdcall WriteFile(HANDLE, const void *, unsigned long, unsigned long *, void *);
__declspec(dllimport) void __stdcall ExitProcess(unsigned int);

static void put(const char *s) {
    unsigned long n = 0, w = 0;
    while (s[n]) n++;
    WriteFile(GetStdHandle((unsigned long)-11), s, n, &w, NULL);
}

void mainCRTStartup(void) {
    const char *v = tel_version();
    put("tel_version ");
    put(v ? v : "(null)");
    put("\r\n");
    ExitProcess(v ? 0 : 1);
}
