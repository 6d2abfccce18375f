// optin-telemetry: header-only C++17 wrapper over the C ABI in optin_telemetry.h.
//
//   #include <optin_telemetry.hpp>
//   auto client = optin_telemetry::Client::open(config_json);
//   client.set_count("users", 42);
//   if (user_said_yes) client.set_consent(true);
//   std::cout << client.preview_json();   // the exact bytes the next report sends
//   client.tick();                        // call often, e.g. every minute
//
// Ownership: a Client owns its tel_client* through std::unique_ptr with a
// deleter calling tel_close(). Every string the library returns is copied into
// a std::string and freed with tel_string_free() at once, also when the copy
// throws. Every failed call throws optin_telemetry::Error carrying the
// tel_result code and tel_last_error_message() (read on the calling thread).
//
// Arguments are never converted into a consent or a value by accident:
// set_consent() and set_bool() take exactly a bool (set_consent("no"),
// set_consent(2), set_consent({1}) and set_bool("trial", "false") do not
// compile: C++ would turn each into `true`); set_count() takes any integer
// type but bool and the character types, and throws Error
// (ErrorCode::ValueNotAllowed) for a negative value instead of sending it
// wrapped to 2^64 - 1 (and for one above 2^64 - 1 of a wider type); a string
// argument with an embedded NUL throws.
//
// Threads: every member function may be called from several threads at the
// same time on one Client, except destruction, move and close(), which must
// not race any other call on that Client (as for tel_close).
#ifndef OPTIN_TELEMETRY_HPP
#define OPTIN_TELEMETRY_HPP

#include "optin_telemetry.h"

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace optin_telemetry {

/// The TEL_ERR_* codes of the C API.
enum class ErrorCode : std::int32_t {
    NullArgument = TEL_ERR_NULL_ARGUMENT,
    InvalidUtf8 = TEL_ERR_INVALID_UTF8,
    InvalidArgument = TEL_ERR_INVALID_ARGUMENT,
    Config = TEL_ERR_CONFIG,
    Io = TEL_ERR_IO,
    Internal = TEL_ERR_INTERNAL,
    MalformedJson = TEL_ERR_MALFORMED_JSON,
    UnknownField = TEL_ERR_UNKNOWN_FIELD,
    WrongType = TEL_ERR_WRONG_TYPE,
    ValueNotAllowed = TEL_ERR_VALUE_NOT_ALLOWED,
    TooLarge = TEL_ERR_TOO_LARGE,
    Timeout = TEL_ERR_TIMEOUT,
};

/// "TEL_ERR_CONFIG" for ErrorCode::Config; "TEL_ERR_UNKNOWN" for a code this header does not know.
inline const char* error_code_name(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::NullArgument: return "TEL_ERR_NULL_ARGUMENT";
        case ErrorCode::InvalidUtf8: return "TEL_ERR_INVALID_UTF8";
        case ErrorCode::InvalidArgument: return "TEL_ERR_INVALID_ARGUMENT";
        case ErrorCode::Config: return "TEL_ERR_CONFIG";
        case ErrorCode::Io: return "TEL_ERR_IO";
        case ErrorCode::Internal: return "TEL_ERR_INTERNAL";
        case ErrorCode::MalformedJson: return "TEL_ERR_MALFORMED_JSON";
        case ErrorCode::UnknownField: return "TEL_ERR_UNKNOWN_FIELD";
        case ErrorCode::WrongType: return "TEL_ERR_WRONG_TYPE";
        case ErrorCode::ValueNotAllowed: return "TEL_ERR_VALUE_NOT_ALLOWED";
        case ErrorCode::TooLarge: return "TEL_ERR_TOO_LARGE";
        case ErrorCode::Timeout: return "TEL_ERR_TIMEOUT";
    }
    return "TEL_ERR_UNKNOWN";
}

/// A failed call: code() is the tel_result, message() the library's text
/// (tel_last_error_message), function() the C function that failed. what()
/// reads "tel_set_choice: TEL_ERR_VALUE_NOT_ALLOWED (10): <message>".
class Error : public std::runtime_error {
public:
    Error(ErrorCode code, std::string message, std::string function = std::string())
        : std::runtime_error(format(code, message, function)),
          code_(code),
          message_(std::move(message)),
          function_(std::move(function)) {}

    ErrorCode code() const noexcept { return code_; }
    /// The numeric tel_result (TEL_ERR_*).
    tel_result raw_code() const noexcept { return static_cast<tel_result>(code_); }
    /// The library's message alone, without code or function name.
    const std::string& message() const noexcept { return message_; }
    const std::string& function() const noexcept { return function_; }

private:
    static std::string format(ErrorCode code, const std::string& message, const std::string& function) {
        std::string s = function.empty() ? std::string() : function + ": ";
        s += error_code_name(code);
        s += " (" + std::to_string(static_cast<tel_result>(code)) + "): " + message;
        return s;
    }

    ErrorCode code_;
    std::string message_;
    std::string function_;
};

/// The consent in force for the schema in use (TEL_CONSENT_*).
enum class Consent : std::uint32_t {
    Undecided = TEL_CONSENT_UNDECIDED,  ///< no answer yet: nothing is sent
    Granted = TEL_CONSENT_GRANTED,      ///< reports may be sent
    Denied = TEL_CONSENT_DENIED,        ///< nothing is sent; final across schema changes
    Outdated = TEL_CONSENT_OUTDATED,    ///< granted for an earlier schema: ask again
};

inline const char* to_string(Consent c) noexcept {
    switch (c) {
        case Consent::Undecided: return "undecided";
        case Consent::Granted: return "granted";
        case Consent::Denied: return "denied";
        case Consent::Outdated: return "outdated";
    }
    return "unknown";
}

namespace detail {

/// Throws Error for a failed call; reads the message on this thread right away.
inline void check(tel_result rc, const char* function) {
    if (rc != TEL_OK) {
        const char* message = tel_last_error_message();
        throw Error(static_cast<ErrorCode>(rc), message ? std::string(message) : std::string(), function);
    }
}

/// The C API takes NUL-terminated strings: an embedded NUL would silently cut
/// the argument short, so it is refused before the call.
inline const char* c_str(const std::string& s, const char* what, const char* function) {
    if (s.find('\0') != std::string::npos) {
        throw Error(ErrorCode::InvalidArgument, std::string(what) + " contains a NUL byte", function);
    }
    return s.c_str();
}

/// char, wchar_t, char16_t, char32_t (and char8_t): integral, but
/// set_count("users", '7') would send 55. signed/unsigned char (int8_t,
/// uint8_t) stay allowed: they are the small integer types.
template <typename T>
struct is_character
    : std::integral_constant<bool, std::is_same<typename std::remove_cv<T>::type, char>::value ||
                                       std::is_same<typename std::remove_cv<T>::type, wchar_t>::value ||
                                       std::is_same<typename std::remove_cv<T>::type, char16_t>::value ||
#if defined(__cpp_char8_t)
                                       std::is_same<typename std::remove_cv<T>::type, char8_t>::value ||
#endif
                                       std::is_same<typename std::remove_cv<T>::type, char32_t>::value> {};

/// Decimal text of any integer, __int128 included (std::to_string has no
/// overload for it).
template <typename T>
std::string to_decimal(T value) {
    if constexpr (std::numeric_limits<T>::digits <= 64) {
        return std::to_string(+value);
    } else {
        const bool negative = value < 0;
        std::string digits;
        do {
            const int d = static_cast<int>(value % 10);
            digits.insert(digits.begin(), static_cast<char>('0' + (d < 0 ? -d : d)));
            value /= 10;
        } while (value != 0);
        return negative ? "-" + digits : digits;
    }
}

struct StringDeleter {
    void operator()(char* s) const noexcept { tel_string_free(s); }
};

/// Copies a library-owned string and frees it, also if the copy throws.
inline std::string take(char* s) {
    std::unique_ptr<char, StringDeleter> owned(s);
    return owned ? std::string(owned.get()) : std::string();
}

}  // namespace detail

/// The version of the loaded library, e.g. "0.1.0".
inline std::string version() { return std::string(tel_version()); }

/// An open telemetry client. Move-only; a moved-from or default-constructed
/// Client is empty: it is safe to destroy or assign to, and any other call on
/// it throws Error with ErrorCode::NullArgument.
class Client {
public:
    /// Calls tel_close(): a send in flight is interrupted, not waited for; its
    /// report is sent again later with the same id (see the C header).
    struct Deleter {
        void operator()(tel_client* c) const noexcept { tel_close(c); }
    };
    using Handle = std::unique_ptr<tel_client, Deleter>;

    Client() noexcept = default;
    Client(Client&&) noexcept = default;
    Client& operator=(Client&&) noexcept = default;
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    ~Client() = default;

    /// Opens a client from a configuration JSON object (see tel_open).
    /// `product_version` must be 1 to 4 dot-separated decimal numbers of 1 to
    /// 5 digits each ("24.1.3", "10.2.1.21234"), nothing else; any other value
    /// throws Error with code() == ErrorCode::Config (TEL_ERR_CONFIG).
    static Client open(const std::string& config_json) {
        tel_client* raw = nullptr;
        detail::check(tel_open(detail::c_str(config_json, "config_json", "tel_open"), &raw), "tel_open");
        return Client(Handle(raw));
    }

    /// Takes ownership of a handle from tel_open (may be NULL: an empty Client).
    explicit Client(Handle handle) noexcept : handle_(std::move(handle)) {}

    explicit operator bool() const noexcept { return static_cast<bool>(handle_); }
    bool empty() const noexcept { return !handle_; }
    /// The C handle, still owned by this Client.
    tel_client* native_handle() const noexcept { return handle_.get(); }
    /// Gives the handle up; the caller must tel_close() it.
    tel_client* release() noexcept { return handle_.release(); }
    /// Closes now (tel_close); the Client becomes empty. Call flush() first to
    /// let a send in flight finish (otherwise it is interrupted and retried later).
    void close() noexcept { handle_.reset(); }

    // ----- consent -----

    /// Records the user's answer (tel_set_consent): exactly `true` or `false`.
    void set_consent(bool granted) {
        detail::check(tel_set_consent(handle_.get(), granted ? 1 : 0), "tel_set_consent");
    }
    /// Anything but a bool (a string such as "no", an int such as 2, a
    /// pointer, an enum) would convert to a consent, mostly to "yes":
    /// these calls do not compile.
    template <typename T>
    void set_consent(T) = delete;
    /// set_consent({1}) or set_consent({"no"}) would reach set_consent(bool)
    /// (a braced list deduces no T above; GCC only warns about the narrowing
    /// of a pointer or a variable): this overload, the better match for any
    /// non-empty braced list, is deleted too.
    template <typename T>
    void set_consent(std::initializer_list<T>) = delete;

    Consent consent() const {
        std::uint32_t c = 0;
        detail::check(tel_get_consent(handle_.get(), &c), "tel_get_consent");
        if (c > TEL_CONSENT_OUTDATED) {
            throw Error(ErrorCode::Internal, "unknown consent state " + std::to_string(c), "tel_get_consent");
        }
        return static_cast<Consent>(c);
    }

    // ----- values -----

    void set_bool(const std::string& field, bool value) {
        detail::check(tel_set_bool(handle_.get(), detail::c_str(field, "field", "tel_set_bool"), value ? 1 : 0), "tel_set_bool");
    }
    /// set_bool("trial", "false") would send true: only a bool compiles.
    template <typename T>
    void set_bool(const std::string& field, T value) = delete;
    /// set_bool("trial", {"false"}) and set_bool("trial", {1}): see set_consent.
    template <typename T>
    void set_bool(const std::string& field, std::initializer_list<T> value) = delete;

    /// Any integer type except bool and the character types; a negative
    /// value throws Error (ValueNotAllowed) and changes nothing (converted to
    /// uint64_t it would be sent as ~1.8e19), and so does a value above
    /// 2^64 - 1 of a wider type such as GNU's __int128 (it would be cut to
    /// its low 64 bits).
    template <typename T>
    void set_count(const std::string& field, T value) {
        static_assert(std::is_integral<T>::value && !std::is_same<T, bool>::value && !detail::is_character<T>::value,
                      "optin_telemetry::Client::set_count takes an integer (not a bool, character, floating-point or other type)");
        if constexpr (std::is_signed<T>::value) {
            if (value < 0) {
                throw Error(ErrorCode::ValueNotAllowed,
                            "field \"" + field + "\": a count must not be negative, got " + detail::to_decimal(value),
                            "tel_set_count");
            }
        }
        if constexpr (std::numeric_limits<T>::digits > std::numeric_limits<std::uint64_t>::digits) {
            if (value > static_cast<T>(std::numeric_limits<std::uint64_t>::max())) {
                throw Error(ErrorCode::ValueNotAllowed,
                            "field \"" + field + "\": a count must be at most 18446744073709551615, got " + detail::to_decimal(value),
                            "tel_set_count");
            }
        }
        detail::check(tel_set_count(handle_.get(), detail::c_str(field, "field", "tel_set_count"), static_cast<std::uint64_t>(value)),
                      "tel_set_count");
    }

    void set_choice(const std::string& field, const std::string& value) {
        detail::check(tel_set_choice(handle_.get(), detail::c_str(field, "field", "tel_set_choice"),
                                     detail::c_str(value, "value", "tel_set_choice")),
                      "tel_set_choice");
    }

    /// Sets several fields at once, all or nothing: {"field": value, ...}.
    void set_values_json(const std::string& values_json) {
        detail::check(tel_set_values_json(handle_.get(), detail::c_str(values_json, "values_json", "tel_set_values_json")),
                      "tel_set_values_json");
    }

    // ----- what the user sees -----

    /// The exact bytes of the next report.
    std::string preview_json() const {
        char* out = nullptr;
        detail::check(tel_preview_json(handle_.get(), &out), "tel_preview_json");
        return detail::take(out);
    }

    /// What a consent or "view data" dialog shows; `language` such as "de" or
    /// "de-AT", empty for English.
    std::string describe_json(const std::string& language = std::string()) const {
        char* out = nullptr;
        detail::check(tel_describe_json(handle_.get(), detail::c_str(language, "language", "tel_describe_json"), &out),
                      "tel_describe_json");
        return detail::take(out);
    }

    // ----- sending -----

    /// Lets the library act on its schedule; cheap when nothing is due.
    void tick() { detail::check(tel_tick(handle_.get()), "tel_tick"); }

    /// tick() with an explicit "now" in unix seconds (tests, simulations).
    /// Any integer type but bool and the character types (a double such as
    /// 1.7e9 does not compile: it would be cut silently); a value outside
    /// int64_t (an unsigned one above 2^63 - 1) throws Error
    /// (ErrorCode::InvalidArgument) instead of wrapping to a time before 1970.
    template <typename T>
    void tick_at(T unix_seconds) {
        static_assert(std::is_integral<T>::value && !std::is_same<T, bool>::value && !detail::is_character<T>::value,
                      "optin_telemetry::Client::tick_at takes integer unix seconds (not a bool, character, floating-point or other type)");
        // Only types wider than int64_t's 63 value bits can hold a value it cannot.
        if constexpr (std::numeric_limits<T>::digits > std::numeric_limits<std::int64_t>::digits) {
            bool outside = unix_seconds > static_cast<T>(std::numeric_limits<std::int64_t>::max());
            if constexpr (std::is_signed<T>::value) {
                outside = outside || unix_seconds < static_cast<T>(std::numeric_limits<std::int64_t>::min());
            }
            if (outside) {
                throw Error(ErrorCode::InvalidArgument,
                            "unix_seconds must fit a signed 64-bit integer, got " + detail::to_decimal(unix_seconds), "tel_tick_at");
            }
        }
        detail::check(tel_tick_at(handle_.get(), static_cast<std::int64_t>(unix_seconds)), "tel_tick_at");
    }

    /// Waits up to `timeout` until no send is in flight; throws Error
    /// (ErrorCode::Timeout) if one still is. Negative means 0; values above
    /// ~49.7 days are capped.
    void flush(std::chrono::milliseconds timeout) {
        const auto ms = timeout.count();
        const auto max = static_cast<decltype(timeout.count())>(std::numeric_limits<std::uint32_t>::max());
        const std::uint32_t arg = ms <= 0 ? 0u : (ms >= max ? std::numeric_limits<std::uint32_t>::max() : static_cast<std::uint32_t>(ms));
        detail::check(tel_flush(handle_.get(), arg), "tel_flush");
    }

    std::string status_json() const {
        char* out = nullptr;
        detail::check(tel_status_json(handle_.get(), &out), "tel_status_json");
        return detail::take(out);
    }

    std::string history_json() const {
        char* out = nullptr;
        detail::check(tel_history_json(handle_.get(), &out), "tel_history_json");
        return detail::take(out);
    }

    void clear_history() { detail::check(tel_clear_history(handle_.get()), "tel_clear_history"); }

private:
    Handle handle_;
};

}  // namespace optin_telemetry

#endif  // OPTIN_TELEMETRY_HPP
