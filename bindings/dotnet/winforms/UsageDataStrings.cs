using System;
using System.Globalization;

namespace OptInTelemetry.WinForms
{
    /// <summary>
    /// The texts of the consent panel, dialog and "View data…" window, in English and German.
    /// The language follows <see cref="CultureInfo.CurrentUICulture"/> (German for any "de-*"
    /// culture, English for everything else).
    /// </summary>
    internal sealed class UsageDataStrings
    {
        internal string Language;
        internal string Intro;            // {0} product
        internal string CheckBox;
        internal string ViewData;
        internal string Outdated;         // {0} list of changes
        internal string Added, Removed, Changed, BuiltIns, Product, Endpoint;
        internal string Blocked;          // {0} why
        internal string Unavailable;      // {0} error
        internal string DialogTitle;      // {0} product
        internal string Ok, Cancel, Close;
        internal string DataTitle;        // {0} product
        internal string DataHeading;      // {0} endpoint
        internal string ColumnField, ColumnDescription, ColumnValue;
        internal string NotSet;
        internal string NextDue;          // {0} time
        internal string NotDue;
        internal string BytesLabel;
        internal string SentLabel;
        internal string NoneSent;
        internal string SentLine;         // {0} time, {1} outcome, {2} http status or ""
        internal string LargeBody;        // {0} length, {1} sha256
        internal string Copy;

        internal static UsageDataStrings ForCurrentCulture()
        {
            return For(CultureInfo.CurrentUICulture);
        }

        internal static UsageDataStrings For(CultureInfo culture)
        {
            string lang = culture == null ? "" : culture.TwoLetterISOLanguageName;
            return string.Equals(lang, "de", StringComparison.OrdinalIgnoreCase) ? German() : English();
        }

        private static UsageDataStrings English()
        {
            return new UsageDataStrings
            {
                Language = "en",
                Intro = "If you agree, {0} sends a short anonymous report about once a week (counts, ranges and settings such as the edition, never names, e-mail addresses or contents) so that its makers learn which versions and features are in use; \u201cView data\u2026\u201d shows every value exactly as it would be sent.",
                CheckBox = "&Send anonymous usage statistics",
                ViewData = "&View data\u2026",
                Outdated = "You agreed to an earlier version of this report; it has changed since ({0}), so nothing is sent until you agree again.",
                Added = "added: {0}",
                Removed = "removed: {0}",
                Changed = "changed: {0}",
                BuiltIns = "the built-in fields changed",
                Product = "product: {0} \u2192 {1}",
                Endpoint = "destination: {0} \u2192 {1}",
                Blocked = "Nothing is sent on this computer whatever you choose: {0}.",
                Unavailable = "Usage statistics are not available: {0}",
                DialogTitle = "{0} \u2013 usage statistics",
                Ok = "OK",
                Cancel = "Cancel",
                Close = "&Close",
                DataTitle = "{0} \u2013 usage data",
                DataHeading = "The next report, sent to {0}:",
                ColumnField = "Field",
                ColumnDescription = "Description",
                ColumnValue = "Value as sent",
                NotSet = "(not set)",
                NextDue = "Next report due: {0}",
                NotDue = "No report is due: nothing is sent without your consent.",
                BytesLabel = "E&xact bytes of the next report:",
                SentLabel = "&Reports already sent (newest first):",
                NoneSent = "No report has been sent.",
                SentLine = "{0} \u2013 {1}{2}",
                LargeBody = "({0} bytes, SHA-256 {1}; the text is not kept for reports over 32 KiB)",
                Copy = "Co&py",
            };
        }

        private static UsageDataStrings German()
        {
            return new UsageDataStrings
            {
                Language = "de",
                Intro = "Wenn Sie zustimmen, sendet {0} etwa einmal pro Woche einen kurzen anonymen Bericht (Anzahlen, Bereiche und Einstellungen wie die Edition, nie Namen, E-Mail-Adressen oder Inhalte), damit die Hersteller erfahren, welche Versionen und Funktionen genutzt werden; \u201eDaten einsehen\u2026\u201c zeigt jeden Wert genau so, wie er gesendet w\u00fcrde.",
                CheckBox = "&Anonyme Nutzungsstatistik senden",
                ViewData = "&Daten einsehen\u2026",
                Outdated = "Sie haben einer fr\u00fcheren Fassung dieses Berichts zugestimmt; er hat sich seitdem ge\u00e4ndert ({0}), daher wird nichts gesendet, bis Sie erneut zustimmen.",
                Added = "hinzugef\u00fcgt: {0}",
                Removed = "entfernt: {0}",
                Changed = "ge\u00e4ndert: {0}",
                BuiltIns = "die eingebauten Felder haben sich ge\u00e4ndert",
                Product = "Produkt: {0} \u2192 {1}",
                Endpoint = "Ziel: {0} \u2192 {1}",
                Blocked = "Auf diesem Computer wird unabh\u00e4ngig von Ihrer Wahl nichts gesendet: {0}.",
                Unavailable = "Die Nutzungsstatistik ist nicht verf\u00fcgbar: {0}",
                DialogTitle = "{0} \u2013 Nutzungsstatistik",
                Ok = "OK",
                Cancel = "Abbrechen",
                Close = "&Schlie\u00dfen",
                DataTitle = "{0} \u2013 Nutzungsdaten",
                DataHeading = "Der n\u00e4chste Bericht, gesendet an {0}:",
                ColumnField = "Feld",
                ColumnDescription = "Beschreibung",
                ColumnValue = "Gesendeter Wert",
                NotSet = "(nicht gesetzt)",
                NextDue = "N\u00e4chster Bericht f\u00e4llig: {0}",
                NotDue = "Kein Bericht ist f\u00e4llig: ohne Ihre Zustimmung wird nichts gesendet.",
                BytesLabel = "&Genaue Bytes des n\u00e4chsten Berichts:",
                SentLabel = "&Bereits gesendete Berichte (neueste zuerst):",
                NoneSent = "Es wurde noch kein Bericht gesendet.",
                SentLine = "{0} \u2013 {1}{2}",
                LargeBody = "({0} Bytes, SHA-256 {1}; bei Berichten \u00fcber 32 KiB wird der Text nicht aufbewahrt)",
                Copy = "&Kopieren",
            };
        }

        internal string OutcomeName(ReportOutcome outcome)
        {
            bool de = Language == "de";
            switch (outcome)
            {
                case ReportOutcome.Delivered: return de ? "zugestellt" : "delivered";
                case ReportOutcome.Refused: return de ? "vom Empf\u00e4nger abgelehnt" : "refused by the collector";
                case ReportOutcome.Failed: return de ? "fehlgeschlagen, wird wiederholt" : "failed, will be retried";
                case ReportOutcome.Interrupted: return de ? "unterbrochen, wird wiederholt" : "interrupted, will be retried";
                case ReportOutcome.InFlight: return de ? "wird gesendet" : "being sent";
                default: return de ? "unbekannt" : "unknown";
            }
        }
    }
}
