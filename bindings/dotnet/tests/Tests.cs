using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading;

namespace OptInTelemetry.Tests
{
    [AttributeUsage(AttributeTargets.Method)]
    public sealed class TestAttribute : Attribute
    {
    }

    public static class Tests
    {
        private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(15);

        private static TelemetryClient OpenClient(string stateDir = null, string endpoint = "http://127.0.0.1:9/v1/report", string schema = null, string product = "Mock Archiver")
        {
            return TelemetryClient.Open(Fixtures.Config(stateDir ?? Env.NewDir("state"), endpoint, schema, product));
        }

        private static Dictionary<string, object> Status(TelemetryClient c)
        {
            return Json.Object(c.Status);
        }

        /// <summary>Ticks at "now" so that a granted client schedules its report; returns next_due.</summary>
        private static long ScheduleNow(TelemetryClient c)
        {
            c.TickAt(Env.Now());
            object due = Status(c)["next_due"];
            Assert.True(due is long, "next_due is a number after consent and a tick, status: " + c.Status);
            return (long)due;
        }

        // ------------------------------------------------------------ version

        [Test]
        public static void VersionEqualsCargoTomlAndNativeLibrary()
        {
            string cargo = File.ReadAllText(Path.Combine(Env.RepoRoot, "Cargo.toml"));
            Match m = Regex.Match(cargo, @"\[package\][^\[]*?\nversion\s*=\s*""([^""]+)""");
            Assert.True(m.Success, "Cargo.toml has a [package] version");
            Assert.Equal(m.Groups[1].Value, TelemetryLibrary.ExpectedVersion, "binding's expected version vs Cargo.toml");
            Assert.Equal(m.Groups[1].Value, TelemetryLibrary.NativeVersion, "tel_version() of the loaded library vs Cargo.toml");
            TelemetryLibrary.EnsureLoaded();
        }

        [Test]
        public static void ArchitectureSubfolderDllIsChosenByPointerSize()
        {
            string dir = Path.Combine(Path.GetTempPath(), "app");
            string asm = Path.Combine(dir, "OptInTelemetry.dll");
            Assert.Equal(Path.Combine(dir, "x86", "optin_telemetry.dll"), TelemetryLibrary.ArchitectureDllPath(asm, 4), "32-bit process");
            Assert.Equal(Path.Combine(dir, "x64", "optin_telemetry.dll"), TelemetryLibrary.ArchitectureDllPath(asm, 8), "64-bit process");
            Assert.Equal<string>(null, TelemetryLibrary.ArchitectureDllPath("", 8), "assembly loaded from bytes (no location)");
            Assert.Equal<string>(null, TelemetryLibrary.ArchitectureDllPath(null, 4), "no location");
            // Not Windows (Mono on Linux): nothing is preloaded, DllImport goes through the dllmap.
            TelemetryLibrary.EnsureLoaded();
            Assert.Equal<string>(null, TelemetryLibrary.PreloadedPath, "no preload outside Windows");
        }

        [Test]
        public static void VersionCheckNamesBothVersions()
        {
            TelemetryLibrary.CheckVersion("0.1.0", "0.1.0");
            var e = Assert.Throws<TelemetryVersionMismatchException>(() => TelemetryLibrary.CheckVersion("0.1.0", "0.2.0"), "mismatch");
            Assert.Contains("0.1.0", e.Message, "message names the expected version");
            Assert.Contains("0.2.0", e.Message, "message names the native version");
            Assert.Equal("0.2.0", e.NativeVersion, "NativeVersion");
            Assert.Equal("0.1.0", e.ExpectedVersion, "ExpectedVersion");
        }

        [Test]
        public static void MismatchedNativeLibraryIsRefusedOnFirstUse()
        {
            // A child process whose "optin_telemetry" is a stand-in reporting 9.9.9-fake.
            Assert.True(Env.FakeNativeDir != null && Directory.Exists(Env.FakeNativeDir), "--fake-native-dir was given and exists");
            var psi = new ProcessStartInfo("mono")
            {
                Arguments = string.Format("\"{0}\" --expect-version-mismatch", Path.Combine(Env.FakeNativeDir, "OptInTelemetry.Tests.exe")),
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.EnvironmentVariables["LD_LIBRARY_PATH"] = Env.FakeNativeDir;
            using (Process p = Process.Start(psi))
            {
                string stderrText = null;
                var errThread = new Thread(() => stderrText = p.StandardError.ReadToEnd());
                errThread.Start();
                string output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                errThread.Join();
                Assert.Equal(0, p.ExitCode, "child exit code (output: " + output + stderrText + ")");
                Assert.Contains("TelemetryVersionMismatchException", output, "child output");
                Assert.Contains("9.9.9-fake", output, "message names the native version");
                Assert.Contains(TelemetryLibrary.ExpectedVersion, output, "message names the expected version");
            }
        }

        [Test]
        public static void NativeLibraryLackingAnExportIsAVersionMismatch()
        {
            // A child process whose "optin_telemetry" reports the right version
            // but exports only some tel_* functions (missing_exports.c), and one
            // that lacks even tel_version.
            ChildRefusesLibraryLacking("missing-exports", "tel_get_consent");
            ChildRefusesLibraryLacking("no-version", "tel_version");
        }

        private static void ChildRefusesLibraryLacking(string dirName, string missing)
        {
            string dir = Path.Combine(Path.GetDirectoryName(Env.FakeNativeDir), dirName);
            Assert.True(File.Exists(Path.Combine(dir, "liboptin_telemetry.so")), "scripts/test-dotnet built " + dir);
            var psi = new ProcessStartInfo("mono")
            {
                Arguments = string.Format("\"{0}\" --expect-version-mismatch", Path.Combine(dir, "OptInTelemetry.Tests.exe")),
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.EnvironmentVariables["LD_LIBRARY_PATH"] = dir;
            using (Process p = Process.Start(psi))
            {
                string stderrText = null;
                var errThread = new Thread(() => stderrText = p.StandardError.ReadToEnd());
                errThread.Start();
                string output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                errThread.Join();
                Assert.Equal(0, p.ExitCode, "child exit code (output: " + output + stderrText + ")");
                Assert.Contains("TelemetryVersionMismatchException", output, "child output");
                Assert.Contains("does not export the function " + missing + ",", output, "message names the missing function");
                Assert.Contains(TelemetryLibrary.ExpectedVersion, output, "message names the expected version");
                Assert.True(!output.Contains("EntryPointNotFoundException"), "no raw EntryPointNotFoundException: " + output);
            }
        }

        // ------------------------------------------------------------ consent

        [Test]
        public static void ConsentFlow()
        {
            using (var collector = new CollectorProcess())
            {
                string dir = Env.NewDir("state");
                using (var c = OpenClient(dir, collector.Url))
                {
                    Assert.Equal(Consent.Undecided, c.Consent, "fresh client");
                    Assert.Equal("undecided", (string)Status(c)["consent"], "status.consent");
                    c.Set("trial", true);
                    c.TickAt(Env.Now() + 30 * 86400);
                    Assert.True(c.Flush(SendTimeout), "flush");
                    Assert.True(Status(c)["next_due"] == null, "nothing scheduled while undecided");

                    c.SetConsent(true);
                    Assert.Equal(Consent.Granted, c.Consent, "after yes");
                    Assert.Equal("granted", (string)Status(c)["consent"], "status.consent after yes");
                    Assert.Equal("granted", (string)Json.Get(Json.Parse(c.Describe()), "consent", "state"), "describe consent.state");
                }
                using (var c = OpenClient(dir, collector.Url))
                {
                    Assert.Equal(Consent.Granted, c.Consent, "yes is remembered on disk");
                    c.SetConsent(false);
                    Assert.Equal(Consent.Denied, c.Consent, "after no");
                    c.TickAt(Env.Now() + 30 * 86400);
                    Assert.True(c.Flush(SendTimeout), "flush");
                }
                using (var c = OpenClient(dir, collector.Url, Fixtures.Schema(2, true)))
                {
                    Assert.Equal(Consent.Denied, c.Consent, "a no stays a no across a schema change");
                    c.TickAt(Env.Now() + 60 * 86400);
                    Assert.True(c.Flush(SendTimeout), "flush");
                }

                string other = Env.NewDir("state");
                using (var c = OpenClient(other, collector.Url))
                {
                    c.SetConsent(true);
                }
                using (var c = OpenClient(other, collector.Url, Fixtures.Schema(2, true)))
                {
                    Assert.Equal(Consent.Outdated, c.Consent, "a yes for schema 1 is outdated under schema 2");
                    Assert.Equal("outdated", (string)Status(c)["consent"], "status.consent");
                    object changes = Json.Get(Json.Parse(c.Describe()), "consent", "changes");
                    Assert.True(changes != null, "describe lists the changes since the consented schema");
                    Assert.Contains("journaling", c.Describe(), "the added field is described");
                    c.TickAt(Env.Now() + 30 * 86400);
                    Assert.True(c.Flush(SendTimeout), "flush");
                    c.SetConsent(true);
                    Assert.Equal(Consent.Granted, c.Consent, "answered again");
                }
                Thread.Sleep(200);
                Assert.Equal(0, collector.Bodies().Count, "requests received without a valid yes");
            }
        }

        // ------------------------------------------------------------ preview == body

        [Test]
        public static void PreviewEqualsReceivedBody()
        {
            using (var collector = new CollectorProcess())
            using (var c = OpenClient(null, collector.Url))
            {
                c.SetValuesJson("{\"trial\": false, \"edition\": \"enterprise\", \"users\": 37, \"archived_items\": 1234567, \"profiles\": [\"imap\", \"pst\"]}");
                c.SetConsent(true);
                long due = ScheduleNow(c);
                Assert.True(due >= Env.Now() - 5 && due <= Env.Now() + 7 * 86400 + 5, "first report within 7 days, next_due " + due);
                string preview = c.PreviewJson();
                Assert.Contains("\"users\":\"25-49\"", preview.Replace(" ", ""), "users is reported as its bucket, preview: " + preview);

                c.TickAt(due);
                Assert.True(c.Flush(SendTimeout), "the send finished");
                List<byte[]> bodies = collector.WaitFor(1, TimeSpan.FromSeconds(10));
                Thread.Sleep(300);
                bodies = collector.Bodies();
                Assert.Equal(1, bodies.Count, "reports received");
                Assert.BytesEqual(Encoding.UTF8.GetBytes(preview), bodies[0], "received body vs PreviewJson()");
                var meta = Json.Object(collector.Meta(0));
                Assert.Equal("POST", (string)meta["method"], "method");
                Assert.Equal("/v1/report", (string)meta["path"], "path");

                var status = Status(c);
                Assert.True(status["last_sent"] is long, "status.last_sent is set: " + c.Status);
                Assert.Equal(false, (bool)status["sending"], "status.sending");

                var history = Json.Parse(c.History);
                var reports = (List<object>)Json.Get(history, "reports");
                Assert.Equal(1, reports.Count, "history entries");
                Assert.Equal(preview, (string)Json.Get(reports[0], "body"), "history body");
                Assert.Equal("delivered", (string)Json.Get(reports[0], "outcome"), "history outcome");

                c.ClearHistory();
                Assert.Equal(0, ((List<object>)Json.Get(Json.Parse(c.History), "reports")).Count, "history after ClearHistory");
                Assert.True(c.PreviewJson() != preview, "the next report has a new report_id");
            }
        }

        [Test]
        public static void FlushTimeoutReturnsFalseThenTrue()
        {
            using (var collector = new CollectorProcess(2.0))
            using (var c = OpenClient(null, collector.Url))
            {
                Assert.True(c.Flush(TimeSpan.Zero), "nothing in flight: true at once");
                Assert.Throws<ArgumentOutOfRangeException>(() => c.Flush(TimeSpan.FromMilliseconds(-5)), "negative timeout");
                c.SetConsent(true);
                long due = ScheduleNow(c);
                c.TickAt(due);
                var sw = Stopwatch.StartNew();
                Assert.Equal(false, c.Flush(TimeSpan.FromMilliseconds(200)), "Flush(200 ms) while the collector takes 2 s");
                Assert.True(sw.ElapsedMilliseconds < 1900, "Flush gave up after about its timeout, took " + sw.ElapsedMilliseconds + " ms");
                Assert.Equal(true, (bool)Status(c)["sending"], "status.sending during the send");
                Assert.True(c.Flush(SendTimeout), "Flush(15 s) sees the send finish");
                Assert.Equal(1, collector.WaitFor(1, TimeSpan.FromSeconds(5)).Count, "reports received");
            }
        }

        // ------------------------------------------------------------ errors

        [Test]
        public static void FieldErrorsBecomeTelemetryExceptions()
        {
            using (var c = OpenClient())
            {
                c.Set("edition", "smb");
                string before = c.PreviewJson();
                Assert.Fails(ResultCode.UnknownField, "nope", () => c.Set("nope", true), "unknown bool field");
                Assert.Fails(ResultCode.UnknownField, "nope2", () => c.Set("nope2", 3), "unknown count field");
                Assert.Fails(ResultCode.WrongType, "trial", () => c.Set("trial", 5), "count for a bool");
                Assert.Fails(ResultCode.WrongType, "users", () => c.Set("users", true), "bool for a count");
                Assert.Fails(ResultCode.WrongType, "users", () => c.Set("users", "many"), "choice for a count");
                var e = Assert.Fails(ResultCode.ValueNotAllowed, "edition", () => c.Set("edition", "platinum"), "undeclared choice");
                Assert.Contains("enterprise", e.NativeMessage, "the message lists the declared values");
                Assert.Equal("tel_set_choice", e.Function, "Function");
                Assert.Fails(ResultCode.MalformedJson, null, () => c.SetValuesJson("{\"trial\": "), "truncated JSON");
                Assert.Fails(ResultCode.WrongType, "users", () => c.SetValuesJson("{\"trial\": true, \"users\": \"many\"}"), "values JSON with a wrong type");
                Assert.Fails(ResultCode.ValueNotAllowed, "users", () => c.SetValuesJson("{\"users\": -1}"), "negative count in JSON");
                Assert.Fails(ResultCode.InvalidArgument, null, () => c.Describe("not a tag!"), "bad language tag");
                Assert.Fails(ResultCode.TooLarge, null, () => c.Set(new string('a', 300), true), "field name over 256 bytes");
                Assert.Equal(before, c.PreviewJson(), "on error nothing changes (all or nothing)");
            }
        }

        [Test]
        public static void NegativeCountThrowsBeforeTheNativeCall()
        {
            using (var c = OpenClient())
            {
                c.Set("users", 3);
                string before = c.PreviewJson();
                // Passed through as uint64 these would be accepted as huge counts.
                Assert.Throws<ArgumentOutOfRangeException>(() => c.Set("users", -1L), "long -1");
                Assert.Throws<ArgumentOutOfRangeException>(() => c.Set("users", -1), "int -1");
                Assert.Throws<ArgumentOutOfRangeException>(() => c.Set("archived_items", long.MinValue), "long.MinValue");
                Assert.Throws<ArgumentOutOfRangeException>(() => c.Set("no_such_field", -1), "checked before the field is looked up");
                Assert.Equal(before, c.PreviewJson(), "nothing changed");
                // archived_items is rounded 1-2-5: above 10^19 every value is sent as 10^19,
                // and a member of the series (5 * 10^18) as itself.
                c.Set("archived_items", ulong.MaxValue);
                Assert.Contains("\"archived_items\":10000000000000000000", c.PreviewJson(), "ulong.MaxValue rounds to the top member");
                c.Set("archived_items", 5000000000000000000L);
                c.Set("users", 0);
                Assert.Contains("\"archived_items\":5000000000000000000", c.PreviewJson(), "a series member is sent as itself");
            }
        }

        [Test]
        public static void BindingRejectsBadStringsItself()
        {
            using (var c = OpenClient())
            {
                Assert.Throws<ArgumentNullException>(() => c.Set(null, true), "null field");
                Assert.Throws<ArgumentNullException>(() => c.Set("edition", (string)null), "null choice");
                Assert.Throws<ArgumentNullException>(() => c.SetValuesJson(null), "null JSON");
                Assert.Throws<ArgumentException>(() => c.Set("tri\0al", true), "embedded NUL (would truncate to \"tri\")");
                Assert.Throws<ArgumentException>(() => c.Set("edition", "smb\0x"), "embedded NUL in a value (would truncate to \"smb\")");
                Assert.Throws<ArgumentException>(() => c.Set("trial\ud800", true), "lone surrogate");
                var fields = (Dictionary<string, object>)Json.Get(Json.Parse(c.PreviewJson()), "fields");
                Assert.Equal(0, fields.Count, "no field was set (a truncated name or value would have been): " + c.PreviewJson());
                Assert.Equal("en", (string)Json.Get(Json.Parse(c.Describe(null)), "language"), "Describe(null) is English");
                Assert.Equal("en", (string)Json.Get(Json.Parse(c.Describe("")), "language"), "Describe(\"\") is English");
            }
        }

        [Test]
        public static void ChoicesAndUnset()
        {
            using (var c = OpenClient())
            {
                c.Set("profiles", new[] { "pst", "imap" });
                var fields = (Dictionary<string, object>)Json.Get(Json.Parse(c.PreviewJson()), "fields");
                var profiles = ((List<object>)fields["profiles"]).Cast<string>().OrderBy(s => s, StringComparer.Ordinal).ToArray();
                Assert.Equal("imap,pst", string.Join(",", profiles), "profiles in the preview");
                Assert.Fails(ResultCode.ValueNotAllowed, "profiles", () => c.Set("profiles", new[] { "imap", "carrier-pigeon" }), "undeclared choice in a list");
                Assert.Fails(ResultCode.UnknownField, "we\"ird", () => c.Set("we\"ird", new[] { "imap" }), "field name is escaped into the JSON");
                c.Unset("profiles");
                fields = (Dictionary<string, object>)Json.Get(Json.Parse(c.PreviewJson()), "fields");
                Assert.True(!fields.ContainsKey("profiles"), "profiles is unset: " + c.PreviewJson());
            }
        }

        [Test]
        public static void RawNativeContract()
        {
            using (var c = OpenClient())
            {
                int rc = NativeMethods.tel_set_consent(c.Handle, 2);
                string message = Utf8.Decode(NativeMethods.tel_last_error_message());
                Assert.Equal((int)ResultCode.InvalidArgument, rc, "tel_set_consent(2)");
                Assert.Contains("granted", message, "the message names the argument");
                Assert.Equal(Consent.Undecided, c.Consent, "consent unchanged");
                rc = NativeMethods.tel_set_bool(c.Handle, Utf8.Encode("trial", "f"), 7);
                Assert.Equal((int)ResultCode.InvalidArgument, rc, "tel_set_bool(7)");
                IntPtr p;
                Assert.Equal(0, NativeMethods.tel_preview_json(c.Handle, out p), "tel_preview_json");
                Assert.True(p != IntPtr.Zero, "preview pointer");
                NativeMethods.tel_string_free(p);
                NativeMethods.tel_string_free(IntPtr.Zero);
                NativeMethods.tel_close(IntPtr.Zero);
            }
        }

        [Test]
        public static void InvalidConfiguration()
        {
            string dir = Env.NewDir("state");
            Assert.Throws<ArgumentNullException>(() => TelemetryClient.Open(null), "null config");
            Assert.Fails(ResultCode.MalformedJson, null, () => TelemetryClient.Open("{\"product\": "), "truncated JSON");
            var e = Assert.Fails(ResultCode.Config, "bogus", () => TelemetryClient.Open(Fixtures.Config(dir, extra: "\"bogus\": 1")), "unknown key");
            Assert.Equal("tel_open", e.Function, "Function");
            Assert.Fails(ResultCode.Config, "product", () => TelemetryClient.Open(Fixtures.Config(dir).Replace("\"product\": \"Mock Archiver\"", "\"product\": 5")), "product not a string");
            Assert.Fails(ResultCode.Config, "endpoint", () => TelemetryClient.Open(Fixtures.Config(dir, "not a url")), "bad endpoint");
            Assert.Fails(ResultCode.Config, "schema", () => TelemetryClient.Open(Fixtures.Config(dir, schema: "{\"version\": 1, \"fields\": [{\"name\": \"Bad Name\", \"type\": \"bool\", \"description\": {\"en\": \"x\"}}]}")), "bad field name in the schema");
            string file = Env.NewDir("file");
            File.WriteAllText(file, "not a directory");
            Assert.Fails(ResultCode.Io, null, () => TelemetryClient.Open(Fixtures.Config(Path.Combine(file, "state"))), "state_dir under a regular file");
            using (var c = TelemetryClient.Open(Fixtures.Config(dir)))
            {
                Assert.Equal(Consent.Undecided, c.Consent, "a valid configuration opens after the failures");
            }
        }

        // ------------------------------------------------------------ lifetime

        [Test]
        public static void DisposeTwiceThenObjectDisposedException()
        {
            string dir = Env.NewDir("state");
            var c = OpenClient(dir);
            c.SetConsent(true);
            Assert.True(!c.IsDisposed, "open");
            c.Dispose();
            c.Dispose();
            Assert.True(c.IsDisposed, "disposed");
            var calls = new Dictionary<string, Action>
            {
                { "Consent", () => { var x = c.Consent; } },
                { "SetConsent", () => c.SetConsent(false) },
                { "Set(bool)", () => c.Set("trial", true) },
                { "Set(long)", () => c.Set("users", 5L) },
                { "Set(ulong)", () => c.Set("users", 5UL) },
                { "Set(int)", () => c.Set("users", 5) },
                { "Set(string)", () => c.Set("edition", "smb") },
                { "Set(choices)", () => c.Set("profiles", new[] { "imap" }) },
                { "Unset", () => c.Unset("profiles") },
                { "SetValuesJson", () => c.SetValuesJson("{}") },
                { "PreviewJson", () => c.PreviewJson() },
                { "Describe", () => c.Describe("de") },
                { "Tick", () => c.Tick() },
                { "TickAt", () => c.TickAt(1) },
                { "Flush", () => c.Flush(TimeSpan.FromSeconds(1)) },
                { "Status", () => { var x = c.Status; } },
                { "History", () => { var x = c.History; } },
                { "ClearHistory", () => c.ClearHistory() },
            };
            foreach (var call in calls)
            {
                Assert.Throws<ObjectDisposedException>(call.Value, call.Key + " after Dispose");
            }
            using (var again = OpenClient(dir))
            {
                Assert.Equal(Consent.Granted, again.Consent, "the state survives closing");
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static List<WeakReference> AbandonClients(int count, string endpoint)
        {
            var refs = new List<WeakReference>();
            for (int i = 0; i < count; i++)
            {
                var c = OpenClient(null, endpoint);
                c.Set("users", i);
                c.Set("edition", "standard");
                if (i % 4 == 0)
                {
                    // Leave a send in flight: the finalizer's tel_close must cope.
                    c.SetConsent(true);
                    long due = ScheduleNow(c);
                    c.TickAt(due);
                }
                refs.Add(new WeakReference(c));
                refs.Add(new WeakReference(c.Handle));
            }
            return refs;
        }

        [Test]
        public static void FinalizationWithoutDispose()
        {
            using (var collector = new CollectorProcess(0.3))
            {
                List<WeakReference> refs = AbandonClients(24, collector.Url);
                for (int round = 0; round < 3; round++)
                {
                    GC.Collect();
                    GC.WaitForPendingFinalizers();
                }
                GC.Collect();
                int alive = refs.Count(r => r.IsAlive);
                Assert.Equal(0, alive, "clients and handles still alive after GC + finalizers");
                using (var c = OpenClient(null, collector.Url))
                {
                    c.Set("users", 1);
                    Assert.True(c.PreviewJson().Length > 0, "the library still works after the finalizers ran");
                }
            }
        }

        private static long ResidentBytes()
        {
            foreach (string line in File.ReadAllLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line.Substring(6).Trim().Split(' ')[0]) * 1024;
                }
            }
            throw new AssertionException("no VmRSS in /proc/self/status");
        }

        [Test]
        public static void ReturnedStringsAreFreed()
        {
            // Every char* the library returns is freed with tel_string_free: a leak
            // of Describe's ~2.5 KB per call would add ~40 MB here.
            using (var c = OpenClient())
            {
                c.SetValuesJson("{\"trial\": true, \"edition\": \"smb\", \"users\": 7, \"profiles\": [\"imap\", \"gmail\"]}");
                int size = c.Describe("de").Length + c.PreviewJson().Length;
                for (int i = 0; i < 2000; i++)
                {
                    c.Describe("de");
                    c.PreviewJson();
                }
                GC.Collect();
                GC.WaitForPendingFinalizers();
                long before = ResidentBytes();
                const int Rounds = 15000;
                for (int i = 0; i < Rounds; i++)
                {
                    c.Describe("de");
                    c.PreviewJson();
                }
                GC.Collect();
                GC.WaitForPendingFinalizers();
                long grown = ResidentBytes() - before;
                Assert.True(grown < (long)size * Rounds / 4, string.Format("resident memory grew by {0} KB over {1} calls returning ~{2} bytes each (a leak would be ~{3} KB)", grown / 1024, Rounds, size, (long)size * Rounds / 1024));
            }
        }

        // ------------------------------------------------------------ threads

        [Test]
        public static void ManyThreadsAtOnce()
        {
            const int Threads = 8;
            const int Calls = 200;
            var errors = new List<string>();
            int completed = 0;
            using (var collector = new CollectorProcess())
            using (var c = OpenClient(null, collector.Url))
            {
                var start = new Barrier(Threads);
                var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
                {
                    try
                    {
                        start.SignalAndWait();
                        string[] editions = { "standard", "enterprise", "smb" };
                        for (int i = 0; i < Calls; i++)
                        {
                            switch (i % 10)
                            {
                                case 0: c.Set("users", t * 1000 + i); break;
                                case 1: c.Set("trial", i % 20 == 1); break;
                                case 2: c.Set("edition", editions[(t + i) % 3]); break;
                                case 3:
                                    string preview = c.PreviewJson();
                                    if (!preview.StartsWith("{", StringComparison.Ordinal) || !preview.EndsWith("}", StringComparison.Ordinal))
                                    {
                                        throw new AssertionException("preview is not a JSON object: " + preview);
                                    }
                                    Json.Parse(preview);
                                    break;
                                case 4: c.Tick(); break;
                                case 5:
                                    var consent = c.Consent;
                                    if (consent != Consent.Undecided && consent != Consent.Granted)
                                    {
                                        throw new AssertionException("consent " + consent);
                                    }
                                    break;
                                case 6: Json.Parse(c.Status); break;
                                case 7:
                                    // The last-error message is per thread: each thread must read its own.
                                    string field = "nope_t" + t + "_" + i;
                                    try
                                    {
                                        c.Set(field, true);
                                        throw new AssertionException("unknown field accepted");
                                    }
                                    catch (TelemetryException e)
                                    {
                                        if (e.ResultCode != ResultCode.UnknownField || e.NativeMessage.IndexOf(field, StringComparison.Ordinal) < 0)
                                        {
                                            throw new AssertionException("thread " + t + " got " + e.ResultCode + ": " + e.NativeMessage);
                                        }
                                    }
                                    break;
                                case 8:
                                    string d = c.Describe("de");
                                    if (d.IndexOf(Fixtures.UsersDe, StringComparison.Ordinal) < 0)
                                    {
                                        throw new AssertionException("German description missing from describe");
                                    }
                                    break;
                                case 9:
                                    if (t == 0 && i == 9)
                                    {
                                        c.SetConsent(true);
                                    }
                                    else
                                    {
                                        c.SetValuesJson("{\"archived_items\": " + (t * Calls + i) + "}");
                                    }
                                    break;
                            }
                            Interlocked.Increment(ref completed);
                        }
                    }
                    catch (Exception e)
                    {
                        lock (errors)
                        {
                            errors.Add("thread " + t + ": " + e.GetType().Name + ": " + e.Message);
                        }
                    }
                })).ToList();
                threads.ForEach(th => th.Start());
                threads.ForEach(th => th.Join());
                Assert.Equal("", string.Join("\n", errors), "errors from the threads");
                Assert.Equal(Threads * Calls, completed, "calls completed");
                Assert.Equal(Consent.Granted, c.Consent, "consent given by thread 0");
            }
        }

        [Test]
        public static void DisposeWhileOtherThreadsCall()
        {
            const int Threads = 8;
            var errors = new List<string>();
            int sawDisposed = 0;
            int calls = 0;
            var c = OpenClient();
            var deadline = Stopwatch.StartNew();
            var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
            {
                try
                {
                    for (int i = 0; deadline.Elapsed < TimeSpan.FromSeconds(20); i++)
                    {
                        switch (i % 4)
                        {
                            case 0: c.Set("users", i); break;
                            case 1: c.PreviewJson(); break;
                            case 2: var s = c.Status; break;
                            case 3: c.Tick(); break;
                        }
                        Interlocked.Increment(ref calls);
                    }
                    lock (errors)
                    {
                        errors.Add("thread " + t + " never saw the client disposed");
                    }
                }
                catch (ObjectDisposedException)
                {
                    Interlocked.Increment(ref sawDisposed);
                }
                catch (Exception e)
                {
                    lock (errors)
                    {
                        errors.Add("thread " + t + ": " + e.GetType().Name + ": " + e.Message);
                    }
                }
            })).ToList();
            threads.ForEach(th => th.Start());
            while (Volatile.Read(ref calls) < 400 && deadline.Elapsed < TimeSpan.FromSeconds(10))
            {
                Thread.Sleep(1);
            }
            c.Dispose();
            int atDispose = Volatile.Read(ref calls);
            threads.ForEach(th => th.Join());
            int after = calls - atDispose;
            Assert.True(atDispose >= 400, "the threads were calling when Dispose ran (" + atDispose + " calls)");
            Assert.Equal("", string.Join("\n", errors), "errors from the threads");
            Assert.Equal(Threads, sawDisposed, "threads that got ObjectDisposedException");
            Assert.True(after <= Threads, "at most one call per thread completes after Dispose returned, saw " + after);
            Assert.True(c.Handle.IsClosed, "the native handle was released once the last call returned");
        }

        // ------------------------------------------------------------ UTF-8

        [Test]
        public static void NonAsciiRoundTrips()
        {
            // The report itself is ASCII by design (names, choices and product are
            // restricted), so UTF-8 is checked where text is free: descriptions,
            // error messages, and the state_dir path.
            string product = "Mäil-Archivär Größe ☃ 日本";
            Assert.Fails(ResultCode.Config, product, () => TelemetryClient.Open(Fixtures.Config(Env.NewDir("state"), product: product)), "non-ASCII product name is named in the error");

            string stateDir = Env.NewDir("zustand-größe-☃");
            string endpoint;
            using (var collector = new CollectorProcess())
            using (var c = OpenClient(stateDir, endpoint = collector.Url))
            {
                Assert.True(Directory.Exists(stateDir), "the state directory exists under its exact UTF-8 name " + stateDir);
                Assert.True(File.Exists(Path.Combine(stateDir, "lock")), "the library created its lock file in it");

                var de = Json.Parse(c.Describe("de"));
                Func<object, string, string> description = (doc, name) => (string)Json.Get(((List<object>)Json.Get(doc, "fields")).First(f => (string)Json.Get(f, "name") == name), "description");
                Assert.Equal(Fixtures.UsersDe, description(de, "users"), "German description of users");
                Assert.Equal(Fixtures.TrialDe, description(de, "trial"), "German description of trial");
                Assert.Equal(Fixtures.UsersDe, description(Json.Parse(c.Describe("de-AT")), "users"), "de-AT falls back to de");
                Assert.Equal("Number of users.", description(Json.Parse(c.Describe("fr")), "users"), "fr falls back to English");
                Assert.Contains("Betriebssystem", description(de, "os_family"), "built-in fields are described in German too");
                Assert.Fails(ResultCode.UnknownField, "größe", () => c.Set("größe", true), "non-ASCII field name in the error message");
                Assert.Fails(ResultCode.ValueNotAllowed, "Köln", () => c.Set("edition", "Köln"), "non-ASCII choice in the error message");

                c.SetConsent(true);
                long due = ScheduleNow(c);
                string preview = c.PreviewJson();
                c.TickAt(due);
                Assert.True(c.Flush(SendTimeout), "the send finished");
                List<byte[]> bodies = collector.WaitFor(1, TimeSpan.FromSeconds(10));
                Assert.Equal(1, bodies.Count, "reports received");
                Assert.BytesEqual(Encoding.UTF8.GetBytes(preview), bodies[0], "body vs preview");
            }
            // The same endpoint: a "yes" covers the endpoint it was given for.
            using (var c = OpenClient(stateDir, endpoint))
            {
                Assert.Equal(Consent.Granted, c.Consent, "consent read back from the non-ASCII state_dir");
            }
        }
    }
}
