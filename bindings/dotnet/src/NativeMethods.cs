// P/Invoke declarations for every function in include/optin_telemetry.h.
//
// Rules followed here (see /work/shared/PITFALLS.md and the header):
//  - CallingConvention.Cdecl everywhere: Rust `extern "C"` is cdecl, and 32-bit
//    Windows would otherwise default to StdCall.
//  - ExactSpelling = true: no A/W suffix probing on Windows.
//  - Strings going in are byte[] holding NUL-terminated UTF-8 (made by Utf8.Encode);
//    the default string marshalling is ANSI on .NET Framework.
//  - Strings coming out are `out IntPtr` (an owned char* the library allocated),
//    copied by Utf8.Decode and released with tel_string_free; returning `string`
//    would make the runtime free it with CoTaskMemFree.
//  - No C bool: every flag is an int (0/1); tel_result is int32_t.
//  - The client is passed as TelemetryHandle (a SafeHandle), never as its IntPtr,
//    so the runtime holds a reference for the duration of each call and
//    tel_close cannot run in the middle of one. Only tel_close takes the raw
//    pointer: it is called from TelemetryHandle.ReleaseHandle.
using System;
using System.Runtime.InteropServices;
using System.Security;

namespace OptInTelemetry
{
    [SuppressUnmanagedCodeSecurity]
    internal static class NativeMethods
    {
        /// <summary>
        /// The name the runtime resolves: optin_telemetry.dll on Windows (beside the
        /// application, or runtimes/win-x64/native in a .NET Core/5+ app),
        /// liboptin_telemetry.so on Linux (a dllmap entry or LD_LIBRARY_PATH under Mono).
        /// </summary>
        internal const string Library = "optin_telemetry";

        internal const int TEL_CONSENT_UNDECIDED = 0;
        internal const int TEL_CONSENT_GRANTED = 1;
        internal const int TEL_CONSENT_DENIED = 2;
        internal const int TEL_CONSENT_OUTDATED = 3;

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_open(byte[] config_json, out TelemetryHandle out_client);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void tel_close(IntPtr client);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_set_consent(TelemetryHandle client, int granted);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_get_consent(TelemetryHandle client, out uint out_consent);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_set_bool(TelemetryHandle client, byte[] field, int value);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_set_count(TelemetryHandle client, byte[] field, ulong value);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_set_choice(TelemetryHandle client, byte[] field, byte[] value);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_set_values_json(TelemetryHandle client, byte[] values_json);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_preview_json(TelemetryHandle client, out IntPtr out_json);

        // language: NUL-terminated UTF-8, or null (English).
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_describe_json(TelemetryHandle client, byte[] language, out IntPtr out_json);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_tick(TelemetryHandle client);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_tick_at(TelemetryHandle client, long unix_seconds);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_flush(TelemetryHandle client, uint timeout_ms);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_status_json(TelemetryHandle client, out IntPtr out_json);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_history_json(TelemetryHandle client, out IntPtr out_json);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int tel_clear_history(TelemetryHandle client);

        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void tel_string_free(IntPtr s);

        /// <summary>Library-owned, valid until the next call on this thread: copy at once, never free.</summary>
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr tel_last_error_message();

        /// <summary>A static string: copy, never free.</summary>
        [DllImport(Library, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr tel_version();
    }
}
