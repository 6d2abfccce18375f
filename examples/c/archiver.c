/*
 * Mock e-mail archiver in plain C99 using optin-telemetry through its C ABI
 * (include/optin_telemetry.h only). Portable: builds with gcc/clang on Linux
 * and with mingw-w64 for Windows.
 *
 * Usage: archiver <endpoint-url> <state-dir> [--yes|--no] [--now UNIX_SECONDS]
 *                 [--ca-file PEM] [--ohttp RELAY-URL KEY-CONFIG]
 *
 *   --yes / --no   record the user's answer without asking;
 *                  otherwise asks "Send anonymous usage statistics? [y/N]" on
 *                  stdin (end of input = no answer: consent stays undecided).
 *   --now SECONDS  the clock used for the first tick (default: current time).
 *   --ca-file PEM  trust this private CA for an https endpoint (ca_cert_pem).
 *   --ohttp RELAY-URL KEY-CONFIG
 *                  send through an Oblivious HTTP relay: "ohttp" with this relay
 *                  and the gateway's key configuration (base64), as a vendor
 *                  would ship them in its configuration.
 *
 * Output (stdout): "DESCRIBE: <json>" (the "view data" dialog contents),
 * "PREVIEW: <exact bytes of the next report>", "CONSENT: <state>",
 * "STATUS: <json>", "HISTORY: <json>". Exit 0 on success; on any library
 * error prints the code and tel_last_error_message() to stderr and exits 1;
 * exit 2 on a usage error.
 */

#include "optin_telemetry.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const SCHEMA_JSON =
    "{\"version\":1,\"fields\":["
    "{\"name\":\"trial\",\"type\":\"bool\",\"description\":{"
    "\"en\":\"Whether this installation runs a trial licence.\","
    "\"de\":\"Ob diese Installation mit einer Testlizenz l\xc3\xa4uft.\"}},"
    "{\"name\":\"edition\",\"type\":\"choice\",\"values\":[\"standard\",\"enterprise\",\"smb\"],\"description\":{"
    "\"en\":\"Licensed edition.\","
    "\"de\":\"Lizenzierte Edition.\"}},"
    "{\"name\":\"users\",\"type\":\"count\",\"buckets\":[1,5,10,25,50,100],\"description\":{"
    "\"en\":\"Number of archived mailboxes, as a range.\","
    "\"de\":\"Anzahl der archivierten Postf\xc3\xa4" "cher, als Bereich.\"}},"
    "{\"name\":\"archived_items\",\"type\":\"count\",\"rounding\":\"1-2-5\",\"description\":{"
    "\"en\":\"Number of archived e-mails, rounded at random to 0, 1, 2, 5, 10, 20, 50, ...\","
    "\"de\":\"Anzahl der archivierten E-Mails, zuf\xc3\xa4llig gerundet auf 0, 1, 2, 5, 10, 20, 50, ...\"}},"
    "{\"name\":\"profiles\",\"type\":\"choices\",\"values\":[\"imap\",\"exchange\",\"m365\",\"gmail\",\"pst\"],\"description\":{"
    "\"en\":\"Kinds of archiving profiles in use.\","
    "\"de\":\"Verwendete Arten von Archivierungsprofilen.\"}}"
    "]}";

/* Appends `s` to `buf` as a JSON string literal (with quotes). Returns 0 on
 * success, -1 when `cap` is too small. */
static int append_json_string(char *buf, size_t cap, size_t *len, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p;
    if (*len + 1 >= cap) return -1;
    buf[(*len)++] = '"';
    for (p = (const unsigned char *)s; *p; ++p) {
        char esc = 0;
        switch (*p) {
        case '"': esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        default: break;
        }
        if (esc) {
            if (*len + 2 >= cap) return -1;
            buf[(*len)++] = '\\';
            buf[(*len)++] = esc;
        } else if (*p < 0x20) {
            if (*len + 6 >= cap) return -1;
            buf[(*len)++] = '\\';
            buf[(*len)++] = 'u';
            buf[(*len)++] = '0';
            buf[(*len)++] = '0';
            buf[(*len)++] = hex[*p >> 4];
            buf[(*len)++] = hex[*p & 15];
        } else {
            if (*len + 1 >= cap) return -1;
            buf[(*len)++] = (char)*p;
        }
    }
    if (*len + 1 >= cap) return -1;
    buf[(*len)++] = '"';
    buf[*len] = '\0';
    return 0;
}

static int append_raw(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n >= cap) return -1;
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return 0;
}

/* Reads a small text file (a PEM certificate); returns a malloc'ed,
 * NUL-terminated string or NULL. */
static char *read_text_file(const char *path)
{
    enum { MAX_PEM = 64 * 1024 };
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    if (!f) return NULL;
    buf = (char *)malloc(MAX_PEM + 1);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, MAX_PEM + 1, f);
    fclose(f);
    if (n == 0 || n > MAX_PEM) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Builds the tel_open configuration; returns a malloc'ed string or NULL.
 * ca_pem (may be NULL): certificates of a private CA for an https endpoint.
 * relay and key_config (both or neither NULL): the "ohttp" object. */
static char *build_config(const char *endpoint, const char *state_dir, const char *ca_pem, const char *relay, const char *key_config)
{
    size_t cap = strlen(SCHEMA_JSON) +
                 6 * (strlen(endpoint) + strlen(state_dir) + (ca_pem ? strlen(ca_pem) : 0) +
                      (relay ? strlen(relay) + strlen(key_config) : 0)) +
                 256;
    size_t len = 0;
    char *buf = (char *)malloc(cap);
    if (!buf) return NULL;
    buf[0] = '\0';
    if (append_raw(buf, cap, &len, "{\"product\":\"Mock Archiver\",\"product_version\":\"1.0.0\",\"endpoint\":") ||
        append_json_string(buf, cap, &len, endpoint) ||
        append_raw(buf, cap, &len, ",\"state_dir\":") ||
        append_json_string(buf, cap, &len, state_dir) ||
        append_raw(buf, cap, &len, ",\"schema\":") ||
        append_raw(buf, cap, &len, SCHEMA_JSON) ||
        (ca_pem && (append_raw(buf, cap, &len, ",\"ca_cert_pem\":") || append_json_string(buf, cap, &len, ca_pem))) ||
        (relay && (append_raw(buf, cap, &len, ",\"ohttp\":{\"relay\":") || append_json_string(buf, cap, &len, relay) ||
                   append_raw(buf, cap, &len, ",\"key_config\":") || append_json_string(buf, cap, &len, key_config) ||
                   append_raw(buf, cap, &len, "}"))) ||
        append_raw(buf, cap, &len, "}")) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int report_error(const char *what, tel_result rc)
{
    fprintf(stderr, "ERROR: %s failed: code %d: %s\n", what, (int)rc, tel_last_error_message());
    return 1;
}

/* Evaluates a library call; on failure reports it and jumps to `done`. */
#define CHECK(call)                                   \
    do {                                              \
        tel_result rc_ = (call);                      \
        if (rc_ != TEL_OK) {                          \
            exit_code = report_error(#call, rc_);     \
            goto done;                                \
        }                                             \
    } while (0)

static const char *consent_name(uint32_t c)
{
    switch (c) {
    case TEL_CONSENT_UNDECIDED: return "undecided";
    case TEL_CONSENT_GRANTED: return "granted";
    case TEL_CONSENT_DENIED: return "denied";
    case TEL_CONSENT_OUTDATED: return "outdated";
    default: return "unknown";
    }
}

/* Reads `"next_due":<int>|null` from a status JSON. Returns 1 and sets *out
 * for a number, 0 for null/absent. */
static int parse_next_due(const char *status, int64_t *out)
{
    const char *key = "\"next_due\":";
    const char *p = strstr(status, key);
    char *end = NULL;
    long long v;
    if (!p) return 0;
    p += strlen(key);
    while (*p == ' ') ++p;
    if (strncmp(p, "null", 4) == 0) return 0;
    errno = 0;
    v = strtoll(p, &end, 10);
    if (end == p || errno != 0) return 0;
    *out = (int64_t)v;
    return 1;
}

/* Formats an int64_t in decimal without printf length modifiers (which differ
 * between C runtimes, e.g. msvcrt's I64). `buf` must hold 21 bytes. */
static const char *i64_text(int64_t v, char *buf)
{
    char tmp[21];
    int n = 0, neg = v < 0;
    uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = buf;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (neg) *p++ = '-';
    while (n) *p++ = tmp[--n];
    *p = '\0';
    return buf;
}

/* Asks on stdin. Returns 1 (yes), 0 (no) or -1 (end of input: no answer). */
static int ask_consent(void)
{
    char line[256];
    const char *p;
    fputs("Send anonymous usage statistics? [y/N] ", stdout);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) {
        fputs("\n(no answer: asking again next time)\n", stdout);
        return -1;
    }
    for (p = line; *p && isspace((unsigned char)*p); ++p) {
    }
    return (*p == 'y' || *p == 'Y') ? 1 : 0;
}

static void usage(void)
{
    fputs("usage: archiver <endpoint-url> <state-dir> [--yes|--no] [--now UNIX_SECONDS] [--ca-file PEM]\n"
          "                [--ohttp RELAY-URL KEY-CONFIG]\n",
          stderr);
}

int main(int argc, char **argv)
{
    const char *endpoint, *state_dir;
    int answer = -2; /* -2: ask; 1 yes; 0 no */
    int64_t now = (int64_t)time(NULL);
    int64_t next_due = 0;
    int i, exit_code = 0;
    char *ca_pem = NULL;
    const char *relay = NULL, *key_config = NULL;
    char *config = NULL, *describe = NULL, *preview = NULL, *status = NULL, *history = NULL;
    tel_client *client = NULL;
    uint32_t consent = 0;
    char t1[21], t2[21];

    if (argc < 3) {
        usage();
        return 2;
    }
    endpoint = argv[1];
    state_dir = argv[2];
    for (i = 3; i < argc; ++i) {
        if (strcmp(argv[i], "--yes") == 0) {
            answer = 1;
        } else if (strcmp(argv[i], "--no") == 0) {
            answer = 0;
        } else if (strcmp(argv[i], "--now") == 0 && i + 1 < argc) {
            char *end = NULL;
            long long v;
            errno = 0;
            v = strtoll(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || errno != 0) {
                fprintf(stderr, "archiver: --now wants unix seconds, got \"%s\"\n", argv[i]);
                return 2;
            }
            now = (int64_t)v;
        } else if (strcmp(argv[i], "--ca-file") == 0 && i + 1 < argc) {
            free(ca_pem);
            ca_pem = read_text_file(argv[++i]);
            if (!ca_pem) {
                fprintf(stderr, "archiver: cannot read \"%s\" (at most 64 KiB)\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--ohttp") == 0 && i + 2 < argc) {
            relay = argv[++i];
            key_config = argv[++i];
        } else {
            free(ca_pem);
            fprintf(stderr, "archiver: unknown argument \"%s\"\n", argv[i]);
            usage();
            return 2;
        }
    }

    printf("Mock Archiver 1.0.0 (optin-telemetry %s)\n", tel_version());
    config = build_config(endpoint, state_dir, ca_pem, relay, key_config);
    if (!config) {
        fputs("archiver: out of memory\n", stderr);
        return 1;
    }
    CHECK(tel_open(config, &client));

    /* What this installation looks like. */
    CHECK(tel_set_bool(client, "trial", 0));
    CHECK(tel_set_choice(client, "edition", "enterprise"));
    CHECK(tel_set_count(client, "users", 42));
    CHECK(tel_set_count(client, "archived_items", 1234567));
    CHECK(tel_set_values_json(client, "{\"profiles\":[\"imap\",\"m365\",\"pst\"]}"));

    if (answer == -2) answer = ask_consent();
    if (answer >= 0) CHECK(tel_set_consent(client, answer));
    CHECK(tel_get_consent(client, &consent));
    printf("CONSENT: %s\n", consent_name(consent));

    /* The "view data" dialog, and the exact bytes the next report will carry. */
    CHECK(tel_describe_json(client, NULL, &describe));
    printf("DESCRIBE: %s\n", describe);
    CHECK(tel_preview_json(client, &preview));
    printf("PREVIEW: %s\n", preview);

    /* The first tick draws the first report's random moment; the second, at that moment, sends. */
    CHECK(tel_tick_at(client, now));
    CHECK(tel_status_json(client, &status));
    if (parse_next_due(status, &next_due)) {
        printf("TICK: now=%s next_due=%s\n", i64_text(now, t1), i64_text(next_due, t2));
        CHECK(tel_tick_at(client, next_due));
    } else {
        printf("TICK: now=%s next_due=null (nothing will be sent)\n", i64_text(now, t1));
    }
    tel_string_free(status);
    status = NULL;
    CHECK(tel_flush(client, 10000));

    CHECK(tel_status_json(client, &status));
    printf("STATUS: %s\n", status);
    CHECK(tel_history_json(client, &history));
    printf("HISTORY: %s\n", history);

done:
    fflush(stdout);
    tel_string_free(history);
    tel_string_free(status);
    tel_string_free(preview);
    tel_string_free(describe);
    if (client) {
        /* Give a send still in flight (only after an error above) a chance to end. */
        (void)tel_flush(client, 10000);
        tel_close(client);
    }
    free(config);
    free(ca_pem);
    return exit_code;
}
