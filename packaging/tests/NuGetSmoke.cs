// Compiled by scripts/test-package against the .nupkg's lib/net462/OptInTelemetry.dll
// only, and run with the package's runtimes/linux-x64/native library: the versions the
// assembly and the native library carry must all be the expected one (Cargo.toml's).
//   mono NuGetSmoke.exe EXPECTED_VERSION
using System;
using System.Reflection;
using OptInTelemetry;

public static class NuGetSmoke
{
    public static int Main(string[] args)
    {
        string expected = args[0];
        Assembly asm = typeof(TelemetryClient).Assembly;
        string assemblyVersion = asm.GetName().Version.ToString(3);
        var info = (AssemblyInformationalVersionAttribute)Attribute.GetCustomAttribute(asm, typeof(AssemblyInformationalVersionAttribute));
        string informational = info == null ? "<none>" : info.InformationalVersion;
        string native = TelemetryLibrary.NativeVersion;
        Console.WriteLine("assembly {0}, informational {1}, ExpectedVersion {2}, native tel_version() {3}",
            assemblyVersion, informational, TelemetryLibrary.ExpectedVersion, native);
        int bad = 0;
        foreach (var pair in new[] { Tuple.Create("AssemblyVersion", assemblyVersion), Tuple.Create("AssemblyInformationalVersion", informational),
                                     Tuple.Create("TelemetryLibrary.ExpectedVersion", TelemetryLibrary.ExpectedVersion), Tuple.Create("tel_version()", native) })
        {
            if (pair.Item2 != expected)
            {
                Console.WriteLine("FAIL: {0} is {1}, expected {2}", pair.Item1, pair.Item2, expected);
                bad++;
            }
        }
        TelemetryLibrary.EnsureLoaded();
        return bad == 0 ? 0 : 1;
    }
}
