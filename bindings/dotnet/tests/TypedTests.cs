using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace OptInTelemetry.Tests
{
    /// <summary>
    /// A loopback HTTP server: its first <c>silentCount</c> connections are accepted and never
    /// read (a send stalls waiting for the answer); later ones are read and answered 204, and
    /// their bodies kept.
    /// </summary>
    public sealed class StallingServer : IDisposable
    {
        private readonly TcpListener listener;
        private readonly Thread thread;
        private readonly List<TcpClient> held = new List<TcpClient>();
        private int silentLeft;
        public readonly List<byte[]> Bodies = new List<byte[]>();
        public readonly string Url;

        public StallingServer(int silentCount)
        {
            silentLeft = silentCount;
            listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start(64);
            Url = "http://127.0.0.1:" + ((IPEndPoint)listener.LocalEndpoint).Port + "/v1/report";
            thread = new Thread(Serve) { IsBackground = true };
            thread.Start();
        }

        private void Serve()
        {
            try
            {
                while (true)
                {
                    TcpClient conn = listener.AcceptTcpClient();
                    lock (held)
                    {
                        if (silentLeft > 0)
                        {
                            silentLeft--;
                            held.Add(conn);
                            continue;
                        }
                    }
                    Answer(conn);
                }
            }
            catch (SocketException) { }
            catch (ObjectDisposedException) { }
            catch (InvalidOperationException) { }
        }

        private void Answer(TcpClient conn)
        {
            using (conn)
            {
                NetworkStream s = conn.GetStream();
                s.ReadTimeout = 10000;
                var data = new List<byte>();
                var buf = new byte[65536];
                int headEnd = -1;
                while (headEnd < 0)
                {
                    int n = s.Read(buf, 0, buf.Length);
                    if (n <= 0) return;
                    data.AddRange(buf.Take(n));
                    string sofar = Encoding.ASCII.GetString(data.ToArray());
                    headEnd = sofar.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                }
                string head = Encoding.ASCII.GetString(data.ToArray(), 0, headEnd);
                int length = 0;
                foreach (string line in head.Split(new[] { "\r\n" }, StringSplitOptions.None))
                {
                    if (line.StartsWith("content-length:", StringComparison.OrdinalIgnoreCase)) length = int.Parse(line.Substring(15).Trim());
                }
                while (data.Count < headEnd + 4 + length)
                {
                    int n = s.Read(buf, 0, buf.Length);
                    if (n <= 0) return;
                    data.AddRange(buf.Take(n));
                }
                lock (Bodies) Bodies.Add(data.Skip(headEnd + 4).Take(length).ToArray());
                byte[] answer = Encoding.ASCII.GetBytes("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                s.Write(answer, 0, answer.Length);
            }
        }

        public void Dispose()
        {
            listener.Stop();
            thread.Join(5000);
            lock (held)
            {
                foreach (TcpClient c in held) c.Close();
            }
        }
    }

    public static class TypedTests
    {
        private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(15);

        /// <summary>Ticks at the due time (again at a catch-up moment) until a send is in flight; returns the tick's time.</summary>
        private static long TickUntilSending(TelemetryClient c, long t)
        {
            for (int i = 0; i < 4; i++)
            {
                c.TickAt(t);
                TelemetryStatus st = c.GetStatus();
                if (st.IsSending) return t;
                if (st.NextDue.HasValue && st.NextDue.Value.ToUnixTimeSeconds() > t) t = st.NextDue.Value.ToUnixTimeSeconds();
                else Thread.Sleep(100);
            }
            throw new AssertionException("no send started; status: " + c.Status);
        }

        private static void WaitInFlight(TelemetryClient c)
        {
            var sw = Stopwatch.StartNew();
            while (sw.Elapsed < TimeSpan.FromSeconds(10))
            {
                var h = c.GetSentReports();
                if (h.Count > 0 && h[0].Outcome == ReportOutcome.InFlight) break;
                Thread.Sleep(5);
            }
            Thread.Sleep(50); // the request is written; the send waits for the answer
        }

        [Test]
        public static void TypedModelsMatchTheJsonOfRealCalls()
        {
            using (var collector = new CollectorProcess())
            {
                var options = new TelemetryOptions
                {
                    Product = "Mock Archiver",
                    ProductVersion = "1.0.0",
                    Endpoint = collector.Url,
                    StateDirectory = Env.NewDir("state"),
                    SchemaJson = Fixtures.Schema(),
                };
                using (var c = TelemetryClient.Create(options))
                {
                    c.Set("trial", true);
                    c.Set("users", 7);
                    ReportDescription d = c.DescribeReport("de");
                    var raw = Json.Object(d.Json);
                    Assert.Equal(Consent.Undecided, d.Consent.State, "consent");
                    Assert.True(d.Consent.Receipt == null && d.NextReportDue == null, "no receipt, nothing due");
                    var fields = (List<object>)raw["fields"];
                    Assert.Equal(fields.Count, d.Fields.Count, "field count");
                    for (int i = 0; i < fields.Count; i++)
                    {
                        var f = (Dictionary<string, object>)fields[i];
                        Assert.Equal((string)f["name"], d.Fields[i].Name, "name " + i);
                        Assert.Equal((string)f["description"], d.Fields[i].Description, "description " + i);
                        Assert.Equal((bool)f["builtin"], d.Fields[i].IsBuiltIn, "builtin " + i);
                    }
                    ReportField users = d.Fields.Single(f => f.Name == "users");
                    Assert.Equal(FieldKind.Count, users.Kind, "users kind");
                    Assert.Equal(7L, (long)users.CurrentValue, "users as set");
                    Assert.Equal(Json.Get(Json.Parse(c.PreviewJson()), "fields", "users"), users.Value, "users as sent (its bucket, as in the preview)");
                    Assert.Equal(Fixtures.UsersDe, users.Description, "German description");
                    Assert.Equal(true, (bool)d.Fields.Single(f => f.Name == "trial").Value, "trial");
                    Assert.Equal(c.PreviewJson(), d.NextReport, "next report bytes");

                    c.SetConsent(true);
                    c.TickAt(Env.Now());
                    TelemetryStatus st = c.GetStatus();
                    var sraw = Json.Object(st.Json);
                    Assert.Equal(Consent.Granted, st.Consent, "status consent");
                    Assert.Equal((long)sraw["next_due"], st.NextDue.Value.ToUnixTimeSeconds(), "next_due");
                    d = c.DescribeReport("en");
                    Assert.Equal(st.NextDue, d.NextReportDue, "describe's next_due = status's");
                    Assert.True(d.Consent.Receipt != null && d.Consent.Receipt.Granted, "receipt");

                    var sent = new List<SentReport>();
                    c.ReportSent += (s, e) => sent.Add(e.Report);
                    c.CheckForOutcomes();
                    c.TickAt(st.NextDue.Value.ToUnixTimeSeconds());
                    Assert.True(c.Flush(SendTimeout), "flush");
                    Assert.Equal(1, sent.Count, "ReportSent raised once");
                    IReadOnlyList<SentReport> h = c.GetSentReports();
                    Assert.Equal(1, h.Count, "one report");
                    Assert.Equal(ReportOutcome.Delivered, h[0].Outcome, "delivered");
                    Assert.Equal(204, h[0].HttpStatus.Value, "status");
                    Assert.BytesEqual(collector.WaitFor(1, SendTimeout)[0], h[0].GetBodyBytes(), "the exact bytes");
                    Assert.Equal(st.NextDue.Value, h[0].At.Value, "when, as the library records it (the tick's time)");
                    Assert.Equal(h[0].ReportId, sent[0].ReportId, "event's report");
                    c.CheckForOutcomes();
                    Assert.Equal(1, sent.Count, "not raised twice");
                }
            }
        }

        [Test]
        public static void OutdatedConsentSaysWhatChanged()
        {
            string dir = Env.NewDir("state");
            using (var c = TelemetryClient.Open(Fixtures.Config(dir)))
            {
                c.SetConsent(true);
            }
            using (var c = TelemetryClient.Open(Fixtures.Config(dir, schema: Fixtures.Schema(2, true))))
            {
                ReportDescription d = c.DescribeReport(null);
                Assert.Equal(Consent.Outdated, d.Consent.State, "outdated");
                Assert.True(d.Consent.Changes != null, "changes");
                Assert.Equal(1L, d.Consent.Changes.FromSchemaVersion.Value, "from");
                Assert.Equal(2L, d.Consent.Changes.ToSchemaVersion.Value, "to");
                Assert.True(d.Consent.Changes.Added.Count == 1, "one field added: " + d.Json);
            }
        }

        [Test]
        public static void FlushAsyncDoesNotBlockTheCallingThread()
        {
            using (var server = new StallingServer(1))
            {
                string dir = Env.NewDir("state");
                using (var c = TelemetryClient.Open(Fixtures.Config(dir, server.Url)))
                {
                    c.SetConsent(true);
                    c.TickAt(Env.Now());
                    TickUntilSending(c, c.GetStatus().NextDue.Value.ToUnixTimeSeconds());
                    WaitInFlight(c);
                    var cts = new CancellationTokenSource();
                    var sw = Stopwatch.StartNew();
                    Task<bool> flush = c.FlushAsync(TimeSpan.FromSeconds(60), cts.Token);
                    long callMs = sw.ElapsedMilliseconds;
                    int spins = 0;
                    while (sw.ElapsedMilliseconds < 300) { spins++; Thread.Sleep(10); }
                    Assert.True(!flush.IsCompleted, "the send is stalled: the flush task is still running");
                    Assert.True(callMs < 200 && spins > 5, "FlushAsync returned at once (" + callMs + " ms) and the caller kept running");
                    cts.Cancel();
                    try
                    {
                        flush.Wait(TimeSpan.FromSeconds(2));
                        throw new AssertionException("a cancelled FlushAsync must not complete normally");
                    }
                    catch (AggregateException e)
                    {
                        Assert.True(e.InnerException is OperationCanceledException, "cancelled: " + e.InnerException);
                    }
                    Console.WriteLine("   FlushAsync returned in " + callMs + " ms during a stalled send");
                }
            }
        }

        [Test]
        public static void DisposeDuringAStalledSendIsPrompt()
        {
            const int tries = 50;
            using (var server = new StallingServer(tries))
            {
                string dir = Env.NewDir("state");
                long t;
                using (var c = TelemetryClient.Open(Fixtures.Config(dir, server.Url)))
                {
                    c.SetConsent(true);
                    c.TickAt(Env.Now());
                    t = c.GetStatus().NextDue.Value.ToUnixTimeSeconds();
                }
                var ms = new List<double>();
                for (int i = 0; i < tries; i++)
                {
                    var c = TelemetryClient.Open(Fixtures.Config(dir, server.Url));
                    t = TickUntilSending(c, t);
                    WaitInFlight(c);
                    var sw = Stopwatch.StartNew();
                    c.Dispose();
                    ms.Add(sw.Elapsed.TotalMilliseconds);
                    t += 7 * 3600; // past any retry time (at most 6 h)
                }
                ms.Sort();
                double median = (ms[tries / 2 - 1] + ms[tries / 2]) / 2;
                Console.WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture,
                    "   Dispose during a stalled send, {0} tries: median {1:F1} ms, max {2:F1} ms", tries, median, ms[tries - 1]));
                foreach (double m in ms) Assert.True(m < 1000, "each Dispose under 1 s: " + m + " ms");
                Assert.Equal(0, server.Bodies.Count, "the silent server read nothing");
            }
        }

        [Test]
        public static void InterruptedReportIsSentLaterOnceWithTheSameId()
        {
            using (var server = new StallingServer(2))
            {
                string dir = Env.NewDir("state");
                long t;
                using (var c = TelemetryClient.Open(Fixtures.Config(dir, server.Url)))
                {
                    c.SetConsent(true);
                    c.Set("trial", true);
                    c.TickAt(Env.Now());
                    t = c.GetStatus().NextDue.Value.ToUnixTimeSeconds();
                }
                string id = null;
                for (int i = 0; i < 2; i++)
                {
                    using (var c = TelemetryClient.Open(Fixtures.Config(dir, server.Url)))
                    {
                        t = TickUntilSending(c, t) + 7 * 3600;
                        WaitInFlight(c);
                    }
                    using (var c = TelemetryClient.Open(Fixtures.Config(dir, server.Url)))
                    {
                        IReadOnlyList<SentReport> h = c.GetSentReports();
                        Assert.Equal(1, h.Count, "one report");
                        Assert.Equal(ReportOutcome.Interrupted, h[0].Outcome, "interrupted by Dispose");
                        Assert.True(id == null || id == h[0].ReportId, "the same id on every attempt");
                        id = h[0].ReportId;
                    }
                }
                using (var c = TelemetryClient.Open(Fixtures.Config(dir, server.Url)))
                {
                    TickUntilSending(c, t);
                    Assert.True(c.Flush(SendTimeout), "flush");
                    IReadOnlyList<SentReport> h = c.GetSentReports();
                    Assert.Equal(1, h.Count, "still one report");
                    Assert.Equal(id, h[0].ReportId, "same id");
                    Assert.Equal("interrupted,interrupted,delivered", string.Join(",", h[0].Attempts.Select(a => a.OutcomeName)), "attempts");
                    Assert.Equal(1, server.Bodies.Count, "stored once");
                    Assert.Contains("\"report_id\":\"" + id + "\"", Encoding.UTF8.GetString(server.Bodies[0]), "the body carries the id");
                    Assert.BytesEqual(server.Bodies[0], h[0].GetBodyBytes(), "the exact bytes");
                }
            }
        }
    }
}
