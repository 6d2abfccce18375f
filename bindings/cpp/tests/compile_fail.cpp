// Calls that must NOT compile: each would otherwise turn into a consent or a
// value nobody meant. The C++ suite compiles this file once per CASE (see
// compile_check.cmake): CASE 0 is the control, a use of the same functions
// that must compile cleanly; every other CASE must fail, with the compiler
// naming the deleted overload or the static_assert (not some unrelated error).
#include <optin_telemetry.hpp>

#include <cstdint>
#include <string>

namespace ot = optin_telemetry;

enum class Answer { No, Yes };

void use(ot::Client& c) {
#if CASE == 0
    c.set_consent(true);
    c.set_consent(false);
    bool answer = false;
    c.set_consent(answer);
    c.set_bool("trial", false);
    c.set_bool(std::string("trial"), answer);
    c.set_count("users", 42);
    c.set_count("users", 42u);
    c.set_count("users", std::uint64_t{1});
    c.set_count("users", static_cast<std::int8_t>(1));
    c.set_count("users", std::size_t{3});
    c.set_count("users", -1LL + 2);
#elif CASE == 1
    c.set_consent("no");
#elif CASE == 2
    c.set_consent(2);
#elif CASE == 3
    c.set_consent(0);
#elif CASE == 4
    c.set_consent(std::string("false"));
#elif CASE == 5
    c.set_consent(nullptr);
#elif CASE == 6
    c.set_consent(Answer::No);
#elif CASE == 7
    c.set_consent(1.0);
#elif CASE == 8
    c.set_bool("trial", "false");
#elif CASE == 9
    c.set_bool("trial", 0);
#elif CASE == 10
    c.set_bool("trial", std::string("true"));
#elif CASE == 11
    c.set_count("users", 2.5);
#elif CASE == 12
    c.set_count("users", true);
#elif CASE == 13
    c.set_count("users", "42");
#else
#error "unknown CASE"
#endif
}

int main() { return 0; }
