using System;
using System.Collections;
using System.Collections.Generic;
using System.Drawing;
using System.Globalization;
using System.Text;
using System.Windows.Forms;

namespace OptInTelemetry.WinForms
{
    /// <summary>
    /// The "View data…" window: every field of the next report with its description and value as
    /// sent, the exact bytes of <see cref="TelemetryClient.PreviewJson"/> (read-only, copyable),
    /// and the reports already sent (when, outcome, exact bytes). Named "UsageDataForm"; its text
    /// boxes are "reportBytesTextBox" and "sentReportsTextBox".
    /// </summary>
    internal sealed class UsageDataForm : Form
    {
        internal UsageDataForm(TelemetryClient client, UsageDataStrings s)
        {
            ReportDescription d = client.DescribeReport(s.Language);
            string preview = client.PreviewJson();
            IReadOnlyList<SentReport> sent = client.GetSentReports();

            SuspendLayout();
            Name = "UsageDataForm";
            Text = string.Format(s.DataTitle, d.Product);
            AutoScaleMode = AutoScaleMode.Font;
            StartPosition = FormStartPosition.CenterParent;
            ShowInTaskbar = false;
            MinimizeBox = false;
            KeyPreview = true;
            int em = Font.Height;
            ClientSize = new Size(em * 46, em * 40);
            MinimumSize = new Size(em * 24, em * 20);

            var table = new TableLayoutPanel { Name = "layout", Dock = DockStyle.Fill, ColumnCount = 1, Padding = new Padding(8) };
            table.ColumnStyles.Add(new ColumnStyle(SizeType.Percent, 100));
            int wrap = em * 44;

            var heading = new Label { Name = "headingLabel", AutoSize = true, MaximumSize = new Size(wrap, 0), Text = string.Format(s.DataHeading, d.Endpoint) };
            var due = new Label
            {
                Name = "dueLabel", AutoSize = true, MaximumSize = new Size(wrap, 0),
                Text = d.NextReportDue.HasValue
                    ? string.Format(s.NextDue, d.NextReportDue.Value.ToLocalTime().ToString("g", CultureInfo.CurrentCulture))
                    : s.NotDue,
            };

            // Field | Description | Value as sent: labels in a grid, so long descriptions wrap.
            var fields = new TableLayoutPanel
            {
                Name = "fieldsTable", AutoSize = true, AutoSizeMode = AutoSizeMode.GrowAndShrink, ColumnCount = 3,
                CellBorderStyle = TableLayoutPanelCellBorderStyle.Single, Margin = new Padding(3, 6, 3, 6),
            };
            for (int i = 0; i < 3; i++) fields.ColumnStyles.Add(new ColumnStyle(SizeType.AutoSize));
            var bold = new Font(Font, FontStyle.Bold);
            AddRow(fields, bold, wrap, s.ColumnField, s.ColumnDescription, s.ColumnValue);
            foreach (ReportField f in d.Fields)
            {
                AddRow(fields, null, wrap, f.Name, f.Description ?? "", f.Value == null ? s.NotSet : FormatValue(f.Value));
            }

            var bytesLabel = new Label { Name = "bytesLabel", AutoSize = true, Text = s.BytesLabel, Margin = new Padding(3, 6, 3, 0) };
            var bytes = NewBytesBox("reportBytesTextBox", preview);
            var sentLabel = new Label { Name = "sentLabel", AutoSize = true, Text = s.SentLabel, Margin = new Padding(3, 6, 3, 0) };
            var sentBox = NewBytesBox("sentReportsTextBox", FormatSent(sent, s));

            var buttons = new FlowLayoutPanel
            {
                Name = "buttons", AutoSize = true, AutoSizeMode = AutoSizeMode.GrowAndShrink,
                FlowDirection = FlowDirection.RightToLeft, Dock = DockStyle.Fill, WrapContents = false, Margin = new Padding(0),
            };
            var close = new Button { Name = "closeButton", AutoSize = true, Text = s.Close, DialogResult = DialogResult.Cancel, Padding = new Padding(6, 0, 6, 0) };
            close.Click += (o, e) => Close();
            var copy = new Button { Name = "copyButton", AutoSize = true, Text = s.Copy, Padding = new Padding(6, 0, 6, 0) };
            copy.Click += (o, e) => { bytes.Focus(); bytes.SelectAll(); bytes.Copy(); };
            buttons.Controls.Add(close);
            buttons.Controls.Add(copy);

            var fieldsScroll = new Panel { Name = "fieldsPanel", AutoScroll = true, Dock = DockStyle.Fill, Margin = new Padding(0) };
            fieldsScroll.Controls.Add(fields);

            table.RowCount = 8;
            table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            table.RowStyles.Add(new RowStyle(SizeType.Percent, 50));
            table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            table.RowStyles.Add(new RowStyle(SizeType.Percent, 25));
            table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            table.RowStyles.Add(new RowStyle(SizeType.Percent, 25));
            table.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            table.Controls.Add(heading, 0, 0);
            table.Controls.Add(due, 0, 1);
            table.Controls.Add(fieldsScroll, 0, 2);
            table.Controls.Add(bytesLabel, 0, 3);
            table.Controls.Add(bytes, 0, 4);
            table.Controls.Add(sentLabel, 0, 5);
            table.Controls.Add(sentBox, 0, 6);
            table.Controls.Add(buttons, 0, 7);
            Controls.Add(table);

            // Tab order: the bytes, the sent reports, Copy, Close. Esc and Enter close.
            bytes.TabIndex = 0;
            sentBox.TabIndex = 1;
            buttons.TabIndex = 2;
            copy.TabIndex = 0;
            close.TabIndex = 1;
            CancelButton = close;
            AcceptButton = close;
            ResumeLayout(true);

            // Tall enough to show every field without scrolling when the screen allows it.
            int wanted = fields.PreferredSize.Height + em * 24;
            int screen = Screen.PrimaryScreen.WorkingArea.Height * 9 / 10;
            ClientSize = new Size(Math.Max(ClientSize.Width, fields.PreferredSize.Width + em * 3), Math.Max(MinimumSize.Height, Math.Min(wanted, screen)));
            table.RowStyles[2] = new RowStyle(SizeType.Absolute, Math.Min(fields.PreferredSize.Height + 8, Math.Max(em * 8, screen - em * 24)));
            table.RowStyles[4] = new RowStyle(SizeType.Percent, 50);
            table.RowStyles[6] = new RowStyle(SizeType.Percent, 50);
            Shown += (o, e) => { bytes.SelectionStart = 0; bytes.SelectionLength = 0; sentBox.SelectionStart = 0; sentBox.SelectionLength = 0; };
        }

        internal static string FormatValue(object v)
        {
            if (v is bool) return (bool)v ? "true" : "false";
            var list = v as IEnumerable;
            if (list != null && !(v is string))
            {
                var parts = new List<string>();
                foreach (object x in list) parts.Add(Convert.ToString(x, CultureInfo.InvariantCulture));
                return "[" + string.Join(", ", parts) + "]";
            }
            return Convert.ToString(v, CultureInfo.InvariantCulture);
        }

        private static string FormatSent(IReadOnlyList<SentReport> sent, UsageDataStrings s)
        {
            if (sent.Count == 0) return s.NoneSent;
            var sb = new StringBuilder();
            foreach (SentReport r in sent)
            {
                if (sb.Length > 0) sb.Append("\r\n\r\n");
                string when = r.At.HasValue ? r.At.Value.ToLocalTime().ToString("g", CultureInfo.CurrentCulture) : "?";
                string http = r.HttpStatus.HasValue ? " (HTTP " + r.HttpStatus.Value.ToString(CultureInfo.InvariantCulture) + ")" : "";
                sb.Append(string.Format(s.SentLine, when, s.OutcomeName(r.Outcome), http)).Append("\r\n");
                sb.Append(r.Body ?? string.Format(s.LargeBody, r.BodyLength, r.BodySha256));
            }
            return sb.ToString();
        }

        private TextBox NewBytesBox(string name, string text)
        {
            return new TextBox
            {
                Name = name,
                Multiline = true,
                ReadOnly = true,
                WordWrap = true,
                ScrollBars = ScrollBars.Vertical,
                Dock = DockStyle.Fill,
                Font = new Font(FontFamily.GenericMonospace, Font.SizeInPoints, GraphicsUnit.Point),
                Text = text,
            };
        }

        private static void AddRow(TableLayoutPanel t, Font font, int wrap, string a, string b, string c)
        {
            int row = t.RowCount;
            t.RowCount = row + 1;
            t.RowStyles.Add(new RowStyle(SizeType.AutoSize));
            string[] texts = { a, b, c };
            int[] widths = { wrap / 4, wrap / 2, wrap / 4 };
            for (int i = 0; i < 3; i++)
            {
                var l = new Label { AutoSize = true, UseMnemonic = false, Text = texts[i], MaximumSize = new Size(widths[i], 0), Margin = new Padding(3) };
                if (font != null) l.Font = font;
                t.Controls.Add(l, i, row);
            }
        }
    }
}
