// Tests of OptInTelemetry.WinForms under Mono's Windows Forms on a real X display (Xvfb):
// real windows, real actions through the control API (Checked, PerformClick), real
// native library, real loopback collector (bindings/dotnet/tests/collector_server.py).
//
//   mono OptInTelemetry.WinForms.Tests.exe --root REPO [--python python3] [--screenshots DIR]
//
// Prints one line per test and "N passed, M failed"; with --screenshots also writes
// consent-panel-{en,de}.png and consent-data-{en,de}.png into DIR (xwd + convert).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Windows.Forms;
using OptInTelemetry;
using OptInTelemetry.WinForms;

namespace OptInTelemetry.WinFormsTests
{
    internal sealed class Failure : Exception
    {
        public Failure(string m) : base(m) { }
    }

    internal sealed class Collector : IDisposable
    {
        private readonly Process process;
        public readonly string Url;
        public readonly string Spool;

        public Collector(string root, string python, string spool)
        {
            Spool = spool;
            Directory.CreateDirectory(spool);
            var psi = new ProcessStartInfo(python)
            {
                Arguments = "\"" + Path.Combine(root, "bindings", "dotnet", "tests", "collector_server.py") + "\" \"" + spool + "\"",
                UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true,
            };
            process = Process.Start(psi);
            string line = process.StandardOutput.ReadLine();
            if (line == null || !line.StartsWith("URL ", StringComparison.Ordinal)) throw new Failure("collector did not start: " + line);
            Url = line.Substring(4).Trim();
        }

        public int Count { get { return Directory.GetFiles(Spool, "*.body").Length; } }

        public byte[] Body(int i)
        {
            return File.ReadAllBytes(Directory.GetFiles(Spool, "*.body").OrderBy(f => f, StringComparer.Ordinal).ElementAt(i));
        }

        public void Dispose()
        {
            try
            {
                process.StandardInput.Close();
                if (!process.WaitForExit(5000)) process.Kill();
            }
            catch (InvalidOperationException) { }
            process.Dispose();
        }
    }

    public static class Program
    {
        private static string root;
        private static string python = "python3";
        private static string tmp;
        private static Collector collector;
        private static string schemaV1;
        private static string schemaV2;
        private static int stateCounter;

        public static int Main(string[] args)
        {
            string shots = null;
            for (int i = 0; i < args.Length; i++)
            {
                if (args[i] == "--root") root = args[++i];
                else if (args[i] == "--python") python = args[++i];
                else if (args[i] == "--screenshots") shots = args[++i];
            }
            if (root == null) { Console.Error.WriteLine("usage: --root REPO [--python P] [--screenshots DIR]"); return 64; }
            tmp = Path.Combine(Path.GetTempPath(), "optin-winforms-" + Process.GetCurrentProcess().Id);
            Directory.CreateDirectory(tmp);
            schemaV1 = File.ReadAllText(Path.Combine(root, "examples", "archiver-schema.json"), Encoding.UTF8);
            schemaV2 = schemaV1.Replace("\"version\": 1", "\"version\": 2").Replace("\"fields\": [",
                "\"fields\": [ {\"name\": \"journaling\", \"type\": \"bool\", \"description\": {\"en\": \"Whether journaling is on.\", \"de\": \"Ob das Journaling eingeschaltet ist.\"}},");
            if (schemaV2 == schemaV1) { Console.Error.WriteLine("could not derive schema v2"); return 1; }
            Application.EnableVisualStyles();
            int passed = 0, failed = 0;
            using (collector = new Collector(root, python, Path.Combine(tmp, "spool")))
            {
                var tests = new List<KeyValuePair<string, Action>>
                {
                    T("panel starts unchecked; checking grants consent (fresh client on the same state_dir)", CheckingGrants),
                    T("View data window: bytes TextBox == PreviewJson(), fields and descriptions shown", ViewDataShowsTheExactBytes),
                    T("unchecking denies; a denied state sends nothing to the collector", UncheckingDeniesAndNothingIsSent),
                    T("control: a granted state does send (so the collector above would have seen a report)", GrantedSendsOneReport),
                    T("undecided: nothing sent", UndecidedSendsNothing),
                    T("outdated consent: unchecked, and a line names the added field", OutdatedIsUncheckedWithChanges),
                    T("consent changed elsewhere shows after hide/show and Reload()", ReloadsWhenShownAgain),
                    T("View data window lists the reports already sent (outcome, exact bytes)", SentReportsAreListed),
                    T("dialog: check + Enter (AcceptButton) -> true, Granted", DialogCheckAndOk),
                    T("dialog: Esc (CancelButton) -> false, still Undecided", DialogEscape),
                    T("dialog: OK unchecked -> false, Denied", DialogOkUnchecked),
                    T("German UI culture: German texts and schema descriptions", GermanTexts),
                    T("access keys, tab order, no text cut off at 100 % and 200 % font size", KeyboardAndScaling),
                };
                foreach (var t in tests)
                {
                    var sw = Stopwatch.StartNew();
                    try
                    {
                        t.Value();
                        passed++;
                        Console.WriteLine("PASS {0} ({1} ms)", t.Key, sw.ElapsedMilliseconds);
                    }
                    catch (Exception e)
                    {
                        failed++;
                        Console.WriteLine("FAIL {0}: {1}", t.Key, e is Failure ? e.Message : e.ToString());
                    }
                    finally
                    {
                        foreach (Form f in Application.OpenForms.Cast<Form>().ToList()) f.Dispose();
                        Thread.CurrentThread.CurrentUICulture = CultureInfo.GetCultureInfo("en-US");
                    }
                }
                if (shots != null)
                {
                    try
                    {
                        Screenshots(shots);
                        Console.WriteLine("screenshots written to " + shots);
                    }
                    catch (Exception e)
                    {
                        failed++;
                        Console.WriteLine("FAIL screenshots: " + e);
                    }
                }
            }
            Console.WriteLine("{0} passed, {1} failed", passed, failed);
            return failed == 0 ? 0 : 1;
        }

        private static KeyValuePair<string, Action> T(string name, Action a)
        {
            return new KeyValuePair<string, Action>(name, a);
        }

        // ---------------------------------------------------------------- helpers

        private static void True(bool c, string what)
        {
            if (!c) throw new Failure("expected: " + what);
        }

        private static void Equal<T>(T expected, T actual, string what)
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual)) throw new Failure(string.Format("{0}: expected <{1}>, got <{2}>", what, expected, actual));
        }

        private static string NewState()
        {
            return Path.Combine(tmp, "state" + (++stateCounter));
        }

        private static TelemetryClient Open(string state, string schema = null)
        {
            var c = TelemetryClient.Create(new TelemetryOptions
            {
                Product = "Mock Mail Archiver", ProductVersion = "5.2.1", Endpoint = collector.Url,
                StateDirectory = state, SchemaJson = schema ?? schemaV1,
            });
            c.Set("trial", false);
            c.Set("edition", "enterprise");
            c.Set("users", 37);
            c.Set("archived_items", 1234567);
            c.Set("profiles", new[] { "imap", "pst" });
            return c;
        }

        private static Consent FreshConsent(string state, string schema = null)
        {
            using (var c = Open(state, schema)) return c.Consent;
        }

        private static void Pump(int ms = 150)
        {
            var sw = Stopwatch.StartNew();
            do
            {
                Application.DoEvents();
                Thread.Sleep(10);
            } while (sw.ElapsedMilliseconds < ms);
        }

        private static T Find<T>(Control parent, string name) where T : Control
        {
            var found = parent.Controls.Find(name, true);
            True(found.Length == 1 && found[0] is T, "one " + typeof(T).Name + " named " + name + " in " + parent.Name + " (found " + found.Length + ")");
            return (T)found[0];
        }

        private static Form Host(UsageDataConsentPanel panel, float fontSize = 0)
        {
            var form = new Form { Name = "host", Text = "Settings", AutoScaleMode = AutoScaleMode.Font, AutoSize = true, AutoSizeMode = AutoSizeMode.GrowAndShrink, StartPosition = FormStartPosition.Manual, Location = new System.Drawing.Point(10, 10) };
            if (fontSize > 0) form.Font = new System.Drawing.Font(form.Font.FontFamily, fontSize);
            form.Padding = new Padding(8);
            form.Controls.Add(panel);
            form.Show();
            Pump();
            return form;
        }

        private static Form OpenForm(string name)
        {
            var sw = Stopwatch.StartNew();
            while (sw.ElapsedMilliseconds < 5000)
            {
                var f = Application.OpenForms.Cast<Form>().FirstOrDefault(x => x.Name == name && x.Visible);
                if (f != null) return f;
                Pump(20);
            }
            throw new Failure("no open window named " + name);
        }

        /// <summary>Ticks now, at the next due time if any, and 30 days ahead, flushing each time; returns how many reports the collector received meanwhile.</summary>
        private static int TickFarAheadAndCount(TelemetryClient c)
        {
            int before = collector.Count;
            // The first tick after consent schedules the report (at random within days); then
            // tick at its due time, and far beyond it (nothing may be due without consent).
            c.TickAt(DateTimeOffset.UtcNow);
            DateTimeOffset? due = c.GetStatus().NextDue;
            if (due.HasValue) c.TickAt(due.Value);
            c.Flush(TimeSpan.FromSeconds(10));
            c.TickAt(DateTimeOffset.UtcNow.AddDays(30));
            c.Flush(TimeSpan.FromSeconds(10));
            Thread.Sleep(300);
            return collector.Count - before;
        }

        // ---------------------------------------------------------------- tests

        private static void CheckingGrants()
        {
            string state = NewState();
            using (var c = Open(state))
            {
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    var box = Find<CheckBox>(panel, "consentCheckBox");
                    True(!box.Checked, "unchecked at first");
                    Equal(Consent.Undecided, FreshConsent(state), "undecided before the click");
                    Contains("Mock Mail Archiver", Find<Label>(panel, "introLabel").Text, "intro names the product");
                    box.Checked = true;
                    Pump();
                    Equal(Consent.Granted, FreshConsent(state), "consent on a fresh client on the same state_dir");
                    Equal(Consent.Granted, panel.Consent, "panel's consent");
                    True(box.Checked, "still checked");
                }
            }
        }

        private static void Contains(string needle, string hay, string what)
        {
            True(hay != null && hay.Contains(needle), what + ": <" + hay + "> contains <" + needle + ">");
        }

        private static void ViewDataShowsTheExactBytes()
        {
            using (var c = Open(NewState()))
            {
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    Find<Button>(panel, "viewDataButton").PerformClick();
                    Form data = OpenForm("UsageDataForm");
                    Pump();
                    var bytes = Find<TextBox>(data, "reportBytesTextBox");
                    Equal(c.PreviewJson(), bytes.Text, "bytes TextBox text");
                    True(bytes.ReadOnly && bytes.Multiline, "read-only, multi-line");
                    True(bytes.Font.FontFamily.Name.IndexOf("Mono", StringComparison.OrdinalIgnoreCase) >= 0 || bytes.Font.FontFamily.Name.IndexOf("Courier", StringComparison.OrdinalIgnoreCase) >= 0, "monospace font: " + bytes.Font.FontFamily.Name);
                    var table = Find<TableLayoutPanel>(data, "fieldsTable");
                    var texts = table.Controls.Cast<Control>().Select(x => x.Text).ToList();
                    foreach (ReportField f in c.DescribeReport("en").Fields)
                    {
                        True(texts.Contains(f.Name), "field " + f.Name + " listed");
                        if (f.Description != null) True(texts.Contains(f.Description), "description of " + f.Name);
                    }
                    True(texts.Contains("[imap, pst]"), "profiles as sent");
                    Contains("No report has been sent", Find<TextBox>(data, "sentReportsTextBox").Text, "sent reports");
                    Equal("&Close", ((Button)data.CancelButton).Text, "Esc closes (CancelButton)");
                    ((Button)data.CancelButton).PerformClick();
                    Pump();
                    True(data.IsDisposed || !data.Visible, "closed");
                }
            }
        }

        private static void UncheckingDeniesAndNothingIsSent()
        {
            string state = NewState();
            using (var c = Open(state))
            {
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    var box = Find<CheckBox>(panel, "consentCheckBox");
                    box.Checked = true;
                    Pump();
                    box.Checked = false;
                    Pump();
                    Equal(Consent.Denied, FreshConsent(state), "denied after unchecking");
                    Equal(0, TickFarAheadAndCount(c), "reports received by the collector");
                }
            }
        }

        private static void GrantedSendsOneReport()
        {
            string state = NewState();
            using (var c = Open(state))
            {
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    Find<CheckBox>(panel, "consentCheckBox").Checked = true;
                    Pump();
                    string preview = c.PreviewJson();
                    Equal(1, TickFarAheadAndCount(c), "reports received");
                    Equal(preview, Encoding.UTF8.GetString(collector.Body(collector.Count - 1)), "received body == preview");
                }
            }
        }

        private static void UndecidedSendsNothing()
        {
            using (var c = Open(NewState()))
            {
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    Equal(0, TickFarAheadAndCount(c), "reports received");
                }
            }
        }

        private static void OutdatedIsUncheckedWithChanges()
        {
            string state = NewState();
            using (var c = Open(state)) c.SetConsent(true);
            using (var c = Open(state, schemaV2))
            {
                Equal(Consent.Outdated, c.Consent, "outdated after the schema change");
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    True(!Find<CheckBox>(panel, "consentCheckBox").Checked, "unchecked");
                    var changes = Find<Label>(panel, "changesLabel");
                    True(changes.Visible, "changes line visible");
                    Contains("journaling", changes.Text, "changes line");
                    Equal(0, TickFarAheadAndCount(c), "reports received while outdated");
                }
            }
        }

        private static void ReloadsWhenShownAgain()
        {
            string state = NewState();
            using (var c = Open(state))
            {
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    var box = Find<CheckBox>(panel, "consentCheckBox");
                    True(!box.Checked, "unchecked");
                    using (var other = Open(state)) other.SetConsent(true);   // e.g. the service process
                    panel.Visible = false;
                    Pump(50);
                    panel.Visible = true;
                    Pump();
                    True(box.Checked, "checked after being shown again");
                    using (var other = Open(state)) other.SetConsent(false);
                    panel.Reload();
                    True(!box.Checked, "unchecked after Reload()");
                    Equal(Consent.Denied, panel.Consent, "panel's consent");
                }
            }
        }

        private static void SentReportsAreListed()
        {
            using (var c = Open(NewState()))
            {
                c.SetConsent(true);
                Equal(1, TickFarAheadAndCount(c), "one report sent");
                SentReport sent = c.GetSentReports()[0];
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    True(Find<CheckBox>(panel, "consentCheckBox").Checked, "checked when granted");
                    panel.ShowData();
                    Form data = OpenForm("UsageDataForm");
                    string text = Find<TextBox>(data, "sentReportsTextBox").Text;
                    Contains(sent.Body, text, "the exact bytes sent");
                    Contains("delivered (HTTP 204)", text, "outcome");
                    Equal(c.PreviewJson(), Find<TextBox>(data, "reportBytesTextBox").Text, "next report bytes");
                    Contains("Next report due", Find<Label>(data, "dueLabel").Text, "due line");
                }
            }
        }

        // Runs the modal dialog; `act` is called on the dialog once it is shown.
        private static bool RunDialog(TelemetryClient c, Action<UsageDataConsentDialog> act)
        {
            var timer = new System.Windows.Forms.Timer { Interval = 100 };
            Exception error = null;
            timer.Tick += (s, e) =>
            {
                var d = Application.OpenForms.Cast<Form>().OfType<UsageDataConsentDialog>().FirstOrDefault(x => x.Visible);
                if (d == null) return;
                timer.Stop();
                try { act(d); }
                catch (Exception ex) { error = ex; d.Close(); }
            };
            timer.Start();
            bool result = UsageDataConsentDialog.Show(null, c);
            timer.Dispose();
            if (error != null) throw error;
            return result;
        }

        private static void DialogCheckAndOk()
        {
            string state = NewState();
            using (var c = Open(state))
            {
                bool result = RunDialog(c, d =>
                {
                    var box = Find<CheckBox>(d, "consentCheckBox");
                    True(!box.Checked, "unchecked when the dialog opens");
                    Equal("okButton", ((Control)d.AcceptButton).Name, "AcceptButton");
                    box.Checked = true;
                    ((Button)d.AcceptButton).PerformClick();
                });
                True(result, "Show returned true");
                Equal(Consent.Granted, FreshConsent(state), "granted");
            }
        }

        private static void DialogEscape()
        {
            string state = NewState();
            using (var c = Open(state))
            {
                bool result = RunDialog(c, d =>
                {
                    Equal("cancelButton", ((Control)d.CancelButton).Name, "CancelButton");
                    ((Button)d.CancelButton).PerformClick();
                });
                True(!result, "Show returned false");
                Equal(Consent.Undecided, FreshConsent(state), "still undecided");
            }
        }

        private static void DialogOkUnchecked()
        {
            string state = NewState();
            using (var c = Open(state))
            {
                bool result = RunDialog(c, d => ((Button)d.AcceptButton).PerformClick());
                True(!result, "Show returned false");
                Equal(Consent.Denied, FreshConsent(state), "denied");
                Equal(0, TickFarAheadAndCount(c), "reports received");
            }
        }

        private static void GermanTexts()
        {
            Thread.CurrentThread.CurrentUICulture = CultureInfo.GetCultureInfo("de-AT");
            using (var c = Open(NewState()))
            {
                var panel = new UsageDataConsentPanel(c);
                using (Host(panel))
                {
                    Equal("&Daten einsehen\u2026", Find<Button>(panel, "viewDataButton").Text, "button");
                    Equal("&Anonyme Nutzungsstatistik senden", Find<CheckBox>(panel, "consentCheckBox").Text, "checkbox");
                    Contains("sendet Mock Mail Archiver", Find<Label>(panel, "introLabel").Text, "intro");
                    panel.ShowData();
                    Form data = OpenForm("UsageDataForm");
                    var texts = Find<TableLayoutPanel>(data, "fieldsTable").Controls.Cast<Control>().Select(x => x.Text).ToList();
                    True(texts.Contains("Ob diese Installation mit einer Testlizenz läuft."), "German schema description with umlaut");
                    Equal("&Schließen", ((Button)data.CancelButton).Text, "close button");
                }
            }
        }

        private static void KeyboardAndScaling()
        {
            foreach (string culture in new[] { "en-US", "de-DE" })
            {
                Thread.CurrentThread.CurrentUICulture = CultureInfo.GetCultureInfo(culture);
                foreach (float size in new[] { 8.25f, 16.5f })
                {
                    string state = NewState();
                    using (var g = Open(state)) g.SetConsent(true);
                    using (var c = Open(state, schemaV2))
                    {
                        var panel = new UsageDataConsentPanel(c);
                        using (Host(panel, size))
                        {
                            var box = Find<CheckBox>(panel, "consentCheckBox");
                            var button = Find<Button>(panel, "viewDataButton");
                            True(box.TabIndex < button.TabIndex, "tab order: checkbox, then View data");
                            True(box.Text.IndexOf('&') >= 0 && button.Text.IndexOf('&') >= 0, "access keys");
                            foreach (Control ctl in new Control[] { box, button, Find<Label>(panel, "introLabel"), Find<Label>(panel, "changesLabel") })
                            {
                                var pref = ctl.GetPreferredSize(ctl is Label ? new System.Drawing.Size(ctl.MaximumSize.Width, 0) : System.Drawing.Size.Empty);
                                True(ctl.Width >= pref.Width && ctl.Height >= pref.Height,
                                    string.Format("{0} at {1} pt ({2}): size {3} holds its text ({4})", ctl.Name, size, culture, ctl.Size, pref));
                                True(panel.ClientRectangle.Contains(panel.RectangleToClient(ctl.RectangleToScreen(ctl.ClientRectangle))),
                                    ctl.Name + " inside the panel");
                            }
                            if (size > 10) True(box.Height > 20 && panel.Width > 500, "grows with the font: " + box.Height + ", " + panel.Width);
                        }
                    }
                }
            }
        }

        // ---------------------------------------------------------------- screenshots

        private static void Screenshots(string dir)
        {
            Directory.CreateDirectory(dir);
            foreach (string lang in new[] { "en", "de" })
            {
                Thread.CurrentThread.CurrentUICulture = CultureInfo.GetCultureInfo(lang == "de" ? "de-DE" : "en-US");
                Thread.CurrentThread.CurrentCulture = CultureInfo.GetCultureInfo(lang == "de" ? "de-DE" : "en-US");
                string state = NewState();
                using (var c = Open(state)) { c.SetConsent(true); TickFarAheadAndCount(c); }
                using (var c = Open(state, schemaV2))
                {
                    c.Set("journaling", true);
                    var panel = new UsageDataConsentPanel(c);
                    using (var host = Host(panel))
                    {
                        Pump(500);
                        Capture(host, Path.Combine(dir, "consent-panel-" + lang + ".png"));
                        Form data = panel.ShowData();
                        data.StartPosition = FormStartPosition.Manual;
                        data.Location = new System.Drawing.Point(10, 10);
                        Pump(800);
                        Capture(data, Path.Combine(dir, "consent-data-" + lang + ".png"));
                        data.Close();
                    }
                }
            }
            Thread.CurrentThread.CurrentCulture = CultureInfo.InvariantCulture;
        }

        private static void Capture(Form form, string png)
        {
            form.Activate();
            form.BringToFront();
            Pump(300);
            var b = form.RectangleToScreen(form.ClientRectangle);   // no window manager on Xvfb: no frame to show
            string xwd = Path.Combine(tmp, "screen.xwd");
            Run("xwd", "-root -silent -out \"" + xwd + "\"");
            string convert = Environment.GetEnvironmentVariable("CONVERT") ?? "convert";
            Run(convert, string.Format(CultureInfo.InvariantCulture, "\"{0}\" -crop {1}x{2}+{3}+{4} +repage \"{5}\"", xwd, b.Width, b.Height, b.X, b.Y, png));
        }

        private static void Run(string exe, string args)
        {
            var p = Process.Start(new ProcessStartInfo(exe, args) { UseShellExecute = false });
            p.WaitForExit();
            if (p.ExitCode != 0) throw new Failure(exe + " " + args + " exited with " + p.ExitCode);
        }
    }
}
