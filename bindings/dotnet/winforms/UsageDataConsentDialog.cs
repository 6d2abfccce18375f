using System;
using System.Drawing;
using System.Windows.Forms;

namespace OptInTelemetry.WinForms
{
    /// <summary>
    /// The first-run question as a modal dialog: a <see cref="UsageDataConsentPanel"/> with OK and
    /// Cancel. Use <see cref="Show(IWin32Window, TelemetryClient)"/>.
    /// </summary>
    /// <remarks>
    /// The checkbox is unchecked when the dialog opens unless consent is already granted; checking
    /// or unchecking it calls <see cref="TelemetryClient.SetConsent"/> at once (as in the panel).
    /// OK (Enter) with the box unchecked records the answer "no" when the user had not answered
    /// yet (or the earlier "yes" is outdated): <see cref="TelemetryClient.SetConsent"/>(false).
    /// Cancel (Esc, or closing the window) records nothing more, so an undecided user stays
    /// undecided and may be asked again later.
    /// </remarks>
    public class UsageDataConsentDialog : Form
    {
        private readonly UsageDataConsentPanel panel;
        private readonly TelemetryClient client;

        /// <summary>Creates the dialog for <paramref name="client"/> (texts in the current UI culture's language).</summary>
        public UsageDataConsentDialog(TelemetryClient client)
        {
            if (client == null) throw new ArgumentNullException("client");
            this.client = client;
            var s = UsageDataStrings.ForCurrentCulture();
            SuspendLayout();
            Name = "UsageDataConsentDialog";
            AutoScaleMode = AutoScaleMode.Font;
            AutoSize = true;
            AutoSizeMode = AutoSizeMode.GrowAndShrink;
            FormBorderStyle = FormBorderStyle.FixedDialog;
            MaximizeBox = false;
            MinimizeBox = false;
            ShowInTaskbar = false;
            StartPosition = FormStartPosition.CenterParent;
            Padding = new Padding(8);

            panel = new UsageDataConsentPanel(client) { Name = "consentPanel", TabIndex = 0 };
            var ok = new Button { Name = "okButton", Text = s.Ok, AutoSize = true, DialogResult = DialogResult.OK, MinimumSize = new Size(Font.Height * 5, 0), TabIndex = 0 };
            var cancel = new Button { Name = "cancelButton", Text = s.Cancel, AutoSize = true, DialogResult = DialogResult.Cancel, MinimumSize = new Size(Font.Height * 5, 0), TabIndex = 1 };
            var buttons = new FlowLayoutPanel
            {
                Name = "buttons", AutoSize = true, AutoSizeMode = AutoSizeMode.GrowAndShrink, FlowDirection = FlowDirection.LeftToRight,
                WrapContents = false, Anchor = AnchorStyles.Right, Margin = new Padding(0, 8, 0, 0), TabIndex = 1,
            };
            buttons.Controls.Add(ok);
            buttons.Controls.Add(cancel);
            var table = new TableLayoutPanel
            {
                Name = "layout", AutoSize = true, AutoSizeMode = AutoSizeMode.GrowAndShrink, ColumnCount = 1, RowCount = 2, Dock = DockStyle.Fill,
            };
            table.ColumnStyles.Add(new ColumnStyle(SizeType.AutoSize));
            table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            table.Controls.Add(panel, 0, 0);
            table.Controls.Add(buttons, 0, 1);
            Controls.Add(table);
            AcceptButton = ok;
            CancelButton = cancel;
            Text = string.Format(s.DialogTitle, panel.Description != null ? panel.Description.Product : "");
            ResumeLayout(true);
        }

        /// <summary>The panel inside the dialog.</summary>
        public UsageDataConsentPanel Panel
        {
            get { return panel; }
        }

        /// <inheritdoc />
        protected override void OnFormClosing(FormClosingEventArgs e)
        {
            base.OnFormClosing(e);
            if (e.Cancel || DialogResult != DialogResult.OK) return;
            try
            {
                Consent now = client.Consent;
                if (now == Consent.Undecided || now == Consent.Outdated) client.SetConsent(false);
            }
            catch (Exception ex) when (ex is TelemetryException || ex is ObjectDisposedException)
            {
                // Telemetry never takes the host down; the answer is simply not recorded.
            }
        }

        /// <summary>
        /// Shows the consent question modally over <paramref name="owner"/> (may be null).
        /// Returns true when consent is granted once the dialog has closed (the user checked the
        /// box and pressed OK or closed the window), false otherwise. OK with the box unchecked
        /// records "no"; Cancel/Esc leaves an undecided user undecided (see the class remarks).
        /// Telemetry errors are caught: the dialog then says telemetry is unavailable and this
        /// returns false.
        /// </summary>
        public static bool Show(IWin32Window owner, TelemetryClient client)
        {
            if (client == null) throw new ArgumentNullException("client");
            using (var dialog = new UsageDataConsentDialog(client))
            {
                dialog.ShowDialog(owner);
            }
            try
            {
                return client.Consent == Consent.Granted;
            }
            catch (Exception e) when (e is TelemetryException || e is ObjectDisposedException)
            {
                return false;
            }
        }
    }
}
