using System;
using System.IO;
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
            get
            {
                PreloadArchitectureDll();
                return Utf8.Decode(NativeMethods.tel_version());
            }
        }

        private static int preloaded;

        /// <summary>
        /// The DLL loaded ahead of the first P/Invoke on Windows, or null: the
        /// x86\ or x64\ subfolder (by this process's pointer size) beside this
        /// assembly, if that file exists. Set once, on first use.
        /// </summary>
        internal static string PreloadedPath { get; private set; }

        /// <summary>Win32 error of a failed LoadLibraryW of PreloadedPath (0: loaded or not tried).</summary>
        internal static int PreloadError { get; private set; }

        /// <summary>
        /// x86\optin_telemetry.dll or x64\optin_telemetry.dll beside the assembly at
        /// assemblyLocation, chosen by pointerSize (IntPtr.Size: 4 or 8); null when the
        /// assembly has no location (loaded from bytes).
        /// </summary>
        internal static string ArchitectureDllPath(string assemblyLocation, int pointerSize)
        {
            if (string.IsNullOrEmpty(assemblyLocation))
            {
                return null;
            }
            string dir = Path.GetDirectoryName(assemblyLocation);
            if (string.IsNullOrEmpty(dir))
            {
                return null;
            }
            return Path.Combine(dir, pointerSize == 8 ? "x64" : "x86", "optin_telemetry.dll");
        }

        /// <summary>
        /// Windows only, once per process, before the first P/Invoke: an AnyCPU
        /// .NET Framework application gets both DLLs in x86\ and x64\ subfolders (see
        /// build/OptInTelemetry.targets), which DllImport does not search. Loading the
        /// one matching the process by full path makes Windows reuse that module for
        /// DllImport("optin_telemetry"): a module of that name already loaded is used
        /// wherever it came from. When the subfolder file does not exist (an x86 or x64
        /// build with the DLL beside the application, .NET 6/8 with runtimes/, Mono on
        /// Linux) nothing is done and DllImport searches as before.
        /// </summary>
        private static void PreloadArchitectureDll()
        {
            if (Interlocked.Exchange(ref preloaded, 1) != 0)
            {
                return;
            }
            if (Environment.OSVersion.Platform != PlatformID.Win32NT)
            {
                return;
            }
            string path;
            try
            {
                path = ArchitectureDllPath(typeof(TelemetryLibrary).Assembly.Location, IntPtr.Size);
            }
            catch (NotSupportedException)
            {
                return; // a dynamic assembly has no location
            }
            if (path == null || !File.Exists(path))
            {
                return;
            }
            PreloadedPath = path;
            if (Kernel32.LoadLibraryW(path) == IntPtr.Zero)
            {
                PreloadError = Marshal.GetLastWin32Error();
            }
        }

        /// <summary>kernel32 declarations; kept out of NativeMethods, whose P/Invokes are all prelinked.</summary>
        private static class Kernel32
        {
            [DllImport("kernel32", CharSet = CharSet.Unicode, SetLastError = true, ExactSpelling = true)]
            internal static extern IntPtr LoadLibraryW(string lpLibFileName);
        }

        /// <summary>
        /// Loads the native library and checks its version; runs once per process,
        /// and on every TelemetryClient.Open until it succeeds. Throws
        /// DllNotFoundException (library not found: see README), BadImageFormatException
        /// (a 32-bit process loading the 64-bit DLL) or TelemetryVersionMismatchException
        /// (another version, or a library lacking one of the tel_* functions this binding calls).
        /// On Windows it first loads x86\optin_telemetry.dll or x64\optin_telemetry.dll
        /// beside this assembly, matching the process, when that file exists (the AnyCPU
        /// layout of the NuGet package's targets).
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
                PreloadArchitectureDll();
                try
                {
                    native = NativeVersion;
                }
                catch (DllNotFoundException e)
                {
                    throw new DllNotFoundException(
                        "optin-telemetry: cannot load the native library '" + NativeMethods.Library + "' " +
                        "(optin_telemetry.dll beside the application on Windows; liboptin_telemetry.so via " +
                        "a dllmap in OptInTelemetry.dll.config or LD_LIBRARY_PATH under Mono" +
                        (PreloadedPath != null ? "; LoadLibraryW(" + PreloadedPath + ") failed with Win32 error " + PreloadError : "") +
                        "): " + e.Message, e);
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
