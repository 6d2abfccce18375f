using System;
using System.Runtime.Serialization;

namespace OptInTelemetry
{
    /// <summary>The <c>TEL_ERR_*</c> codes of include/optin_telemetry.h (tel_result values).</summary>
    public enum ResultCode
    {
        /// <summary>TEL_OK: success (never carried by an exception).</summary>
        Ok = 0,
        /// <summary>TEL_ERR_NULL_ARGUMENT: a required pointer argument was NULL.</summary>
        NullArgument = 1,
        /// <summary>TEL_ERR_INVALID_UTF8: a string argument was not valid UTF-8.</summary>
        InvalidUtf8 = 2,
        /// <summary>TEL_ERR_INVALID_ARGUMENT: an argument was outside its documented range.</summary>
        InvalidArgument = 3,
        /// <summary>TEL_ERR_CONFIG: the configuration was rejected (the message names the key).</summary>
        Config = 4,
        /// <summary>TEL_ERR_IO: the state directory could not be created, read, locked or written.</summary>
        Io = 5,
        /// <summary>TEL_ERR_INTERNAL: a bug in the library (a caught panic).</summary>
        Internal = 6,
        /// <summary>TEL_ERR_MALFORMED_JSON: a JSON argument was not syntactically valid.</summary>
        MalformedJson = 7,
        /// <summary>TEL_ERR_UNKNOWN_FIELD: the field is not in the schema.</summary>
        UnknownField = 8,
        /// <summary>TEL_ERR_WRONG_TYPE: the value has the wrong type for its field.</summary>
        WrongType = 9,
        /// <summary>TEL_ERR_VALUE_NOT_ALLOWED: right type, but not an allowed value.</summary>
        ValueNotAllowed = 10,
        /// <summary>TEL_ERR_TOO_LARGE: an input string is longer than the library accepts.</summary>
        TooLarge = 11,
        /// <summary>TEL_ERR_TIMEOUT: tel_flush ran out of time (TelemetryClient.Flush returns false instead).</summary>
        Timeout = 12,
    }

    /// <summary>A native call failed: <see cref="ResultCode"/> and the library's message.</summary>
    [Serializable]
    public class TelemetryException : Exception
    {
        /// <summary>A TelemetryException with a default message (standard constructor; <see cref="ResultCode"/> is Ok).</summary>
        public TelemetryException()
            : base("An optin-telemetry call failed.")
        {
        }

        /// <summary>A TelemetryException with <paramref name="message"/> (standard constructor).</summary>
        public TelemetryException(string message)
            : base(message)
        {
        }

        /// <summary>A TelemetryException with <paramref name="message"/> and its cause (standard constructor).</summary>
        public TelemetryException(string message, Exception innerException)
            : base(message, innerException)
        {
        }

        /// <summary>A native call failed: <paramref name="function"/> returned <paramref name="resultCode"/> with <paramref name="nativeMessage"/>.</summary>
        public TelemetryException(ResultCode resultCode, string nativeMessage, string function)
            : base(Format(resultCode, nativeMessage, function))
        {
            ResultCode = resultCode;
            NativeMessage = nativeMessage;
            Function = function;
        }

        /// <summary>Deserializes an exception.</summary>
        protected TelemetryException(SerializationInfo info, StreamingContext context)
            : base(info, context)
        {
            ResultCode = (ResultCode)info.GetInt32("ResultCode");
            NativeMessage = info.GetString("NativeMessage");
            Function = info.GetString("Function");
        }

        /// <summary>The tel_result the native function returned.</summary>
        public ResultCode ResultCode { get; private set; }

        /// <summary>tel_last_error_message() as read right after the failing call (names the argument, key or field at fault).</summary>
        public string NativeMessage { get; private set; }

        /// <summary>The native function that failed, e.g. "tel_set_choice".</summary>
        public string Function { get; private set; }

        /// <summary>Serializes the exception with its properties.</summary>
        public override void GetObjectData(SerializationInfo info, StreamingContext context)
        {
            base.GetObjectData(info, context);
            info.AddValue("ResultCode", (int)ResultCode);
            info.AddValue("NativeMessage", NativeMessage);
            info.AddValue("Function", Function);
        }

        /// <summary>Name of a code as spelled in the header, e.g. "TEL_ERR_UNKNOWN_FIELD".</summary>
        public static string CodeName(ResultCode code)
        {
            switch (code)
            {
                case ResultCode.Ok: return "TEL_OK";
                case ResultCode.NullArgument: return "TEL_ERR_NULL_ARGUMENT";
                case ResultCode.InvalidUtf8: return "TEL_ERR_INVALID_UTF8";
                case ResultCode.InvalidArgument: return "TEL_ERR_INVALID_ARGUMENT";
                case ResultCode.Config: return "TEL_ERR_CONFIG";
                case ResultCode.Io: return "TEL_ERR_IO";
                case ResultCode.Internal: return "TEL_ERR_INTERNAL";
                case ResultCode.MalformedJson: return "TEL_ERR_MALFORMED_JSON";
                case ResultCode.UnknownField: return "TEL_ERR_UNKNOWN_FIELD";
                case ResultCode.WrongType: return "TEL_ERR_WRONG_TYPE";
                case ResultCode.ValueNotAllowed: return "TEL_ERR_VALUE_NOT_ALLOWED";
                case ResultCode.TooLarge: return "TEL_ERR_TOO_LARGE";
                case ResultCode.Timeout: return "TEL_ERR_TIMEOUT";
                default: return "TEL_ERR_UNKNOWN";
            }
        }

        private static string Format(ResultCode code, string nativeMessage, string function)
        {
            return string.Format("{0} failed: {1} ({2}): {3}", function, CodeName(code), (int)code, nativeMessage);
        }

        /// <summary>
        /// Builds the exception for a failed call. Must run on the calling thread
        /// immediately after the call: tel_last_error_message is thread-local and
        /// only valid until the next call into the library on this thread.
        /// </summary>
        internal static TelemetryException FromLastError(string function, int rc)
        {
            string message = Utf8.Decode(NativeMethods.tel_last_error_message()) ?? "(no message)";
            return new TelemetryException((ResultCode)rc, message, function);
        }
    }

    /// <summary>
    /// The native library that was loaded is not the version this binding was built
    /// for. Thrown on first use (TelemetryClient.Open, TelemetryLibrary.EnsureLoaded).
    /// </summary>
    [Serializable]
    public class TelemetryVersionMismatchException : Exception
    {
        /// <summary>A TelemetryVersionMismatchException with a default message (standard constructor).</summary>
        public TelemetryVersionMismatchException()
            : base("optin-telemetry version mismatch.")
        {
        }

        /// <summary>A TelemetryVersionMismatchException with <paramref name="message"/> (standard constructor).</summary>
        public TelemetryVersionMismatchException(string message)
            : base(message)
        {
        }

        /// <summary>A TelemetryVersionMismatchException with <paramref name="message"/> and its cause (standard constructor).</summary>
        public TelemetryVersionMismatchException(string message, Exception innerException)
            : base(message, innerException)
        {
        }

        /// <summary>The native library reports <paramref name="nativeVersion"/>, not <paramref name="expectedVersion"/>.</summary>
        public TelemetryVersionMismatchException(string expectedVersion, string nativeVersion)
            : base(string.Format(
                "optin-telemetry version mismatch: the native library optin_telemetry reports version {0}, " +
                "but this binding (OptInTelemetry.dll) requires exactly version {1}. " +
                "Deploy the native library that ships with this OptInTelemetry package.",
                nativeVersion, expectedVersion))
        {
            ExpectedVersion = expectedVersion;
            NativeVersion = nativeVersion;
        }

        /// <summary>The native library lacks <paramref name="missingFunction"/>, which this binding calls.</summary>
        public TelemetryVersionMismatchException(string expectedVersion, string nativeVersion, string missingFunction, Exception innerException)
            : base(string.Format(
                "optin-telemetry version mismatch: the native library optin_telemetry (version {0}) does not export " +
                "the function {1}, which this binding (OptInTelemetry.dll, for version {2}) calls: it is an older, " +
                "newer or foreign library. Deploy the native library that ships with this OptInTelemetry package.",
                nativeVersion, missingFunction, expectedVersion), innerException)
        {
            ExpectedVersion = expectedVersion;
            NativeVersion = nativeVersion;
            MissingFunction = missingFunction;
        }

        /// <summary>Deserializes an exception.</summary>
        protected TelemetryVersionMismatchException(SerializationInfo info, StreamingContext context)
            : base(info, context)
        {
            ExpectedVersion = info.GetString("ExpectedVersion");
            NativeVersion = info.GetString("NativeVersion");
            MissingFunction = info.GetString("MissingFunction");
        }

        /// <summary>The version this binding was built for.</summary>
        public string ExpectedVersion { get; private set; }

        /// <summary>The version the native library reports.</summary>
        public string NativeVersion { get; private set; }

        /// <summary>The tel_* function the native library lacks; null when only the version differs.</summary>
        public string MissingFunction { get; private set; }

        /// <summary>Serializes the exception with its properties.</summary>
        public override void GetObjectData(SerializationInfo info, StreamingContext context)
        {
            base.GetObjectData(info, context);
            info.AddValue("ExpectedVersion", ExpectedVersion);
            info.AddValue("NativeVersion", NativeVersion);
            info.AddValue("MissingFunction", MissingFunction);
        }
    }
}
