/* A stand-in native library that reports the binding's own version but lacks
 * some tel_* functions (like an old or hand-built DLL): the .NET tests load it
 * in a child process to check that TelemetryClient.Open refuses it with
 * TelemetryVersionMismatchException naming a missing function, rather than a
 * raw EntryPointNotFoundException from a later call. VERSION comes from the
 * build (scripts/test-dotnet passes Cargo.toml's version); with NO_VERSION
 * even tel_version is missing (a foreign library of the same name). */
#include <stddef.h>
#include <stdint.h>

static int dummy;

#ifndef NO_VERSION
const char *tel_version(void) { return VERSION; }
#endif
const char *tel_last_error_message(void) { return "stub"; }
void tel_string_free(char *s) { (void)s; }
int32_t tel_open(const char *config_json, void **out_client) {
    (void)config_json;
    *out_client = &dummy;
    return 0;
}
void tel_close(void *client) { (void)client; }
int32_t tel_set_consent(void *client, int32_t granted) {
    (void)client;
    (void)granted;
    return 0;
}
/* Missing: tel_get_consent, tel_set_bool, ..., tel_flush, tel_clear_history. */
