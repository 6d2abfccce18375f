/*
 * Test host for the Windows suite (tests/windows/close_check.py): tel_close
 * during a stalled send, through the DLL's C ABI under Wine.
 *
 *   close_host.exe stall     opens a client with the configuration in
 *                            OPTIN_TEST_CONFIG, gives consent, ticks at
 *                            OPTIN_TEST_NOW and then at the drawn due time,
 *                            waits until the send is in flight (status
 *                            "sending", history "in_flight") plus 300 ms,
 *                            then times tel_close.
 *   close_host.exe deliver   opens the same state_dir, prints the history,
 *                            ticks at OPTIN_TEST_NOW (and at the catch-up
 *                            moment it may draw), flushes, prints the
 *                            history again.
 *
 * Output lines: "DUE: <unix seconds>", "CLOSE_MS: <ms>", "HISTORY: <json>",
 * "HISTORY_AFTER: <json>". Exit 0, or 1 with "ERROR: <call>: <message>".
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

#include "optin_telemetry.h"

static void fail(const char *call)
{
    printf("ERROR: %s: %s\n", call, tel_last_error_message());
    exit(1);
}

/* The number after "key" in a JSON text; 0 when null or absent. */
static int number_after(const char *json, const char *key, long long *value)
{
    const char *p = strstr(json, key);
    if (!p) return 0;
    p += strlen(key);
    if (*p < '0' || *p > '9') return 0;
    *value = strtoll(p, 0, 10);
    return 1;
}

static char *status(tel_client *c)
{
    char *json = 0;
    if (tel_status_json(c, &json) != TEL_OK) fail("tel_status_json");
    return json;
}

static void print_history(tel_client *c, const char *label)
{
    char *json = 0;
    if (tel_history_json(c, &json) != TEL_OK) fail("tel_history_json");
    printf("%s%s\n", label, json);
    tel_string_free(json);
}

int main(int argc, char **argv)
{
    const char *config = getenv("OPTIN_TEST_CONFIG");
    const char *now_text = getenv("OPTIN_TEST_NOW");
    tel_client *client = 0;
    long long now, due = 0;
    char *json;
    if (argc != 2 || !config || !now_text) {
        printf("usage: OPTIN_TEST_CONFIG=... OPTIN_TEST_NOW=... close_host.exe stall|deliver\n");
        return 2;
    }
    now = strtoll(now_text, 0, 10);
    setvbuf(stdout, 0, _IONBF, 0);
    if (tel_open(config, &client) != TEL_OK) fail("tel_open");
    if (strcmp(argv[1], "stall") == 0) {
        LARGE_INTEGER freq, t0, t1;
        int i, in_flight = 0;
        if (tel_set_consent(client, 1) != TEL_OK) fail("tel_set_consent");
        if (tel_tick_at(client, now) != TEL_OK) fail("tel_tick_at");
        json = status(client);
        if (!number_after(json, "\"next_due\":", &due)) {
            printf("ERROR: no next_due in %s\n", json);
            return 1;
        }
        tel_string_free(json);
        printf("DUE: %lld\n", due);
        if (tel_tick_at(client, due) != TEL_OK) fail("tel_tick_at(due)");
        for (i = 0; i < 2000 && !in_flight; ++i) {
            char *h = 0;
            json = status(client);
            if (tel_history_json(client, &h) != TEL_OK) fail("tel_history_json");
            in_flight = strstr(json, "\"sending\":true") && strstr(h, "\"in_flight\"");
            tel_string_free(json);
            tel_string_free(h);
            if (!in_flight) Sleep(5);
        }
        if (!in_flight) {
            printf("ERROR: the send did not start\n");
            return 1;
        }
        Sleep(300); /* the request is written; the client waits for the answer */
        QueryPerformanceFrequency(&freq);
        QueryPerformanceCounter(&t0);
        tel_close(client);
        QueryPerformanceCounter(&t1);
        printf("CLOSE_MS: %.3f\n", (double)(t1.QuadPart - t0.QuadPart) * 1000.0 / (double)freq.QuadPart);
        return 0;
    }
    print_history(client, "HISTORY: ");
    if (tel_tick_at(client, now) != TEL_OK) fail("tel_tick_at");
    json = status(client);
    if (!strstr(json, "\"sending\":true") && number_after(json, "\"next_due\":", &due) && due > now) {
        if (tel_tick_at(client, due) != TEL_OK) fail("tel_tick_at(catch-up)");
    }
    tel_string_free(json);
    if (tel_flush(client, 30000) != TEL_OK) fail("tel_flush");
    print_history(client, "HISTORY_AFTER: ");
    tel_close(client);
    return 0;
}
