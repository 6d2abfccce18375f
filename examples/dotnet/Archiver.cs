// Mock e-mail archiver embedding optin-telemetry through the .NET binding:
// asks for consent in the console, shows the "view data" screen (Describe),
// runs the periodic tick loop, then flushes and prints the status.
//
//   mono Archiver.exe ENDPOINT_URL STATE_DIR [--yes | --no] [--lang de]
//
// Without --yes/--no it asks "[y/N/v]" on the console (v = view data). The first
// report is due at a random moment within 7 days; the demo drives the library's
// clock with TickAt in 6-hour steps up to that moment instead of waiting a week.
// A real host calls Tick() from a timer, e.g. once a minute:
//
//     var timer = new System.Threading.Timer(_ => { try { client.Tick(); } catch (TelemetryException) { } },
//                                             null, TimeSpan.Zero, TimeSpan.FromMinutes(1));
//
// Exit codes: 0 done, 1 telemetry could not be opened or used, 2 the report in
// the history differs from the preview shown, 64 bad arguments.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using OptInTelemetry;

namespace MockArchiver
{
    public static class Archiver
    {
        private const string Product = "Mock Mail Archiver";
        private const string ProductVersion = "5.2.1";

        // What the archiver reports: counts and kinds only, never names or addresses.
        private const string Schema = @"{""version"": 1, ""fields"": [
  {""name"": ""trial"", ""type"": ""bool"",
   ""description"": {""en"": ""Whether this installation runs a trial licence."", ""de"": ""Ob diese Installation mit einer Testlizenz läuft.""}},
  {""name"": ""edition"", ""type"": ""choice"", ""values"": [""standard"", ""enterprise"", ""smb""],
   ""description"": {""en"": ""Licensed edition."", ""de"": ""Lizenzierte Edition.""}},
  {""name"": ""users"", ""type"": ""count"", ""buckets"": [1, 5, 10, 25, 50, 100],
   ""description"": {""en"": ""Number of archive users, as a range."", ""de"": ""Anzahl der Archivbenutzer, als Bereich.""}},
  {""name"": ""archived_items"", ""type"": ""count"", ""rounding"": ""1-2-5"",
   ""description"": {""en"": ""Number of archived e-mails, rounded at random to 0, 1, 2, 5, 10, 20, 50, ..."", ""de"": ""Anzahl archivierter E-Mails, zufällig gerundet auf 0, 1, 2, 5, 10, 20, 50, ...""}},
  {""name"": ""profiles"", ""type"": ""choices"", ""values"": [""imap"", ""exchange"", ""m365"", ""gmail"", ""pst""],
   ""description"": {""en"": ""Kinds of archiving profiles that exist (not their settings)."", ""de"": ""Arten vorhandener Archivierungsprofile (nicht deren Einstellungen).""}}
]}";

        public static int Main(string[] args)
        {
            try
            {
                Console.OutputEncoding = new UTF8Encoding(false);
            }
            catch (Exception)
            {
                // Not a console that can switch encodings: keep its default.
            }
            var positional = new List<string>();
            bool? answer = null;
            string language = (Environment.GetEnvironmentVariable("LANG") ?? "").StartsWith("de", StringComparison.Ordinal) ? "de" : "en";
            for (int i = 0; i < args.Length; i++)
            {
                switch (args[i])
                {
                    case "--yes": answer = true; break;
                    case "--no": answer = false; break;
                    case "--lang":
                        if (i + 1 >= args.Length) return Usage();
                        language = args[++i];
                        break;
                    default:
                        if (args[i].StartsWith("--", StringComparison.Ordinal)) return Usage();
                        positional.Add(args[i]);
                        break;
                }
            }
            if (positional.Count != 2)
            {
                return Usage();
            }
            try
            {
                return Run(positional[0], positional[1], answer, language);
            }
            catch (TelemetryException e)
            {
                // Telemetry must never take the archiver down; here it ends the demo.
                Console.Error.WriteLine("telemetry error: " + e.Message + " (" + e.ResultCode + ")");
                return 1;
            }
        }

        private static int Usage()
        {
            Console.Error.WriteLine("usage: Archiver.exe ENDPOINT_URL STATE_DIR [--yes | --no] [--lang de]");
            return 64;
        }

        private static int Run(string endpoint, string stateDir, bool? answer, string language)
        {
            Console.WriteLine("{0} {1}; sending statistics to {2}", Product, ProductVersion, endpoint);
            var options = new TelemetryOptions
            {
                Product = Product,
                ProductVersion = ProductVersion,
                Endpoint = endpoint,
                StateDirectory = stateDir,
                SchemaJson = Schema,
            };

            TelemetryClient client;
            try
            {
                client = TelemetryClient.Create(options);
            }
            catch (TelemetryVersionMismatchException e)
            {
                Console.Error.WriteLine(e.Message);
                return 1;
            }
            catch (DllNotFoundException e)
            {
                Console.Error.WriteLine(e.Message);
                return 1;
            }
            using (client)
            {
                // The archiver's static state, with the typed setters.
                client.Set("trial", false);
                client.Set("edition", "enterprise");
                client.Set("users", 37);                       // reported as the bucket 25-49
                client.Set("archived_items", 1234567L);
                client.Set("profiles", new[] { "imap", "m365", "pst" });

                Consent consent = client.Consent;
                if (consent == Consent.Undecided || consent == Consent.Outdated)
                {
                    if (answer == null)
                    {
                        answer = Ask(client, language, consent == Consent.Outdated);
                    }
                    if (answer != null)
                    {
                        client.SetConsent(answer.Value);
                    }
                    else
                    {
                        Console.WriteLine("\nNo answer (end of input): the consent stays {0}.", consent.ToString().ToLowerInvariant());
                    }
                }
                else if (answer != null)
                {
                    client.SetConsent(answer.Value); // an explicit --yes/--no overrides the saved answer
                }
                ViewData(client, language);
                consent = client.Consent;
                Console.WriteLine("Consent: {0}", consent);

                // A host ticks at start-up and then periodically.
                long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
                client.TickAt(now);
                TelemetryStatus status = client.GetStatus();
                if (status.NextDue == null)
                {
                    Console.WriteLine("Nothing is scheduled (consent {0}, blocked_by {1}): nothing will leave this machine.",
                        status.Consent, status.BlockedBy ?? "null");
                    Console.WriteLine("Status: {0}", status.Json);
                    return 0;
                }
                long dueAt = status.NextDue.Value.ToUnixTimeSeconds();
                Console.WriteLine("First report due {0:yyyy-MM-dd HH:mm} UTC (a random moment within 7 days); fast-forwarding the clock to it.",
                    DateTimeOffset.FromUnixTimeSeconds(dueAt).UtcDateTime);
                string preview = client.PreviewJson();
                Console.WriteLine("Next report (exact bytes): " + preview);

                int ticks = TickLoop(client, now, dueAt, 6 * 3600);
                Console.WriteLine("Ticked {0} times on the simulated clock.", ticks);
                bool finished = client.Flush(TimeSpan.FromSeconds(15));
                Console.WriteLine("Flush: {0}", finished ? "no send in flight" : "timed out, a send is still in flight");
                Console.WriteLine("Status: {0}", client.Status);

                IReadOnlyList<SentReport> reports = client.GetSentReports();
                Console.WriteLine("History keeps {0} report(s) that left this machine.", reports.Count);
                bool identical = reports.Count == 1 && reports[0].Body == preview;
                if (reports.Count > 0)
                {
                    Console.WriteLine("Latest: outcome {0}, HTTP status {1}.", reports[0].Outcome, reports[0].HttpStatus?.ToString(CultureInfo.InvariantCulture) ?? "none");
                }
                Console.WriteLine("Sent body is byte-identical to the preview: {0}", identical ? "yes" : "NO");
                return identical && finished ? 0 : 2;
            }
        }

        /// <summary>
        /// The periodic tick, on a simulated clock: every <paramref name="step"/>
        /// seconds from <paramref name="from"/> until the report is due. Not-due ticks
        /// cost a couple of atomic loads in the library.
        /// </summary>
        private static int TickLoop(TelemetryClient client, long from, long due, long step)
        {
            int ticks = 0;
            for (long t = from + step; ; t += step)
            {
                long at = Math.Min(t, due);
                client.TickAt(at);
                ticks++;
                if (at >= due)
                {
                    return ticks;
                }
            }
        }

        private static bool? Ask(TelemetryClient client, string language, bool outdated)
        {
            if (outdated)
            {
                Console.WriteLine("The statistics sent have changed since you last agreed; please answer again (v shows the changes).");
            }
            while (true)
            {
                Console.Write("Help improve the archiver by sending anonymous usage statistics once a week? [y/N/v = view data] ");
                string line = Console.ReadLine();
                if (line == null)
                {
                    return null;
                }
                string a = line.Trim().ToLowerInvariant();
                if (a == "v")
                {
                    ViewData(client, language);
                    continue;
                }
                return a == "y" || a == "yes";
            }
        }

        /// <summary>The "view data" dialog: every field with its description, the value sent, and the exact report.</summary>
        private static void ViewData(TelemetryClient client, string language)
        {
            ReportDescription d = client.DescribeReport(language);
            Console.WriteLine();
            Console.WriteLine("  What would be sent to {0} (schema {1}, {2}):", d.Endpoint, d.SchemaVersion, d.SchemaDigest);
            foreach (ReportField f in d.Fields)
            {
                Console.WriteLine("    {0,-16} {1,-22} {2}", f.Name, Show(f.Value), f.Description);
            }
            ConsentChanges changes = d.Consent.Changes;
            if (changes != null)
            {
                Console.WriteLine("  Changed since you agreed: added [{0}], removed [{1}], changed [{2}]{3}{4}",
                    string.Join(", ", changes.Added), string.Join(", ", changes.Removed), string.Join(", ", changes.Changed),
                    changes.ProductChanged ? "; product " + changes.FromProduct + " -> " + changes.ToProduct : "",
                    changes.EndpointChanged ? "; endpoint " + changes.FromEndpoint + " -> " + changes.ToEndpoint : "");
            }
            Console.WriteLine();
            Console.WriteLine("  The exact bytes of the next report:");
            Console.WriteLine("    " + d.NextReport);
            Console.WriteLine();
        }

        private static string Show(object value)
        {
            if (value == null) return "(not set)";
            if (value is bool) return (bool)value ? "true" : "false";
            if (value is string) return "\"" + value + "\"";
            var list = value as System.Collections.IEnumerable;
            if (list != null) return "[" + string.Join(", ", list.Cast<object>().Select(Show)) + "]";
            return Convert.ToString(value, CultureInfo.InvariantCulture);
        }
    }
}
