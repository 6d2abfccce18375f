using System;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Threading;

namespace OptInTelemetry
{
    /// <summary>The native library as a whole: its version and the load-time check.</summary>
    public static class TelemetryLibrary
    {
        /// <summary>
        /// The native version this binding is written against: the `version` of the
        /// crate's Cargo.toml. The native tel_version() must equal it exactly.
        /// </summary>
        public const string ExpectedVersion = "0.1.0";

        private static readonly object Gate = new object();
        private static string checkedVersion;

        /// <summary>tel_version() of the loaded native library (loads it, no check).</summary>
        public static string NativeVersion
        {
            get { return Utf8.Decode(NativeMethods.tel_version()); }
        }

        /// <summary>
        /// Loads the native library and checks its version; runs once per process,
        /// and on every TelemetryClient.Open until it succeeds. Throws
        /// DllNotFoundException (library not found: see README), BadImageFormatException
        /// (a 32-bit process loading the 64-bit DLL) or TelemetryVersionMismatchException
        /// (another version, or a library lacking one of the tel_* functions this binding calls).
        /// </summary>
        public static void EnsureLoaded()
        {
            if (Volatile.Read(ref checkedVersion) != null)
            {
                return;
            }
            lock (Gate)
            {
                if (checkedVersion != null)
                {
                    return;
                }
                string native;
                try
                {
                    native = NativeVersion;
                }
                catch (DllNotFoundException e)
                {
                    throw new DllNotFoundException(
                        "optin-telemetry: cannot load the native library '" + NativeMethods.Library + "' " +
                        "(optin_telemetry.dll beside the application on Windows; liboptin_telemetry.so via " +
                        "a dllmap in OptInTelemetry.dll.config or LD_LIBRARY_PATH under Mono): " + e.Message, e);
                }
                catch (EntryPointNotFoundException e)
                {
                    // A library of that name, but not ours (or far too old).
                    throw new TelemetryVersionMismatchException(ExpectedVersion, "(unknown: no tel_version)", "tel_version", e);
                }
                CheckVersion(ExpectedVersion, native);
                CheckExports(native);
                Volatile.Write(ref checkedVersion, native);
            }
        }

        /// <summary>
        /// Resolves every P/Invoke in NativeMethods now: a library that reports the
        /// right version but lacks a function (a foreign or hand-built DLL) is
        /// refused here, with the binding's version-mismatch exception naming the
        /// function, instead of an EntryPointNotFoundException from some later call.
        /// </summary>
        private static void CheckExports(string native)
        {
            MethodInfo[] methods = typeof(NativeMethods).GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public);
            // Declaration order, so the function named is always the same one.
            Array.Sort(methods, (a, b) => a.MetadataToken.CompareTo(b.MetadataToken));
            foreach (MethodInfo m in methods)
            {
                if ((m.Attributes & MethodAttributes.PinvokeImpl) == 0)
                {
                    continue;
                }
                try
                {
                    Marshal.Prelink(m);
                }
                catch (EntryPointNotFoundException e)
                {
                    throw new TelemetryVersionMismatchException(ExpectedVersion, native, m.Name, e);
                }
            }
        }

        /// <summary>Throws TelemetryVersionMismatchException unless both versions are equal.</summary>
        internal static void CheckVersion(string expected, string native)
        {
            if (!string.Equals(expected, native, StringComparison.Ordinal))
            {
                throw new TelemetryVersionMismatchException(expected, native ?? "(null)");
            }
        }
    }
}
