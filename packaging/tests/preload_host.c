/*
 * The Windows loader step the .NET binding relies on for AnyCPU (bindings/dotnet
 * TelemetryLibrary.PreloadArchitectureDll), done from C because no .NET Framework runs
 * under Wine here. Layout as build/OptInTelemetry.targets makes it for AnyCPU:
 *   preload_host.exe, x86\optin_telemetry.dll, x64\optin_telemetry.dll, nothing beside.
 * 1. LoadLibrary("optin_telemetry.dll") by name fails (what DllImport alone would find);
 * 2. LoadLibraryW(<exe dir>\x64|x86\optin_telemetry.dll), chosen by the pointer size as
 *    the binding does with IntPtr.Size, succeeds;
 * 3. LoadLibrary by name ("optin_telemetry" and "optin_telemetry.dll") now returns that
 *    same module, and tel_version is called through it.
 * Prints "preload <x86|x64> ok tel_version <v>" and exits 0 on success.
 */
#include <stdio.h>
#include <wchar.h>
#include <windows.h>

typedef const char *(__cdecl *version_fn)(void);

int main(void)
{
    const wchar_t *arch = sizeof(void *) == 8 ? L"x64" : L"x86";
    if (LoadLibraryW(L"optin_telemetry.dll")) {
        fprintf(stderr, "optin_telemetry.dll was found by name before the preload: the layout is wrong\n");
        return 1;
    }
    wchar_t path[MAX_PATH + 64];
    DWORD n = GetModuleFileNameW(NULL, path, MAX_PATH);
    if (n == 0 || n >= MAX_PATH) { fprintf(stderr, "GetModuleFileNameW failed\n"); return 1; }
    wchar_t *slash = wcsrchr(path, L'\\');
    if (!slash) { fprintf(stderr, "no directory in the module path\n"); return 1; }
    swprintf(slash + 1, 64, L"%ls\\optin_telemetry.dll", arch);
    HMODULE pre = LoadLibraryW(path);
    if (!pre) { fprintf(stderr, "LoadLibraryW(%ls) failed: %lu\n", path, GetLastError()); return 1; }
    HMODULE by_name = LoadLibraryW(L"optin_telemetry");
    HMODULE by_file = LoadLibraryW(L"optin_telemetry.dll");
    if (by_name != pre || by_file != pre) {
        fprintf(stderr, "by name: %p and %p, preloaded %p: not the same module\n", (void *)by_name, (void *)by_file, (void *)pre);
        return 1;
    }
    version_fn tel_version = (version_fn)(void *)GetProcAddress(by_name, "tel_version");
    if (!tel_version) { fprintf(stderr, "no tel_version\n"); return 1; }
    printf("preload %ls ok tel_version %s\n", arch, tel_version());
    return 0;
}
