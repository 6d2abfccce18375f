/*
 * A 32-bit Windows host for the NuGet package's runtimes/win-x86/native/optin_telemetry.dll,
 * run under 32-bit Wine by scripts/test-package. It loads the DLL by name beside the .exe
 * and looks each function up by its plain name (GetProcAddress "tel_version", not
 * "_tel_version@0"), calls them through cdecl pointers as a .NET DllImport with
 * CallingConvention.Cdecl does: tel_version, tel_open, tel_preview_json, tel_string_free,
 * tel_close. Prints the version and the preview; exits 0 when all succeeded.
 *   win32_host.exe EXPECTED_VERSION STATE_DIR
 */
#include <stdio.h>
#include <string.h>
#include <windows.h>

typedef const char *(__cdecl *version_fn)(void);
typedef int (__cdecl *open_fn)(const char *, void **);
typedef int (__cdecl *preview_fn)(void *, char **);
typedef void (__cdecl *free_fn)(char *);
typedef void (__cdecl *close_fn)(void *);
typedef const char *(__cdecl *error_fn)(void);

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: win32_host EXPECTED_VERSION STATE_DIR\n"); return 2; }
    printf("pointer size %u bytes\n", (unsigned)sizeof(void *));
    HMODULE lib = LoadLibraryA("optin_telemetry.dll");
    if (!lib) { fprintf(stderr, "LoadLibrary(optin_telemetry.dll) failed: %lu\n", GetLastError()); return 1; }
    version_fn tel_version = (version_fn)(void *)GetProcAddress(lib, "tel_version");
    open_fn tel_open = (open_fn)(void *)GetProcAddress(lib, "tel_open");
    preview_fn tel_preview_json = (preview_fn)(void *)GetProcAddress(lib, "tel_preview_json");
    free_fn tel_string_free = (free_fn)(void *)GetProcAddress(lib, "tel_string_free");
    close_fn tel_close = (close_fn)(void *)GetProcAddress(lib, "tel_close");
    error_fn tel_last_error_message = (error_fn)(void *)GetProcAddress(lib, "tel_last_error_message");
    if (!tel_version || !tel_open || !tel_preview_json || !tel_string_free || !tel_close || !tel_last_error_message) {
        fprintf(stderr, "GetProcAddress: a tel_* function is not exported under its plain name\n");
        return 1;
    }
    const char *v = tel_version();
    printf("tel_version %s\n", v);
    if (strcmp(v, argv[1]) != 0) { fprintf(stderr, "expected version %s\n", argv[1]); return 1; }

    char config[2048];
    char dir[1024];
    size_t j = 0;
    for (const char *p = argv[2]; *p && j + 2 < sizeof dir; p++) {  /* JSON-escape backslashes */
        if (*p == '\\' || *p == '"') dir[j++] = '\\';
        dir[j++] = *p;
    }
    dir[j] = '\0';
    snprintf(config, sizeof config,
             "{\"product\":\"Win32 Host\",\"product_version\":\"1.0\",\"endpoint\":\"http://127.0.0.1:9/r\","
             "\"state_dir\":\"%s\",\"schema\":{\"version\":1,\"fields\":[{\"name\":\"trial\",\"type\":\"bool\","
             "\"description\":{\"en\":\"Trial licence.\"}}]}}", dir);
    void *client = NULL;
    int rc = tel_open(config, &client);
    if (rc != 0) { fprintf(stderr, "tel_open: %d %s\n", rc, tel_last_error_message()); return 1; }
    char *preview = NULL;
    rc = tel_preview_json(client, &preview);
    if (rc != 0) { fprintf(stderr, "tel_preview_json: %d %s\n", rc, tel_last_error_message()); tel_close(client); return 1; }
    printf("preview %s\n", preview);
    tel_string_free(preview);
    tel_close(client);
    printf("closed\n");
    return 0;
}
