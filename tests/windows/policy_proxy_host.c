/*
 * Test host for the Windows suite: opens a client with the configuration in
 * the environment variable OPTIN_TEST_CONFIG, gives consent, prints the
 * preview, ticks at OPTIN_TEST_NOW (unix seconds) and then at the drawn due
 * time, waits for the send and prints status and history:
 *
 *   PREVIEW: <exact bytes of the next report>
 *   STATUS: <tel_status_json>
 *   HISTORY: <tel_history_json>
 *
 * Exit 0, or 1 with "ERROR: <call>: <message>" on a library error.
 *
 * It uses no C runtime at all (only kernel32 and the library), so the same
 * file builds with mingw-w64 and with clang --target=x86_64-pc-windows-msvc +
 * lld-link against the MSVC import library optin_telemetry.lib, where no
 * Microsoft C runtime is available on this machine.
 */

#include "optin_telemetry.h"

typedef void *HANDLE;
typedef unsigned long DWORD;
#define STD_OUTPUT_HANDLE ((DWORD)-11)
__declspec(dllimport) HANDLE __stdcall GetStdHandle(DWORD which);
__declspec(dllimport) int __stdcall WriteFile(HANDLE file, const void *data, DWORD size, DWORD *written, void *overlapped);
__declspec(dllimport) DWORD __stdcall GetEnvironmentVariableA(const char *name, char *buffer, DWORD size);
__declspec(dllimport) __declspec(noreturn) void __stdcall ExitProcess(unsigned int code);

static char config[32768];
static char number[32];

static unsigned long length(const char *s)
{
    unsigned long n = 0;
    while (s[n]) ++n;
    return n;
}

static void out(const char *s)
{
    DWORD written = 0;
    WriteFile(GetStdHandle(STD_OUTPUT_HANDLE), s, (DWORD)length(s), &written, 0);
}

static void fail(const char *call)
{
    out("ERROR: ");
    out(call);
    out(": ");
    out(tel_last_error_message());
    out("\n");
    ExitProcess(1);
}

/* Parses an optional '-' and decimal digits; returns 0 when there are none. */
static int parse_i64(const char *p, int64_t *value)
{
    int negative = 0, digits = 0;
    int64_t v = 0;
    if (*p == '-') {
        negative = 1;
        ++p;
    }
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        ++p;
        ++digits;
    }
    *value = negative ? -v : v;
    return digits > 0;
}

/* The number after "\"next_due\":" in a status JSON; 0 when null or absent. */
static int next_due(const char *status, int64_t *value)
{
    static const char key[] = "\"next_due\":";
    const char *p;
    for (p = status; *p; ++p) {
        unsigned long i = 0;
        while (key[i] && p[i] == key[i]) ++i;
        if (!key[i]) return parse_i64(p + i, value);
    }
    return 0;
}

static void print_json(const char *label, char *json)
{
    out(label);
    out(json);
    out("\n");
    tel_string_free(json);
}

void mainCRTStartup(void)
{
    tel_client *client = 0;
    char *json = 0;
    int64_t now = 0, due = 0;
    DWORD n = GetEnvironmentVariableA("OPTIN_TEST_CONFIG", config, sizeof config);
    if (n == 0 || n >= sizeof config) {
        out("ERROR: set OPTIN_TEST_CONFIG to the configuration JSON\n");
        ExitProcess(2);
    }
    n = GetEnvironmentVariableA("OPTIN_TEST_NOW", number, sizeof number);
    if (n == 0 || n >= sizeof number || !parse_i64(number, &now)) {
        out("ERROR: set OPTIN_TEST_NOW to unix seconds\n");
        ExitProcess(2);
    }
    out("VERSION: ");
    out(tel_version());
    out("\n");
    if (tel_open(config, &client) != TEL_OK) fail("tel_open");
    if (tel_set_consent(client, 1) != TEL_OK) fail("tel_set_consent");
    if (tel_preview_json(client, &json) != TEL_OK) fail("tel_preview_json");
    print_json("PREVIEW: ", json);
    /* The first tick draws the weekly phase; the second, at that moment, sends. */
    if (tel_tick_at(client, now) != TEL_OK) fail("tel_tick_at");
    if (tel_status_json(client, &json) != TEL_OK) fail("tel_status_json");
    if (next_due(json, &due)) {
        tel_string_free(json);
        if (tel_tick_at(client, due) != TEL_OK) fail("tel_tick_at(due)");
    } else {
        tel_string_free(json);
    }
    if (tel_flush(client, 60000) != TEL_OK) fail("tel_flush");
    if (tel_status_json(client, &json) != TEL_OK) fail("tel_status_json");
    print_json("STATUS: ", json);
    if (tel_history_json(client, &json) != TEL_OK) fail("tel_history_json");
    print_json("HISTORY: ", json);
    tel_close(client);
    ExitProcess(0);
}
