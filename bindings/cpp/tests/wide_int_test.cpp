// set_count with a type wider than 64 bits (GNU's __int128, an integral type
// in the GNU dialect this file is compiled in): a value above 2^64 - 1 must
// throw, not be cut to its low 64 bits (2^64 + 1234567 would be sent as
// 1234567).
#include <optin_telemetry.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <type_traits>

namespace fs = std::filesystem;
namespace ot = optin_telemetry;

#if defined(__SIZEOF_INT128__)
__extension__ typedef __int128 wide_int;
__extension__ typedef unsigned __int128 wide_uint;
static_assert(std::is_integral<wide_int>::value, "compiled in a GNU dialect: __int128 is integral");

namespace {
std::string config_json(const fs::path& state_dir) {
    return R"({"product":"Mock Archiver","product_version":"1.0.0","endpoint":"http://127.0.0.1:9/v1/report","state_dir":")" +
           state_dir.string() +
           R"(","schema":{"version":1,"fields":[{"name":"archived_items","type":"count","rounding":"1-2-5","description":{"en":"Archived e-mails."}}]}})";
}
}  // namespace

TEST(WideIntegers, CountsAbove64BitsThrowInsteadOfBeingCut) {
    const fs::path dir = fs::current_path() / "test-state" / "WideIntegers";
    fs::remove_all(dir);
    auto client = ot::Client::open(config_json(dir / "state"));
    client.set_count("archived_items", 1234567);
    const std::string before = client.preview_json();
    const wide_uint two64 = static_cast<wide_uint>(1) << 64;
    auto expect_refused = [&](auto value, const char* what) {
        try {
            client.set_count("archived_items", value);
            ADD_FAILURE() << "set_count accepted " << what;
        } catch (const ot::Error& e) {
            EXPECT_EQ(e.code(), ot::ErrorCode::ValueNotAllowed) << e.what();
            EXPECT_NE(e.message().find("archived_items"), std::string::npos) << e.message();
        }
    };
    expect_refused(two64 + 1234567, "unsigned 2^64 + 1234567");
    expect_refused(static_cast<wide_int>(two64 + 1234567), "signed 2^64 + 1234567");
    expect_refused(static_cast<wide_int>(-1), "signed -1");
    EXPECT_EQ(client.preview_json(), before) << "a refused count changed the report";
    // The largest value that fits goes through, and the message of a refused
    // negative one names it in decimal.
    client.set_count("archived_items", static_cast<wide_uint>(~std::uint64_t{0}));
    client.set_count("archived_items", static_cast<wide_int>(1234567));
    EXPECT_EQ(client.preview_json(), before);
    try {
        client.set_count("archived_items", -static_cast<wide_int>(two64));
        ADD_FAILURE() << "set_count accepted -2^64";
    } catch (const ot::Error& e) {
        EXPECT_NE(e.message().find("-18446744073709551616"), std::string::npos) << e.message();
    }
    client.close();
    fs::remove_all(dir);
}
#endif
