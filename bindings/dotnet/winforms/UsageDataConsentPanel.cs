using System;
using System.Collections.Generic;
using System.Drawing;
using System.Windows.Forms;

namespace OptInTelemetry.WinForms
{
    /// <summary>
    /// The opt-in for anonymous usage statistics, for a host's own settings page: one sentence of
    /// what is collected and why, a checkbox that is never checked unless the consent in force is
    /// <see cref="OptInTelemetry.Consent.Granted"/> (an outdated "yes" shows unchecked, with a line
    /// saying what changed), and a "View data…" button that opens the exact next report and the
    /// reports already sent.
    /// </summary>
    /// <remarks>
    /// Checking or unchecking the box calls <see cref="TelemetryClient.SetConsent"/> at once.
    /// The panel reads the consent again whenever it becomes visible and on <see cref="Reload"/>,
    /// so a change made elsewhere (a policy, another process on the same state directory) shows.
    /// Texts follow <see cref="System.Globalization.CultureInfo.CurrentUICulture"/> when the client
    /// is set (English or German; English for other languages). Telemetry errors never escape:
    /// the panel then shows the error and disables the checkbox.
    /// </remarks>
    public class UsageDataConsentPanel : UserControl
    {
        private readonly TableLayoutPanel table;
        private readonly Label introLabel;
        private readonly Label changesLabel;
        private readonly Label blockedLabel;
        private readonly CheckBox consentCheckBox;
        private readonly Button viewDataButton;
        private TelemetryClient client;
        private UsageDataStrings strings;
        private bool loading;

        /// <summary>Creates an empty panel; set <see cref="Client"/> before it is shown.</summary>
        public UsageDataConsentPanel() : this(null)
        {
        }

        /// <summary>Creates the panel for <paramref name="client"/>.</summary>
        public UsageDataConsentPanel(TelemetryClient client)
        {
            SuspendLayout();
            AutoScaleMode = AutoScaleMode.Font;
            AutoSize = true;
            AutoSizeMode = AutoSizeMode.GrowAndShrink;
            Name = "UsageDataConsentPanel";

            table = new TableLayoutPanel
            {
                Name = "layout",
                AutoSize = true,
                AutoSizeMode = AutoSizeMode.GrowAndShrink,
                ColumnCount = 1,
                Dock = DockStyle.Fill,
                Margin = new Padding(0),
            };
            table.ColumnStyles.Add(new ColumnStyle(SizeType.AutoSize));

            introLabel = NewWrappingLabel("introLabel");
            changesLabel = NewWrappingLabel("changesLabel");
            changesLabel.Visible = false;
            blockedLabel = NewWrappingLabel("blockedLabel");
            blockedLabel.Visible = false;
            consentCheckBox = new CheckBox
            {
                Name = "consentCheckBox",
                AutoSize = true,
                Checked = false,
                UseMnemonic = true,
                Margin = new Padding(3, 6, 3, 3),
            };
            consentCheckBox.CheckedChanged += OnCheckedChanged;
            viewDataButton = new Button
            {
                Name = "viewDataButton",
                AutoSize = true,
                AutoSizeMode = AutoSizeMode.GrowAndShrink,
                UseMnemonic = true,
                Padding = new Padding(6, 0, 6, 0),
            };
            viewDataButton.Click += (s, e) => ShowData();

            table.Controls.Add(introLabel, 0, 0);
            table.Controls.Add(changesLabel, 0, 1);
            table.Controls.Add(blockedLabel, 0, 2);
            table.Controls.Add(consentCheckBox, 0, 3);
            table.Controls.Add(viewDataButton, 0, 4);
            table.RowCount = 5;
            for (int i = 0; i < table.RowCount; i++) table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            consentCheckBox.TabIndex = 0;
            viewDataButton.TabIndex = 1;
            Controls.Add(table);
            ResumeLayout(true);

            Client = client;
        }

        /// <summary>The client whose consent the panel shows and sets; setting it reloads the panel.</summary>
        public TelemetryClient Client
        {
            get { return client; }
            set
            {
                client = value;
                Reload();
            }
        }

        /// <summary>Raised after the user's click changed the consent (the new state is in <see cref="Consent"/>).</summary>
        public event EventHandler ConsentChanged;

        /// <summary>The consent in force as last read (or set) by the panel.</summary>
        public Consent Consent { get; private set; }

        /// <summary>The description the panel shows (DescribeReport in the panel's language), or null.</summary>
        public ReportDescription Description { get; private set; }

        /// <summary>The language of the panel's texts and of the schema descriptions it asks for ("en" or "de").</summary>
        public string Language
        {
            get { return strings == null ? UsageDataStrings.ForCurrentCulture().Language : strings.Language; }
        }

        /// <summary>
        /// Reads the consent and description again and updates every text (the language follows
        /// the current UI culture). Called when the panel becomes visible.
        /// </summary>
        public void Reload()
        {
            strings = UsageDataStrings.ForCurrentCulture();
            consentCheckBox.Text = strings.CheckBox;
            viewDataButton.Text = strings.ViewData;
            SetWrapWidth();
            loading = true;
            try
            {
                if (client == null)
                {
                    Description = null;
                    Consent = Consent.Undecided;
                    introLabel.Text = string.Format(strings.Intro, "");
                    consentCheckBox.Checked = false;
                    consentCheckBox.Enabled = false;
                    viewDataButton.Enabled = false;
                    changesLabel.Visible = false;
                    blockedLabel.Visible = false;
                    return;
                }
                ReportDescription d = client.DescribeReport(strings.Language);
                Description = d;
                Consent = d.Consent.State;
                introLabel.Text = string.Format(strings.Intro, d.Product);
                consentCheckBox.Enabled = true;
                viewDataButton.Enabled = true;
                // Checked only for a "yes" in force: never for undecided, denied or outdated.
                consentCheckBox.Checked = Consent == Consent.Granted;
                string changes = Consent == Consent.Outdated ? DescribeChanges(d.Consent.Changes, strings) : null;
                changesLabel.Text = changes == null ? "" : string.Format(strings.Outdated, changes);
                changesLabel.Visible = changes != null;
                blockedLabel.Text = d.BlockedBy == null ? "" : string.Format(strings.Blocked, d.BlockedBy);
                blockedLabel.Visible = d.BlockedBy != null;
            }
            catch (Exception e) when (e is TelemetryException || e is ObjectDisposedException || e is DllNotFoundException)
            {
                ShowUnavailable(e);
            }
            finally
            {
                loading = false;
            }
        }

        /// <summary>Opens the "View data…" window (the exact next report and the reports already sent) owned by the panel's form.</summary>
        public Form ShowData()
        {
            if (client == null) return null;
            try
            {
                var form = new UsageDataForm(client, strings ?? UsageDataStrings.ForCurrentCulture());
                form.Show(FindForm());
                return form;
            }
            catch (Exception e) when (e is TelemetryException || e is ObjectDisposedException)
            {
                ShowUnavailable(e);
                return null;
            }
        }

        /// <inheritdoc />
        protected override void OnVisibleChanged(EventArgs e)
        {
            base.OnVisibleChanged(e);
            if (Visible) Reload();
        }

        /// <inheritdoc />
        protected override void OnFontChanged(EventArgs e)
        {
            base.OnFontChanged(e);
            SetWrapWidth();
        }

        internal static string DescribeChanges(ConsentChanges c, UsageDataStrings s)
        {
            if (c == null) return "";
            var parts = new List<string>();
            if (c.Added != null && c.Added.Count > 0) parts.Add(string.Format(s.Added, string.Join(", ", c.Added)));
            if (c.Removed != null && c.Removed.Count > 0) parts.Add(string.Format(s.Removed, string.Join(", ", c.Removed)));
            if (c.Changed != null && c.Changed.Count > 0) parts.Add(string.Format(s.Changed, string.Join(", ", c.Changed)));
            if (c.BuiltInsChanged) parts.Add(s.BuiltIns);
            if (c.ProductChanged) parts.Add(string.Format(s.Product, c.FromProduct, c.ToProduct));
            if (c.EndpointChanged) parts.Add(string.Format(s.Endpoint, c.FromEndpoint, c.ToEndpoint));
            return string.Join("; ", parts);
        }

        private void ShowUnavailable(Exception e)
        {
            loading = true;
            consentCheckBox.Checked = false;
            loading = false;
            consentCheckBox.Enabled = false;
            viewDataButton.Enabled = false;
            changesLabel.Visible = false;
            blockedLabel.Text = string.Format((strings ?? UsageDataStrings.ForCurrentCulture()).Unavailable, e.Message);
            blockedLabel.Visible = true;
        }

        private void OnCheckedChanged(object sender, EventArgs e)
        {
            if (loading || client == null) return;
            bool wanted = consentCheckBox.Checked;
            try
            {
                client.SetConsent(wanted);
            }
            catch (Exception ex) when (ex is TelemetryException || ex is ObjectDisposedException)
            {
                ShowUnavailable(ex);
                return;
            }
            Reload();
            var handler = ConsentChanged;
            if (handler != null) handler(this, EventArgs.Empty);
        }

        // Wrapping labels: as wide as about 60 average characters of the current font, so the
        // panel grows with the font (AutoScaleMode.Font, 100-200 % DPI) and never cuts text.
        private void SetWrapWidth()
        {
            int width = Math.Max(200, (int)(Font.Size * 40 * (Font.Unit == GraphicsUnit.Point ? 96f / 72f : 1f)));
            foreach (Label l in new[] { introLabel, changesLabel, blockedLabel })
            {
                l.MaximumSize = new Size(width, 0);
            }
        }

        private static Label NewWrappingLabel(string name)
        {
            return new Label { Name = name, AutoSize = true, UseMnemonic = false, Margin = new Padding(3, 3, 3, 3) };
        }
    }
}
