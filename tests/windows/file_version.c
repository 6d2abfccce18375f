/* Reads a file's VERSIONINFO through the Windows API (version.dll), as
 * Explorer's Details tab and installers do:
 *   file_version.exe FILE
 * prints "FileVersion(fixed) a.b.c.d" and "<name>=<value>" for the strings
 * of the 040904B0 table; exit 1 when the file has no version resource. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

int wmain(int argc, wchar_t **argv) {
    static const wchar_t *names[] = {L"ProductName", L"ProductVersion", L"FileVersion", L"FileDescription",
                                     L"CompanyName", L"LegalCopyright", L"OriginalFilename", L"InternalName"};
    DWORD handle = 0, size;
    void *data;
    VS_FIXEDFILEINFO *fixed = NULL;
    UINT len = 0;
    size_t i;
    if (argc != 2) {
        fwprintf(stderr, L"usage: file_version FILE\n");
        return 2;
    }
    size = GetFileVersionInfoSizeW(argv[1], &handle);
    if (size == 0) {
        wprintf(L"no version resource (error %lu)\n", (unsigned long)GetLastError());
        return 1;
    }
    data = malloc(size);
    if (!data || !GetFileVersionInfoW(argv[1], 0, size, data)) {
        wprintf(L"GetFileVersionInfoW failed (error %lu)\n", (unsigned long)GetLastError());
        return 1;
    }
    if (!VerQueryValueW(data, L"\\", (void **)&fixed, &len) || len < sizeof *fixed) {
        wprintf(L"no VS_FIXEDFILEINFO\n");
        return 1;
    }
    wprintf(L"FileVersion(fixed) %u.%u.%u.%u\n", (unsigned)HIWORD(fixed->dwFileVersionMS), (unsigned)LOWORD(fixed->dwFileVersionMS),
            (unsigned)HIWORD(fixed->dwFileVersionLS), (unsigned)LOWORD(fixed->dwFileVersionLS));
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        wchar_t key[128];
        wchar_t *value = NULL;
        _snwprintf(key, 128, L"\\StringFileInfo\\040904B0\\%ls", names[i]);
        key[127] = 0;
        if (VerQueryValueW(data, key, (void **)&value, &len) && value)
            wprintf(L"%ls=%ls\n", names[i], value);
        else
            wprintf(L"%ls missing\n", names[i]);
    }
    free(data);
    return 0;
}
