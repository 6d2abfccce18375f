// Tests of the C++ wrapper against the real cdylib and a real HTTP collector on
// 127.0.0.1 (loopback_collector.hpp).
#include <optin_telemetry.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <limits>
#include <typeinfo>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "loopback_collector.hpp"

namespace fs = std::filesystem;
namespace ot = optin_telemetry;
using namespace std::chrono_literals;
using testing_support::LoopbackCollector;

namespace {

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            default: out += c;
        }
    }
    return out + "\"";
}

std::string schema_json(int version = 1, bool extra_field = false) {
    std::string s = "{\"version\":" + std::to_string(version) + ",\"fields\":[" +
                    R"({"name":"trial","type":"bool","description":{"en":"Trial installation.","de":"Testinstallation."}},)"
                    R"({"name":"edition","type":"choice","values":["standard","enterprise","smb"],"description":{"en":"Edition.","de":"Edition."}},)"
                    R"({"name":"users","type":"count","buckets":[1,5,10,25,50,100],"description":{"en":"Number of users.","de":"Anzahl der Benutzer."}},)"
                    R"({"name":"archived_items","type":"count","rounding":"1-2-5","description":{"en":"Archived e-mails.","de":"Archivierte E-Mails."}},)"
                    R"({"name":"profiles","type":"choices","values":["imap","exchange","m365","gmail","pst"],"description":{"en":"Profile kinds.","de":"Profilarten."}})";
    if (extra_field) s += R"(,{"name":"cluster","type":"bool","description":{"en":"Clustered."}})";
    return s + "]}";
}

std::string config_json(const std::string& endpoint, const fs::path& state_dir, int schema_version = 1, bool extra_field = false) {
    return "{\"product\":\"Mock Archiver\",\"product_version\":\"1.0.0\",\"endpoint\":" + json_string(endpoint) +
           ",\"state_dir\":" + json_string(state_dir.string()) + ",\"schema\":" + schema_json(schema_version, extra_field) + "}";
}

/// `"next_due":123` -> 123; null -> -1.
std::int64_t next_due(const std::string& status) {
    std::smatch m;
    static const std::regex re("\"next_due\":(null|-?[0-9]+)");
    if (!std::regex_search(status, m, re)) throw std::runtime_error("no next_due in " + status);
    return m[1] == "null" ? -1 : std::stoll(m[1]);
}

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

void set_example_values(ot::Client& c) {
    c.set_bool("trial", false);
    c.set_choice("edition", "enterprise");
    c.set_count("users", 42);
    c.set_count("archived_items", 1234567);
    c.set_values_json(R"({"profiles":["imap","m365"]})");
}

/// Fixture: a fresh state directory under the test's working directory
/// (the CMake build tree), removed afterwards.
class ClientTest : public ::testing::Test {
protected:
    void SetUp() override {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        base_ = fs::current_path() / "test-state" / (std::string(info->test_suite_name()) + "." + info->name());
        fs::remove_all(base_);
        fs::create_directories(base_);
    }
    void TearDown() override {
        std::error_code ec;
        fs::remove_all(base_, ec);
    }
    fs::path dir(const std::string& name = "state") const { return base_ / name; }

    /// Consent granted, first tick draws the phase; returns the due time.
    static std::int64_t grant_and_draw(ot::Client& c) {
        c.set_consent(true);
        c.tick_at(unix_now());
        const auto due = next_due(c.status_json());
        if (due < 0) throw std::runtime_error("no next_due after consent: " + c.status_json());
        return due;
    }

    fs::path base_;
};

// ---------------------------------------------------------------------------

TEST(Version, MatchesTheLibraryAndThePackage) {
    EXPECT_EQ(ot::version(), std::string(tel_version()));
    EXPECT_EQ(ot::version(), OPTIN_TELEMETRY_EXPECTED_VERSION);
}

TEST_F(ClientTest, ConsentFlowSendsExactlyThePreviewOnce) {
    LoopbackCollector collector;
    auto client = ot::Client::open(config_json(collector.url(), dir()));
    set_example_values(client);
    EXPECT_EQ(client.consent(), ot::Consent::Undecided);

    // Undecided: ticking sends nothing and schedules nothing.
    const auto now = unix_now();
    client.tick_at(now);
    client.tick_at(now + 30 * 86400);
    client.flush(5s);
    EXPECT_EQ(next_due(client.status_json()), -1);
    EXPECT_EQ(collector.count(), 0u);

    client.set_consent(true);
    EXPECT_EQ(client.consent(), ot::Consent::Granted);
    const std::string preview = client.preview_json();
    client.tick_at(now);
    const auto due = next_due(client.status_json());
    ASSERT_GE(due, now);
    EXPECT_LE(due, now + 8 * 86400);
    EXPECT_EQ(collector.count(), 0u) << "nothing is sent before the drawn moment";

    client.tick_at(due);
    client.flush(10s);
    const auto reqs = collector.wait_for(1, 5s);
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(collector.count(), 1u);
    EXPECT_EQ(reqs[0].method, "POST");
    EXPECT_EQ(reqs[0].path, "/v1/report");
    EXPECT_EQ(reqs[0].headers.at("content-type"), "application/json");
    EXPECT_EQ(reqs[0].body, preview) << "the received body must be byte-identical to the preview";
    EXPECT_NE(preview.find("\"users\":\"25-49\""), std::string::npos) << preview;

    const std::string history = client.history_json();
    EXPECT_NE(history.find("\"outcome\":\"delivered\""), std::string::npos) << history;
    EXPECT_NE(history.find("\"status\":200"), std::string::npos) << history;
    const std::string status = client.status_json();
    EXPECT_EQ(status.find("\"last_sent\":null"), std::string::npos) << status;
    EXPECT_NE(status.find("\"consent\":\"granted\""), std::string::npos) << status;

    client.clear_history();
    EXPECT_EQ(client.history_json(), "{\"reports\":[]}");
}

TEST_F(ClientTest, DeniedSendsNothing) {
    LoopbackCollector collector;
    auto client = ot::Client::open(config_json(collector.url(), dir()));
    set_example_values(client);
    client.set_consent(false);
    EXPECT_EQ(client.consent(), ot::Consent::Denied);
    const auto now = unix_now();
    for (int day = 0; day <= 30; ++day) client.tick_at(now + day * 86400);
    client.flush(5s);
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(collector.count(), 0u);
    EXPECT_EQ(next_due(client.status_json()), -1);
    EXPECT_EQ(client.history_json(), "{\"reports\":[]}");
}

TEST_F(ClientTest, ConsentPersistsAndASchemaChangeMakesItOutdated) {
    LoopbackCollector collector;
    {
        auto c = ot::Client::open(config_json(collector.url(), dir()));
        c.set_consent(true);
    }
    {
        auto c = ot::Client::open(config_json(collector.url(), dir()));
        EXPECT_EQ(c.consent(), ot::Consent::Granted) << "the answer is on disk";
    }
    {
        auto c = ot::Client::open(config_json(collector.url(), dir(), 2, true));
        EXPECT_EQ(c.consent(), ot::Consent::Outdated);
        const std::string d = c.describe_json();
        EXPECT_NE(d.find("\"state\":\"outdated\""), std::string::npos) << d;
        EXPECT_NE(d.find("cluster"), std::string::npos) << "the added field is listed: " << d;
        c.tick_at(unix_now() + 30 * 86400);
        c.flush(5s);
        c.set_consent(false);
        EXPECT_EQ(c.consent(), ot::Consent::Denied);
    }
    {
        auto c = ot::Client::open(config_json(collector.url(), dir(), 3, false));
        EXPECT_EQ(c.consent(), ot::Consent::Denied) << "a no stays a no across schema changes";
    }
    EXPECT_EQ(collector.count(), 0u);
}

TEST_F(ClientTest, DescribeUsesTheRequestedLanguage) {
    LoopbackCollector collector;
    auto client = ot::Client::open(config_json(collector.url(), dir()));
    set_example_values(client);
    const std::string de = client.describe_json("de");
    const std::string en = client.describe_json();
    EXPECT_NE(de.find("Anzahl der Benutzer."), std::string::npos) << de;
    EXPECT_NE(en.find("Number of users."), std::string::npos) << en;
    EXPECT_NE(de.find("\"language\":\"de\""), std::string::npos) << de;
    // The dialog shows the exact next report.
    const std::string preview = client.preview_json();
    EXPECT_NE(en.find(json_string(preview)), std::string::npos) << en;
}

// ---------------------------------------------------------------------------
// Errors become exceptions with the code and the library's message.

TEST_F(ClientTest, OpenErrorsCarryCodeAndMessage) {
    try {
        (void)ot::Client::open("{");
        FAIL() << "no exception";
    } catch (const ot::Error& e) {
        EXPECT_EQ(e.code(), ot::ErrorCode::MalformedJson);
        EXPECT_EQ(e.raw_code(), TEL_ERR_MALFORMED_JSON);
        EXPECT_FALSE(e.message().empty());
        EXPECT_EQ(e.function(), "tel_open");
        EXPECT_NE(std::string(e.what()).find(e.message()), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("TEL_ERR_MALFORMED_JSON (7)"), std::string::npos) << e.what();
    }

    // An unknown key is named in the message.
    std::string cfg = config_json("http://127.0.0.1:9/v1/report", dir());
    cfg.insert(1, "\"disable\":true,");
    try {
        (void)ot::Client::open(cfg);
        FAIL() << "no exception";
    } catch (const ot::Error& e) {
        EXPECT_EQ(e.code(), ot::ErrorCode::Config);
        EXPECT_NE(e.message().find("\"disable\""), std::string::npos) << e.message();
    }

    // Catchable as std::runtime_error.
    try {
        (void)ot::Client::open(config_json("ftp://127.0.0.1/x", dir()));
        FAIL() << "no exception";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("config.endpoint"), std::string::npos) << e.what();
    }

    // A NUL inside the std::string is refused rather than silently cut.
    EXPECT_THROW((void)ot::Client::open(std::string("{\0}", 3)), ot::Error);
}

TEST_F(ClientTest, ValueErrorsCarryCodeAndMessageAndChangeNothing) {
    LoopbackCollector collector;
    auto client = ot::Client::open(config_json(collector.url(), dir()));
    set_example_values(client);
    const std::string before = client.preview_json();

    auto expect_error = [&](auto&& call, ot::ErrorCode code, const std::string& needle) {
        try {
            call();
            ADD_FAILURE() << "no exception, expected " << ot::error_code_name(code);
        } catch (const ot::Error& e) {
            EXPECT_EQ(e.code(), code) << e.what();
            EXPECT_NE(e.message().find(needle), std::string::npos) << "message: " << e.message();
        }
    };
    expect_error([&] { client.set_choice("edition", "premium"); }, ot::ErrorCode::ValueNotAllowed, "enterprise");
    expect_error([&] { client.set_count("trial", 3); }, ot::ErrorCode::WrongType, "trial");
    expect_error([&] { client.set_bool("no_such_field", true); }, ot::ErrorCode::UnknownField, "no_such_field");
    expect_error([&] { client.set_values_json(R"({"users":3,"edition":"bogus"})"); }, ot::ErrorCode::ValueNotAllowed, "edition");
    expect_error([&] { client.set_values_json("["); }, ot::ErrorCode::MalformedJson, "");
    expect_error([&] { client.set_values_json(R"({"profiles":["imap","imap"]})"); }, ot::ErrorCode::ValueNotAllowed, "profiles");
    expect_error([&] { (void)client.describe_json("not a tag"); }, ot::ErrorCode::InvalidArgument, "");
    expect_error([&] { client.set_count(std::string("us\0ers", 6), 1); }, ot::ErrorCode::InvalidArgument, "NUL");
    expect_error([&] { client.set_count(std::string(300, 'x'), 1); }, ot::ErrorCode::TooLarge, "");
    expect_error([&] { client.set_choice("edition", "\xff"); }, ot::ErrorCode::InvalidUtf8, "");

    EXPECT_EQ(client.preview_json(), before) << "a rejected value changes nothing";
}

TEST_F(ClientTest, NegativeCountsOfAnySignedTypeThrowAndChangeNothing) {
    // Converted to uint64_t, -1 would be sent as 18446744073709551615.
    auto client = ot::Client::open(config_json("http://127.0.0.1:9/v1/report", dir()));
    client.set_count("archived_items", 1234567);
    const std::string before = client.preview_json();
    auto expect_refused = [&](auto value) {
        try {
            client.set_count("archived_items", value);
            ADD_FAILURE() << "set_count accepted the negative " << +value << " (" << typeid(value).name() << ")";
        } catch (const ot::Error& e) {
            EXPECT_EQ(e.code(), ot::ErrorCode::ValueNotAllowed) << e.what();
            EXPECT_NE(e.message().find("archived_items"), std::string::npos) << e.message();
            EXPECT_NE(e.message().find("negative"), std::string::npos) << e.message();
        }
    };
    expect_refused(-1);
    expect_refused(static_cast<signed char>(-1));
    expect_refused(static_cast<std::int8_t>(-128));
    expect_refused(static_cast<short>(-300));
    expect_refused(-1L);
    expect_refused(std::numeric_limits<long long>::min());
    expect_refused(static_cast<std::int64_t>(-1));
    expect_refused(static_cast<std::ptrdiff_t>(-42));
    EXPECT_EQ(client.preview_json(), before) << "a refused count changed the report";
    EXPECT_EQ(before.find("18446744073709551615"), std::string::npos);

    // Unsigned types of every width, and non-negative signed values, go through.
    const std::string fields_of = R"("archived_items":)";
    auto sent = [&](const std::string& preview) {
        const auto at = preview.find(fields_of);
        return at == std::string::npos ? std::string() : preview.substr(at + fields_of.size(), preview.find_first_of(",}", at) - at - fields_of.size());
    };
    client.set_count("archived_items", static_cast<unsigned char>(200));
    const std::string small = sent(client.preview_json());
    client.set_count("archived_items", 200);
    EXPECT_EQ(sent(client.preview_json()), small) << "int 200 and unsigned char 200 differ";
    client.set_count("archived_items", static_cast<unsigned short>(60000));
    client.set_count("archived_items", 4000000000u);
    client.set_count("archived_items", std::size_t{1234567});
    client.set_count("archived_items", std::uint64_t{1234567});
    EXPECT_EQ(client.preview_json(), before) << "unsigned 1234567 is not the same count as before";
    client.set_count("archived_items", static_cast<std::int64_t>(0));
    EXPECT_NE(client.preview_json(), before);
}

TEST_F(ClientTest, FlushTimeoutIsAnException) {
    LoopbackCollector collector(200, 2500ms);
    auto client = ot::Client::open(config_json(collector.url(), dir()));
    const auto due = grant_and_draw(client);
    client.tick_at(due);
    ASSERT_EQ(collector.wait_for(1, 5s).size(), 1u);
    try {
        client.flush(100ms);
        FAIL() << "no exception while the collector is still answering";
    } catch (const ot::Error& e) {
        EXPECT_EQ(e.code(), ot::ErrorCode::Timeout);
        EXPECT_NE(e.message().find("100 ms"), std::string::npos) << e.message();
    }
    EXPECT_NE(client.status_json().find("\"sending\":true"), std::string::npos);
    client.flush(10s);
    EXPECT_NE(client.history_json().find("\"outcome\":\"delivered\""), std::string::npos);
}

TEST_F(ClientTest, ServerErrorIsRecordedNotThrown) {
    LoopbackCollector collector(503);
    auto client = ot::Client::open(config_json(collector.url(), dir()));
    const auto due = grant_and_draw(client);
    client.tick_at(due);
    client.flush(10s);
    EXPECT_EQ(collector.count(), 1u);
    const std::string status = client.status_json();
    EXPECT_NE(status.find("HTTP 503"), std::string::npos) << status;
    EXPECT_NE(client.history_json().find("\"outcome\":\"failed\""), std::string::npos);
}

// ---------------------------------------------------------------------------
// Move semantics.

static_assert(!std::is_copy_constructible_v<ot::Client>, "Client is move-only");
static_assert(!std::is_copy_assignable_v<ot::Client>, "Client is move-only");
static_assert(std::is_nothrow_move_constructible_v<ot::Client>, "moves do not throw");
static_assert(std::is_nothrow_move_assignable_v<ot::Client>, "moves do not throw");
static_assert(std::is_base_of_v<std::runtime_error, ot::Error>, "Error is a std::runtime_error");
static_assert(std::is_same_v<std::underlying_type_t<ot::Consent>, std::uint32_t>);
static_assert(static_cast<int>(ot::Consent::Undecided) == 0 && static_cast<int>(ot::Consent::Granted) == 1 &&
              static_cast<int>(ot::Consent::Denied) == 2 && static_cast<int>(ot::Consent::Outdated) == 3);

TEST_F(ClientTest, MovedFromClientIsEmptyAndSafe) {
    LoopbackCollector collector;
    auto a = ot::Client::open(config_json(collector.url(), dir("a")));
    ASSERT_TRUE(a);
    a.set_count("users", 7);
    tel_client* handle = a.native_handle();
    ASSERT_NE(handle, nullptr);

    ot::Client b(std::move(a));
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the point of the test
    EXPECT_TRUE(a.empty());
    EXPECT_EQ(a.native_handle(), nullptr);
    EXPECT_EQ(b.native_handle(), handle);
    EXPECT_NE(b.preview_json().find("\"users\":\"5-9\""), std::string::npos) << "the state moved along";

    // Calls on the moved-from client throw, they do not crash.
    try {
        (void)a.preview_json();
        FAIL() << "no exception";
    } catch (const ot::Error& e) {
        EXPECT_EQ(e.code(), ot::ErrorCode::NullArgument);
        EXPECT_NE(e.message().find("client"), std::string::npos) << e.message();
    }
    EXPECT_THROW(a.set_consent(true), ot::Error);
    EXPECT_THROW((void)a.consent(), ot::Error);
    EXPECT_THROW(a.tick(), ot::Error);
    EXPECT_THROW(a.flush(10ms), ot::Error);
    a.close();  // no-op on an empty client

    // Move assignment closes the target's old handle and takes the new one.
    auto c = ot::Client::open(config_json(collector.url(), dir("c")));
    c = std::move(b);
    EXPECT_EQ(c.native_handle(), handle);
    EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
    ot::Client& alias = c;
    c = std::move(alias);  // self-move keeps the handle
    EXPECT_EQ(c.native_handle(), handle);

    // A moved-from client can be reused.
    a = ot::Client::open(config_json(collector.url(), dir("a2")));
    EXPECT_EQ(a.consent(), ot::Consent::Undecided);

    // Containers move clients around on reallocation.
    std::vector<ot::Client> clients;
    for (int i = 0; i < 6; ++i) clients.push_back(ot::Client::open(config_json(collector.url(), dir("v" + std::to_string(i)))));
    for (auto& cl : clients) EXPECT_EQ(cl.consent(), ot::Consent::Undecided);

    ot::Client empty;
    EXPECT_TRUE(empty.empty());
    std::swap(empty, a);
    EXPECT_FALSE(empty.empty());
    EXPECT_TRUE(a.empty());
    c.close();
    EXPECT_TRUE(c.empty());
}

TEST_F(ClientTest, ClosingWithASendInFlightDoesNotCrash) {
    LoopbackCollector collector(200, 1500ms);
    const auto start = std::chrono::steady_clock::now();
    {
        auto client = ot::Client::open(config_json(collector.url(), dir()));
        const auto due = grant_and_draw(client);
        client.tick_at(due);
        ASSERT_EQ(collector.wait_for(1, 5s).size(), 1u);
    }  // destroyed while the collector still holds the answer
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, 6s);
    auto again = ot::Client::open(config_json(collector.url(), dir()));
    EXPECT_EQ(again.consent(), ot::Consent::Granted);
}

// ---------------------------------------------------------------------------
// Many threads on one client.

TEST_F(ClientTest, ManyThreadsShareOneClient) {
    LoopbackCollector collector;
    auto client = ot::Client::open(config_json(collector.url(), dir()));
    set_example_values(client);
    client.set_consent(true);

    constexpr int kThreads = 8;
    constexpr int kRounds = 60;
    std::atomic<int> failures{0};
    std::mutex log_mutex;
    std::vector<std::string> log;
    auto note = [&](const std::string& what) {
        ++failures;
        std::lock_guard<std::mutex> lock(log_mutex);
        if (log.size() < 20) log.push_back(what);
    };

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            static const char* editions[] = {"standard", "enterprise", "smb"};
            for (int i = 0; i < kRounds; ++i) {
                try {
                    client.set_count("users", static_cast<std::uint64_t>(t * 1000 + i));
                    client.set_choice("edition", editions[(t + i) % 3]);
                    const std::string p = client.preview_json();
                    if (p.empty() || p.front() != '{' || p.back() != '}') note("bad preview " + p);
                    if (client.consent() != ot::Consent::Granted) note("consent changed");
                    const std::string s = client.status_json();
                    if (s.find("\"consent\":\"granted\"") == std::string::npos) note("bad status " + s);
                    if (i % 10 == 0 && client.describe_json("de").find("Anzahl der Benutzer.") == std::string::npos) note("bad describe");
                    client.tick();
                } catch (const std::exception& e) {
                    note(std::string("unexpected exception: ") + e.what());
                }
                // The error message is per thread: each thread sees its own field's name.
                const std::string field = "missing_t" + std::to_string(t) + "_" + std::to_string(i);
                try {
                    client.set_bool(field, true);
                    note("no exception for " + field);
                } catch (const ot::Error& e) {
                    if (e.code() != ot::ErrorCode::UnknownField || e.message().find(field) == std::string::npos) {
                        note("thread " + std::to_string(t) + " got someone else's error: " + e.message());
                    }
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    for (const auto& l : log) ADD_FAILURE() << l;
    ASSERT_EQ(failures.load(), 0);
    client.flush(10s);
    EXPECT_EQ(collector.count(), 0u) << "the real clock is before the drawn moment";

    // All threads tick at the due moment at once: exactly one report leaves.
    set_example_values(client);
    const std::string preview = client.preview_json();
    client.tick_at(unix_now());
    const auto due = next_due(client.status_json());
    ASSERT_GE(due, 0);
    std::atomic<bool> go{false};
    threads.clear();
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            while (!go.load()) std::this_thread::yield();
            try {
                for (int i = 0; i < 20; ++i) client.tick_at(due + i);
            } catch (const std::exception& e) {
                note(std::string("tick: ") + e.what());
            }
        });
    }
    go = true;
    for (auto& th : threads) th.join();
    client.flush(10s);
    const auto reqs = collector.wait_for(1, 5s);
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(failures.load(), 0);
    ASSERT_EQ(collector.count(), 1u);
    EXPECT_EQ(reqs[0].body, preview);
}

}  // namespace
