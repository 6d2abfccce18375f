// A sample WinForms host: the archiver's own "Settings" window with a "Privacy" tab
// that holds OptInTelemetry.WinForms' UsageDataConsentPanel, and the first-run
// question asked with UsageDataConsentDialog.Show when the user has not answered yet.
//
// (In its own folder: scripts/test-dotnet compiles examples/dotnet/*.cs into Archiver.exe.)
//
//   mono SettingsPage.exe [--state DIR] [--endpoint URL] [--ask] [--smoke]
//
// --ask     shows the first-run dialog before the settings window (while undecided)
// --smoke   shows the settings window, prints one "smoke:" line and closes (for tests)
//
// Build (Mono): mcs -r:OptInTelemetry.dll -r:OptInTelemetry.WinForms.dll
//               -r:System.Windows.Forms.dll -r:System.Drawing.dll -target:winexe SettingsPage.cs
using System;
using System.Drawing;
using System.IO;
using System.Windows.Forms;
using OptInTelemetry;
using OptInTelemetry.WinForms;

namespace MockArchiver
{
    public sealed class SettingsWindow : Form
    {
        public readonly UsageDataConsentPanel Privacy;

        public SettingsWindow(TelemetryClient telemetry)
        {
            Text = "Mock Mail Archiver \u2013 Settings";
            AutoScaleMode = AutoScaleMode.Font;
            AutoSize = true;
            AutoSizeMode = AutoSizeMode.GrowAndShrink;
            StartPosition = FormStartPosition.CenterScreen;

            var tabs = new TabControl { Dock = DockStyle.Fill };
            var general = new TabPage("General");
            general.Controls.Add(new CheckBox { Text = "&Archive sent items", AutoSize = true, Location = new Point(12, 12) });
            var privacy = new TabPage("Privacy") { Padding = new Padding(8) };
            Privacy = new UsageDataConsentPanel(telemetry) { Dock = DockStyle.Top };   // the panel reads the consent each time it is shown
            privacy.Controls.Add(Privacy);
            tabs.TabPages.Add(general);
            tabs.TabPages.Add(privacy);
            tabs.SelectedTab = privacy;

            var close = new Button { Text = "Close", AutoSize = true, DialogResult = DialogResult.Cancel, Anchor = AnchorStyles.Right };
            var layout = new TableLayoutPanel { AutoSize = true, AutoSizeMode = AutoSizeMode.GrowAndShrink, ColumnCount = 1, Dock = DockStyle.Fill, Padding = new Padding(8) };
            layout.Controls.Add(tabs, 0, 0);
            layout.Controls.Add(close, 0, 1);
            Controls.Add(layout);
            CancelButton = close;
            tabs.MinimumSize = new Size(Privacy.PreferredSize.Width + 32, Privacy.PreferredSize.Height + 48);
        }
    }

    public static class Program
    {
        // What the archiver reports (the same schema as examples/archiver-schema.json, shortened).
        private const string Schema = @"{""version"": 1, ""fields"": [
  {""name"": ""edition"", ""type"": ""choice"", ""values"": [""standard"", ""enterprise"", ""smb""],
   ""description"": {""en"": ""Licensed edition."", ""de"": ""Lizenzierte Edition.""}},
  {""name"": ""users"", ""type"": ""count"", ""buckets"": [1, 5, 10, 25, 50, 100],
   ""description"": {""en"": ""Number of archive users, as a range."", ""de"": ""Anzahl der Archivbenutzer, als Bereich.""}}
]}";

        [STAThread]
        public static int Main(string[] args)
        {
            string state = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "MockArchiver", "telemetry");
            string endpoint = "http://127.0.0.1:9/v1/report";   // nothing listens: this sample sends nothing anywhere
            bool smoke = false, ask = false;
            for (int i = 0; i < args.Length; i++)
            {
                if (args[i] == "--state") state = args[++i];
                else if (args[i] == "--endpoint") endpoint = args[++i];
                else if (args[i] == "--smoke") smoke = true;
                else if (args[i] == "--ask") ask = true;
                else { Console.Error.WriteLine("usage: SettingsPage.exe [--state DIR] [--endpoint URL] [--ask] [--smoke]"); return 64; }
            }
            Application.EnableVisualStyles();
            TelemetryClient telemetry;
            try
            {
                telemetry = TelemetryClient.Create(new TelemetryOptions
                {
                    Product = "Mock Mail Archiver", ProductVersion = "5.2.1", Endpoint = endpoint, StateDirectory = state,
                    SchemaJson = Schema,
                });
            }
            catch (Exception e) when (e is TelemetryException || e is DllNotFoundException)
            {
                Console.Error.WriteLine("telemetry unavailable: " + e.Message);   // the host runs on without it
                telemetry = null;
            }
            using (telemetry)
            {
                if (telemetry != null)
                {
                    telemetry.Set("edition", "enterprise");
                    telemetry.Set("users", 37);
                    if (ask && (telemetry.Consent == Consent.Undecided || telemetry.Consent == Consent.Outdated))
                    {
                        bool granted = UsageDataConsentDialog.Show(null, telemetry);
                        Console.WriteLine("first-run answer: " + (granted ? "granted" : "not granted") + " (" + telemetry.Consent + ")");
                    }
                }
                using (var window = new SettingsWindow(telemetry))
                {
                    if (smoke)
                    {
                        window.Shown += (s, e) =>
                        {
                            var box = (CheckBox)window.Privacy.Controls.Find("consentCheckBox", true)[0];
                            Console.WriteLine("smoke: shown, consent {0}, checkbox {1}", window.Privacy.Consent, box.Checked ? "checked" : "unchecked");
                            var t = new Timer { Interval = 300 };
                            t.Tick += (o, a) => { t.Stop(); window.Close(); };
                            t.Start();
                        };
                    }
                    Application.Run(window);
                }
                if (telemetry != null) telemetry.Tick();   // a real host ticks from a timer, e.g. once a minute
            }
            return 0;
        }
    }
}
