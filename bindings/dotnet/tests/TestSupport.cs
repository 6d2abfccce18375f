using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;

namespace OptInTelemetry.Tests
{
    public class AssertionException : Exception
    {
        public AssertionException(string message) : base(message) { }
    }

    public static class Assert
    {
        public static void True(bool condition, string what)
        {
            if (!condition)
            {
                throw new AssertionException("expected: " + what);
            }
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
            {
                throw new AssertionException(string.Format("{0}: expected <{1}>, got <{2}>", what, expected, actual));
            }
        }

        public static void Contains(string needle, string haystack, string what)
        {
            if (haystack == null || haystack.IndexOf(needle, StringComparison.Ordinal) < 0)
            {
                throw new AssertionException(string.Format("{0}: expected <{1}> to contain <{2}>", what, haystack, needle));
            }
        }

        public static void BytesEqual(byte[] expected, byte[] actual, string what)
        {
            if (expected == null || actual == null || !expected.SequenceEqual(actual))
            {
                throw new AssertionException(string.Format("{0}: bytes differ\n  expected: {1}\n  actual:   {2}", what,
                    expected == null ? "null" : Encoding.UTF8.GetString(expected),
                    actual == null ? "null" : Encoding.UTF8.GetString(actual)));
            }
        }

        public static T Throws<T>(Action action, string what) where T : Exception
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                if (e.GetType() == typeof(T))
                {
                    return (T)e;
                }
                throw new AssertionException(string.Format("{0}: expected {1}, got {2}: {3}", what, typeof(T).Name, e.GetType().Name, e.Message));
            }
            throw new AssertionException(string.Format("{0}: expected {1}, nothing was thrown", what, typeof(T).Name));
        }

        /// <summary>A TelemetryException with this code whose native message names <paramref name="named"/>.</summary>
        public static TelemetryException Fails(ResultCode code, string named, Action action, string what)
        {
            var e = Throws<TelemetryException>(action, what);
            Equal(code, e.ResultCode, what + ": ResultCode (message: " + e.NativeMessage + ")");
            if (named != null)
            {
                Contains(named, e.NativeMessage, what + ": native message");
                Contains(named, e.Message, what + ": exception message");
            }
            Contains(TelemetryException.CodeName(code), e.Message, what + ": exception message names the code");
            Assert.True(!string.IsNullOrEmpty(e.Function) && e.Message.StartsWith(e.Function, StringComparison.Ordinal), what + ": message starts with the native function name");
            return e;
        }
    }

    /// <summary>Paths and settings given to the runner by scripts/test-dotnet.</summary>
    public static class Env
    {
        public static string RepoRoot;
        public static string FakeNativeDir;
        public static string Python = "python3";
        public static string WorkDir;
        private static int counter;

        /// <summary>A fresh, not yet existing directory under the run's work directory.</summary>
        public static string NewDir(string name)
        {
            return Path.Combine(WorkDir, string.Format("{0:D3}-{1}", Interlocked.Increment(ref counter), name));
        }

        public static long Now()
        {
            return DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        }
    }

    public static class Fixtures
    {
        // Umlauts and an en dash in German descriptions: they must come back from
        // Describe("de") exactly (UTF-8 in, UTF-8 out).
        public const string TrialDe = "Ob es eine Testinstallation ist – läuft die Prüfversion?";
        public const string UsersDe = "Anzahl der Benutzer (Größenordnung), gezählt für Übersichten.";

        public static string Schema(int version = 1, bool extraField = false)
        {
            var fields = new List<string>
            {
                "{\"name\": \"trial\", \"type\": \"bool\", \"description\": {\"en\": \"Whether this is a trial installation.\", \"de\": " + Json(TrialDe) + "}}",
                "{\"name\": \"edition\", \"type\": \"choice\", \"values\": [\"standard\", \"enterprise\", \"smb\"], \"description\": {\"en\": \"Edition.\"}}",
                "{\"name\": \"users\", \"type\": \"count\", \"buckets\": [1, 5, 10, 25, 50, 100], \"description\": {\"en\": \"Number of users.\", \"de\": " + Json(UsersDe) + "}}",
                "{\"name\": \"archived_items\", \"type\": \"count\", \"rounding\": \"1-2-5\", \"description\": {\"en\": \"Number of archived e-mails.\"}}",
                "{\"name\": \"profiles\", \"type\": \"choices\", \"values\": [\"imap\", \"exchange\", \"m365\", \"gmail\", \"pst\"], \"description\": {\"en\": \"Kinds of archiving profiles.\"}}",
            };
            if (extraField)
            {
                fields.Add("{\"name\": \"journaling\", \"type\": \"bool\", \"description\": {\"en\": \"Whether journaling is on.\"}}");
            }
            return "{\"version\": " + version + ", \"fields\": [" + string.Join(", ", fields) + "]}";
        }

        public static string Config(string stateDir, string endpoint = "http://127.0.0.1:9/v1/report", string schema = null, string product = "Mock Archiver", string extra = null)
        {
            return "{\"product\": " + Json(product) +
                ", \"product_version\": \"1.0.0\", \"endpoint\": " + Json(endpoint) +
                ", \"state_dir\": " + Json(stateDir) +
                ", \"schema\": " + (schema ?? Schema()) +
                (extra == null ? "" : ", " + extra) + "}";
        }

        public static string Json(string s)
        {
            return OptInTelemetry.Json.Quote(s);
        }
    }

    /// <summary>
    /// A real loopback HTTP collector: bindings/dotnet/tests/collector_server.py
    /// (tests/python/collector.py) in a child process, spooling request bodies to a
    /// directory before it answers.
    /// </summary>
    public sealed class CollectorProcess : IDisposable
    {
        private readonly Process process;
        public readonly string Url;
        public readonly string Spool;

        public CollectorProcess(double delaySeconds = 0, int status = 204)
        {
            Spool = Env.NewDir("spool");
            Directory.CreateDirectory(Spool);
            var psi = new ProcessStartInfo(Env.Python)
            {
                Arguments = string.Format(System.Globalization.CultureInfo.InvariantCulture, "\"{0}\" \"{1}\" --delay {2} --status {3}",
                    Path.Combine(Env.RepoRoot, "bindings", "dotnet", "tests", "collector_server.py"), Spool, delaySeconds, status),
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
            };
            process = Process.Start(psi);
            string line = process.StandardOutput.ReadLine();
            if (line == null || !line.StartsWith("URL ", StringComparison.Ordinal))
            {
                try { process.Kill(); } catch (InvalidOperationException) { }
                throw new InvalidOperationException("collector did not start: " + line);
            }
            Url = line.Substring(4).Trim();
        }

        /// <summary>The bodies received so far, in arrival order.</summary>
        public List<byte[]> Bodies()
        {
            return Directory.GetFiles(Spool, "*.body").OrderBy(f => f, StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();
        }

        public string Meta(int index)
        {
            return File.ReadAllText(Directory.GetFiles(Spool, "*.meta").OrderBy(f => f, StringComparer.Ordinal).ElementAt(index), Encoding.UTF8);
        }

        /// <summary>Waits until at least <paramref name="count"/> requests arrived (or the timeout), then returns all.</summary>
        public List<byte[]> WaitFor(int count, TimeSpan timeout)
        {
            var sw = Stopwatch.StartNew();
            while (Directory.GetFiles(Spool, "*.body").Length < count && sw.Elapsed < timeout)
            {
                Thread.Sleep(20);
            }
            return Bodies();
        }

        public void Dispose()
        {
            try
            {
                process.StandardInput.Close(); // the server exits at EOF
                if (!process.WaitForExit(5000))
                {
                    process.Kill();
                }
            }
            catch (InvalidOperationException)
            {
            }
            process.Dispose();
        }
    }
}
