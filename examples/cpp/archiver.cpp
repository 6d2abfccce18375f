// Mock e-mail archiver in C++17 using the optin-telemetry C++ wrapper.
// Same behaviour and output as examples/c/archiver.c:
//
//   archiver <endpoint-url> <state-dir> [--yes|--no] [--now UNIX_SECONDS]
//
// --yes/--no record the answer; otherwise it asks on stdin (end of input = no
// answer, consent stays undecided). Prints DESCRIBE:, PREVIEW:, STATUS: and
// HISTORY: lines; a library error prints its code and message and exits 1.
#include <optin_telemetry.hpp>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <iostream>
#include <optional>
#include <string>

namespace ot = optin_telemetry;
using namespace std::chrono_literals;

namespace {

const char* const kSchema =
    R"({"version":1,"fields":[)"
    R"({"name":"trial","type":"bool","description":{)"
    R"("en":"Whether this installation runs a trial licence.",)"
    "\"de\":\"Ob diese Installation mit einer Testlizenz l\xc3\xa4uft.\"}},"
    R"({"name":"edition","type":"choice","values":["standard","enterprise","smb"],"description":{)"
    R"("en":"Licensed edition.",)"
    R"("de":"Lizenzierte Edition."}},)"
    R"({"name":"users","type":"count","buckets":[1,5,10,25,50,100],"description":{)"
    R"("en":"Number of archived mailboxes, as a range.",)"
    "\"de\":\"Anzahl der archivierten Postf\xc3\xa4" "cher, als Bereich.\"}},"
    R"({"name":"archived_items","type":"count","rounding":"1-2-5","description":{)"
    R"("en":"Number of archived e-mails, rounded at random to 0, 1, 2, 5, 10, 20, 50, ...",)"
    "\"de\":\"Anzahl der archivierten E-Mails, zuf\xc3\xa4llig gerundet auf 0, 1, 2, 5, 10, 20, 50, ...\"}},"
    R"({"name":"profiles","type":"choices","values":["imap","exchange","m365","gmail","pst"],"description":{)"
    R"("en":"Kinds of archiving profiles in use.",)"
    R"("de":"Verwendete Arten von Archivierungsprofilen."}})"
    "]}";

std::string json_string(const std::string& s) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out += hex[c >> 4];
                    out += hex[c & 15];
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out + "\"";
}

std::string config_json(const std::string& endpoint, const std::string& state_dir) {
    return R"({"product":"Mock Archiver","product_version":"1.0.0","endpoint":)" + json_string(endpoint) +
           R"(,"state_dir":)" + json_string(state_dir) + R"(,"schema":)" + kSchema + "}";
}

/// `"next_due":<n>` from a status JSON; nullopt for null.
std::optional<std::int64_t> next_due(const std::string& status) {
    const std::string key = "\"next_due\":";
    const auto at = status.find(key);
    if (at == std::string::npos) return std::nullopt;
    const std::string rest = status.substr(at + key.size());
    if (rest.compare(0, 4, "null") == 0) return std::nullopt;
    try {
        return std::stoll(rest);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

/// true = yes, false = no, nullopt = end of input (no answer).
std::optional<bool> ask_consent() {
    std::cout << "Send anonymous usage statistics? [y/N] " << std::flush;
    std::string line;
    if (!std::getline(std::cin, line)) {
        std::cout << "\n(no answer: asking again next time)\n";
        return std::nullopt;
    }
    const auto first = line.find_first_not_of(" \t\r");
    return first != std::string::npos && (line[first] == 'y' || line[first] == 'Y');
}

int usage() {
    std::cerr << "usage: archiver <endpoint-url> <state-dir> [--yes|--no] [--now UNIX_SECONDS]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return usage();
    const std::string endpoint = argv[1];
    const std::string state_dir = argv[2];
    std::optional<bool> answer;
    bool ask = true;
    std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    for (int i = 3; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--yes" || arg == "--no") {
            answer = arg == "--yes";
            ask = false;
        } else if (arg == "--now" && i + 1 < argc) {
            const std::string v = argv[++i];
            std::size_t used = 0;
            try {
                now = std::stoll(v, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used == 0 || used != v.size()) {
                std::cerr << "archiver: --now wants unix seconds, got \"" << v << "\"\n";
                return 2;
            }
        } else {
            std::cerr << "archiver: unknown argument \"" << arg << "\"\n";
            return usage();
        }
    }

    std::cout << "Mock Archiver 1.0.0 (optin-telemetry " << ot::version() << ")\n";
    ot::Client client;
    try {
        client = ot::Client::open(config_json(endpoint, state_dir));

        // What this installation looks like.
        client.set_bool("trial", false);
        client.set_choice("edition", "enterprise");
        client.set_count("users", 42);
        client.set_count("archived_items", 1234567);
        client.set_values_json(R"({"profiles":["imap","m365","pst"]})");

        if (ask) answer = ask_consent();
        if (answer) client.set_consent(*answer);
        std::cout << "CONSENT: " << ot::to_string(client.consent()) << "\n";

        // The "view data" dialog, and the exact bytes the next report will carry.
        std::cout << "DESCRIBE: " << client.describe_json() << "\n";
        std::cout << "PREVIEW: " << client.preview_json() << "\n";

        // The first tick draws the weekly phase; the second, at that moment, sends.
        client.tick_at(now);
        if (const auto due = next_due(client.status_json())) {
            std::cout << "TICK: now=" << now << " next_due=" << *due << "\n";
            client.tick_at(*due);
        } else {
            std::cout << "TICK: now=" << now << " next_due=null (nothing will be sent)\n";
        }
        client.flush(10s);

        std::cout << "STATUS: " << client.status_json() << "\n";
        std::cout << "HISTORY: " << client.history_json() << "\n";
    } catch (const ot::Error& e) {
        std::cout.flush();
        std::cerr << "ERROR: " << e.function() << " failed: code " << e.raw_code() << ": " << e.message() << "\n";
        if (client) {
            try {
                client.flush(10s);
            } catch (const ot::Error&) {
            }
        }
        return 1;
    }
    return 0;
}
