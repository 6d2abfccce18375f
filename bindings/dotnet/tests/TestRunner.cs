// A self-contained test runner (no NuGet here): runs every [Test] method of
// Tests in declaration order, prints one line per test and a final
// "N passed, M failed" line; exit code 1 when any test failed.
//
//   mono OptInTelemetry.Tests.exe --root REPO [--fake-native-dir DIR] [--python python3] [--only NAME]
//   mono OptInTelemetry.Tests.exe --expect-version-mismatch   (child mode used by a test)
using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text;

namespace OptInTelemetry.Tests
{
    public static class TestRunner
    {
        public static int Main(string[] args)
        {
            Console.OutputEncoding = new UTF8Encoding(false);
            if (args.Contains("--expect-version-mismatch"))
            {
                return ExpectVersionMismatch();
            }
            string only = null;
            for (int i = 0; i < args.Length; i++)
            {
                string next = i + 1 < args.Length ? args[i + 1] : null;
                switch (args[i])
                {
                    case "--root": Env.RepoRoot = Path.GetFullPath(next); i++; break;
                    case "--fake-native-dir": Env.FakeNativeDir = Path.GetFullPath(next); i++; break;
                    case "--python": Env.Python = next; i++; break;
                    case "--only": only = next; i++; break;
                    default:
                        Console.Error.WriteLine("unknown argument " + args[i]);
                        return 2;
                }
            }
            if (Env.RepoRoot == null)
            {
                Console.Error.WriteLine("--root REPO is required");
                return 2;
            }
            Env.WorkDir = Path.Combine(Path.GetTempPath(), "optin-telemetry-dotnet-" + Process.GetCurrentProcess().Id);
            Directory.CreateDirectory(Env.WorkDir);

            var tests = typeof(Tests).GetMethods(BindingFlags.Public | BindingFlags.Static)
                .Concat(typeof(TypedTests).GetMethods(BindingFlags.Public | BindingFlags.Static))
                .Where(m => m.GetCustomAttributes(typeof(TestAttribute), false).Length > 0)
                .OrderBy(m => m.DeclaringType == typeof(Tests) ? 0 : 1).ThenBy(m => m.MetadataToken)
                .Where(m => only == null || m.Name == only)
                .ToList();
            int passed = 0, failed = 0;
            foreach (MethodInfo test in tests)
            {
                var sw = Stopwatch.StartNew();
                try
                {
                    test.Invoke(null, null);
                    passed++;
                    Console.WriteLine("PASS {0} ({1} ms)", test.Name, sw.ElapsedMilliseconds);
                }
                catch (TargetInvocationException e)
                {
                    failed++;
                    Exception inner = e.InnerException ?? e;
                    Console.WriteLine("FAIL {0} ({1} ms): {2}: {3}", test.Name, sw.ElapsedMilliseconds, inner.GetType().Name, inner.Message);
                    if (!(inner is AssertionException))
                    {
                        Console.WriteLine(inner.StackTrace);
                    }
                }
            }
            if (tests.Count == 0)
            {
                failed++;
                Console.WriteLine("FAIL no tests selected");
            }
            try
            {
                Directory.Delete(Env.WorkDir, true);
            }
            catch (IOException)
            {
            }
            Console.WriteLine("{0} passed, {1} failed", passed, failed);
            return failed == 0 ? 0 : 1;
        }

        // Child mode: the native library found is the stand-in with another version.
        private static int ExpectVersionMismatch()
        {
            try
            {
                using (TelemetryClient.Open("{}"))
                {
                }
                Console.WriteLine("no exception: the mismatched native library was accepted");
                return 3;
            }
            catch (TelemetryVersionMismatchException e)
            {
                Console.WriteLine(e.GetType().Name + ": " + e.Message);
                return 0;
            }
            catch (Exception e)
            {
                Console.WriteLine("unexpected " + e.GetType().Name + ": " + e.Message);
                return 4;
            }
        }
    }
}
