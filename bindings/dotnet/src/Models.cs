using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Text;

namespace OptInTelemetry
{
    /// <summary>The kind of a report field.</summary>
    public enum FieldKind
    {
        /// <summary>A kind this version of the binding does not know.</summary>
        Unknown = 0,
        /// <summary>A built-in text field (operating system, product, versions).</summary>
        Text = 1,
        /// <summary>true or false.</summary>
        Bool = 2,
        /// <summary>A count, sent as its bucket or rounded at random (1-2-5).</summary>
        Count = 3,
        /// <summary>One of the declared values.</summary>
        Choice = 4,
        /// <summary>Several of the declared values.</summary>
        Choices = 5,
    }

    /// <summary>What happened to an attempt to send a report, as the library records it.</summary>
    public enum ReportOutcome
    {
        /// <summary>An outcome this version of the binding does not know.</summary>
        Unknown = 0,
        /// <summary>The attempt is still running (or its process ended; it is then counted as interrupted later).</summary>
        InFlight = 1,
        /// <summary>The collector accepted the report (HTTP 2xx).</summary>
        Delivered = 2,
        /// <summary>The collector refused it (a 4xx other than 408/429, or a redirect): the report is dropped.</summary>
        Refused = 3,
        /// <summary>Network error, 408, 429 or 5xx: retried later.</summary>
        Failed = 4,
        /// <summary>The client was closed (or its process ended) before the answer: retried later with the same id.</summary>
        Interrupted = 5,
    }

    internal static class Parse
    {
        internal static Dictionary<string, object> Obj(object o)
        {
            return o as Dictionary<string, object> ?? new Dictionary<string, object>();
        }

        internal static object Get(Dictionary<string, object> o, string key)
        {
            object v;
            return o.TryGetValue(key, out v) ? v : null;
        }

        internal static string Str(Dictionary<string, object> o, string key)
        {
            return Get(o, key) as string;
        }

        internal static long? Long(Dictionary<string, object> o, string key)
        {
            object v = Get(o, key);
            if (v is long) return (long)v;
            if (v is double) return (long)(double)v;
            return null;
        }

        internal static double? Double(Dictionary<string, object> o, string key)
        {
            object v = Get(o, key);
            if (v is long) return (long)v;
            if (v is double) return (double)v;
            return null;
        }

        internal static bool Bool(Dictionary<string, object> o, string key)
        {
            object v = Get(o, key);
            return v is bool && (bool)v;
        }

        internal static DateTimeOffset? Time(Dictionary<string, object> o, string key)
        {
            long? t = Long(o, key);
            return t.HasValue ? DateTimeOffset.FromUnixTimeSeconds(t.Value) : (DateTimeOffset?)null;
        }

        internal static IReadOnlyList<string> Strings(Dictionary<string, object> o, string key)
        {
            var list = new List<string>();
            var raw = Get(o, key) as List<object>;
            if (raw != null)
            {
                foreach (object x in raw)
                {
                    list.Add(x == null ? null : Convert.ToString(x, System.Globalization.CultureInfo.InvariantCulture));
                }
            }
            return new ReadOnlyCollection<string>(list);
        }

        internal static Consent ConsentState(string s)
        {
            switch (s)
            {
                case "granted": return Consent.Granted;
                case "denied": return Consent.Denied;
                case "outdated": return Consent.Outdated;
                default: return Consent.Undecided;
            }
        }

        internal static FieldKind Kind(string s)
        {
            switch (s)
            {
                case "text": return FieldKind.Text;
                case "bool": return FieldKind.Bool;
                case "count": return FieldKind.Count;
                case "choice": return FieldKind.Choice;
                case "choices": return FieldKind.Choices;
                default: return FieldKind.Unknown;
            }
        }

        internal static ReportOutcome Outcome(string s)
        {
            switch (s)
            {
                case "in_flight": return ReportOutcome.InFlight;
                case "delivered": return ReportOutcome.Delivered;
                case "refused": return ReportOutcome.Refused;
                case "failed": return ReportOutcome.Failed;
                case "interrupted": return ReportOutcome.Interrupted;
                default: return ReportOutcome.Unknown;
            }
        }

        // A JSON value as a .NET value: bool, long, double, string, a read-only
        // list of strings (a choices value), or null.
        internal static object Value(object v)
        {
            var list = v as List<object>;
            if (list != null)
            {
                var s = new List<string>();
                foreach (object x in list) s.Add(Convert.ToString(x, System.Globalization.CultureInfo.InvariantCulture));
                return new ReadOnlyCollection<string>(s);
            }
            return v;
        }
    }

    /// <summary>One field of the report as a consent or "view data" dialog shows it.</summary>
    public sealed class ReportField
    {
        internal ReportField(Dictionary<string, object> o)
        {
            Name = Parse.Str(o, "name");
            IsBuiltIn = Parse.Bool(o, "builtin");
            KindName = Parse.Str(o, "kind");
            Kind = Parse.Kind(KindName);
            Description = Parse.Str(o, "description");
            Value = Parse.Value(Parse.Get(o, "value"));
            CurrentValue = IsBuiltIn ? Value : Parse.Value(Parse.Get(o, "current_value"));
            AllowedValues = Parse.Strings(o, "values");
            Buckets = Parse.Strings(o, "buckets");
            Rounding = Parse.Str(o, "rounding");
            Bits = Parse.Double(o, "bits");
        }

        /// <summary>The field's name in the schema (or the built-in field's name).</summary>
        public string Name { get; private set; }

        /// <summary>True for the fields the library adds itself (operating system, product, versions).</summary>
        public bool IsBuiltIn { get; private set; }

        /// <summary>The field's kind.</summary>
        public FieldKind Kind { get; private set; }

        /// <summary>The kind as the library names it ("text", "bool", "count", "choice", "choices").</summary>
        public string KindName { get; private set; }

        /// <summary>The description in the language asked for (falling back to the base language, then English).</summary>
        public string Description { get; private set; }

        /// <summary>
        /// The value as it is set: bool, long (a count's exact number), string (a choice or a built-in
        /// field), a read-only list of strings (choices), or null when unset.
        /// </summary>
        public object CurrentValue { get; private set; }

        /// <summary>
        /// The value exactly as the next report sends it: a count as its bucket label or rounded
        /// value, a pending report's value as in its saved bytes; null when the field is left out.
        /// </summary>
        public object Value { get; private set; }

        /// <summary>The declared values of a choice or choices field (empty otherwise).</summary>
        public IReadOnlyList<string> AllowedValues { get; private set; }

        /// <summary>The bucket bounds of a bucketed count field, as text (empty otherwise).</summary>
        public IReadOnlyList<string> Buckets { get; private set; }

        /// <summary>"1-2-5" style rounding of a rounded count field, as the library describes it; null otherwise.</summary>
        public string Rounding { get; private set; }

        /// <summary>The field's identifying bits (null for built-in fields).</summary>
        public double? Bits { get; private set; }
    }

    /// <summary>The user's saved answer.</summary>
    public sealed class ConsentReceipt
    {
        internal ConsentReceipt(Dictionary<string, object> o)
        {
            Granted = Parse.Str(o, "decision") == "granted";
            At = Parse.Time(o, "at");
            SchemaVersion = Parse.Long(o, "schema_version");
            SchemaDigest = Parse.Str(o, "schema_digest");
            ProductVersion = Parse.Str(o, "product_version");
            Product = Parse.Str(o, "product");
            Endpoint = Parse.Str(o, "endpoint");
        }

        /// <summary>True for a "yes", false for a "no".</summary>
        public bool Granted { get; private set; }

        /// <summary>When the answer was given.</summary>
        public DateTimeOffset? At { get; private set; }

        /// <summary>The schema version the answer was given for.</summary>
        public long? SchemaVersion { get; private set; }

        /// <summary>The digest of the schema the answer was given for.</summary>
        public string SchemaDigest { get; private set; }

        /// <summary>The product version in use when the answer was given.</summary>
        public string ProductVersion { get; private set; }

        /// <summary>The product the answer was given for (null in receipts from before it was bound).</summary>
        public string Product { get; private set; }

        /// <summary>The endpoint the answer was given for (null in receipts from before it was bound).</summary>
        public string Endpoint { get; private set; }
    }

    /// <summary>Why an earlier "yes" is outdated: what changed since.</summary>
    public sealed class ConsentChanges
    {
        internal ConsentChanges(Dictionary<string, object> o)
        {
            FromSchemaVersion = Parse.Long(o, "from_schema_version");
            ToSchemaVersion = Parse.Long(o, "to_schema_version");
            Added = Parse.Strings(o, "added");
            Removed = Parse.Strings(o, "removed");
            Changed = Parse.Strings(o, "changed");
            BuiltInsChanged = Parse.Bool(o, "builtins_changed");
            ProductChanged = Parse.Bool(o, "product_changed");
            FromProduct = Parse.Str(o, "from_product");
            ToProduct = Parse.Str(o, "to_product");
            EndpointChanged = Parse.Bool(o, "endpoint_changed");
            FromEndpoint = Parse.Str(o, "from_endpoint");
            ToEndpoint = Parse.Str(o, "to_endpoint");
        }

        /// <summary>The schema version the user answered for.</summary>
        public long? FromSchemaVersion { get; private set; }

        /// <summary>The schema version in use now.</summary>
        public long? ToSchemaVersion { get; private set; }

        /// <summary>Fields added since the answer.</summary>
        public IReadOnlyList<string> Added { get; private set; }

        /// <summary>Fields removed since the answer.</summary>
        public IReadOnlyList<string> Removed { get; private set; }

        /// <summary>Fields whose kind, buckets, rounding, values or description changed.</summary>
        public IReadOnlyList<string> Changed { get; private set; }

        /// <summary>The set of built-in fields changed.</summary>
        public bool BuiltInsChanged { get; private set; }

        /// <summary>The product differs from the one the user answered for.</summary>
        public bool ProductChanged { get; private set; }

        /// <summary>The product the user answered for.</summary>
        public string FromProduct { get; private set; }

        /// <summary>The product in use now.</summary>
        public string ToProduct { get; private set; }

        /// <summary>The endpoint differs from the one the user answered for.</summary>
        public bool EndpointChanged { get; private set; }

        /// <summary>The endpoint the user answered for.</summary>
        public string FromEndpoint { get; private set; }

        /// <summary>The endpoint in use now.</summary>
        public string ToEndpoint { get; private set; }
    }

    /// <summary>The consent part of a <see cref="ReportDescription"/>.</summary>
    public sealed class ConsentInfo
    {
        internal ConsentInfo(Dictionary<string, object> o)
        {
            State = Parse.ConsentState(Parse.Str(o, "state"));
            var r = Parse.Get(o, "receipt") as Dictionary<string, object>;
            Receipt = r == null ? null : new ConsentReceipt(r);
            var c = Parse.Get(o, "changes") as Dictionary<string, object>;
            Changes = c == null ? null : new ConsentChanges(c);
        }

        /// <summary>The consent in force for the schema, product and endpoint in use.</summary>
        public Consent State { get; private set; }

        /// <summary>The saved answer, or null when the user never answered.</summary>
        public ConsentReceipt Receipt { get; private set; }

        /// <summary>When <see cref="State"/> is Outdated: what changed since the answer; otherwise null.</summary>
        public ConsentChanges Changes { get; private set; }
    }

    /// <summary>
    /// What a consent or "view data" dialog shows (tel_describe_json, typed). The JSON it was read
    /// from is kept in <see cref="Json"/> (for logging).
    /// </summary>
    public sealed class ReportDescription
    {
        internal ReportDescription(string json)
        {
            Json = json;
            var o = OptInTelemetry.Json.Object(json);
            Language = Parse.Str(o, "language");
            Product = Parse.Str(o, "product");
            ProductVersion = Parse.Str(o, "product_version");
            SchemaVersion = Parse.Long(o, "schema_version") ?? 0;
            SchemaDigest = Parse.Str(o, "schema_digest");
            Consent = new ConsentInfo(Parse.Obj(Parse.Get(o, "consent")));
            BlockedBy = Parse.Str(o, "blocked_by");
            Endpoint = Parse.Str(o, "endpoint");
            var fields = new List<ReportField>();
            var raw = Parse.Get(o, "fields") as List<object>;
            if (raw != null)
            {
                foreach (object f in raw) fields.Add(new ReportField(Parse.Obj(f)));
            }
            Fields = new ReadOnlyCollection<ReportField>(fields);
            var privacy = Parse.Obj(Parse.Get(o, "privacy"));
            MaxBits = Parse.Double(privacy, "max_bits") ?? 0;
            NextReport = Parse.Str(o, "next_report");
            NextReportDue = Parse.Time(o, "next_due");
            Warnings = Parse.Strings(o, "warnings");
        }

        /// <summary>The language the descriptions are in ("en" when none was asked for).</summary>
        public string Language { get; private set; }

        /// <summary>The product name from the configuration.</summary>
        public string Product { get; private set; }

        /// <summary>The product version from the configuration.</summary>
        public string ProductVersion { get; private set; }

        /// <summary>The schema's version.</summary>
        public long SchemaVersion { get; private set; }

        /// <summary>The schema's digest ("sha256:...").</summary>
        public string SchemaDigest { get; private set; }

        /// <summary>Consent state, the saved answer, and what changed when it is outdated.</summary>
        public ConsentInfo Consent { get; private set; }

        /// <summary>Why nothing will be sent whatever the consent (a policy), or null.</summary>
        public string BlockedBy { get; private set; }

        /// <summary>Where reports go.</summary>
        public string Endpoint { get; private set; }

        /// <summary>Every field of the report, built-in ones first, in report order.</summary>
        public IReadOnlyList<ReportField> Fields { get; private set; }

        /// <summary>The schema's identifying bits: a report is one of at most 2^MaxBits possible reports.</summary>
        public double MaxBits { get; private set; }

        /// <summary>The exact text of the next report (a pending report's saved bytes while it is retried).</summary>
        public string NextReport { get; private set; }

        /// <summary>When the next report (or a pending report's retry) is due; null unless consent is granted and nothing blocks.</summary>
        public DateTimeOffset? NextReportDue { get; private set; }

        /// <summary>Files the library set aside in the state directory (damaged state or history), one text each.</summary>
        public IReadOnlyList<string> Warnings { get; private set; }

        /// <summary>The JSON this description was read from (tel_describe_json's text).</summary>
        public string Json { get; private set; }
    }

    /// <summary>The sending status (tel_status_json, typed).</summary>
    public sealed class TelemetryStatus
    {
        internal TelemetryStatus(string json)
        {
            Json = json;
            var o = OptInTelemetry.Json.Object(json);
            Consent = Parse.ConsentState(Parse.Str(o, "consent"));
            NextDue = Parse.Time(o, "next_due");
            LastSent = Parse.Time(o, "last_sent");
            IsSending = Parse.Bool(o, "sending");
            BlockedBy = Parse.Str(o, "blocked_by");
            LastError = Parse.Str(o, "last_error");
            Attempts = (int)(Parse.Long(o, "attempts") ?? 0);
            SchemaVersion = Parse.Long(o, "schema_version") ?? 0;
            SchemaDigest = Parse.Str(o, "schema_digest");
            Warnings = Parse.Strings(o, "warnings");
        }

        /// <summary>The consent in force.</summary>
        public Consent Consent { get; private set; }

        /// <summary>When the next report (or retry) is due; null unless consent is granted and nothing blocks.</summary>
        public DateTimeOffset? NextDue { get; private set; }

        /// <summary>When the last delivered report left; null if none was delivered.</summary>
        public DateTimeOffset? LastSent { get; private set; }

        /// <summary>A send is in flight (in this process or another on the same state directory).</summary>
        public bool IsSending { get; private set; }

        /// <summary>Why nothing will be sent whatever the consent (a policy), or null.</summary>
        public string BlockedBy { get; private set; }

        /// <summary>The last error, or null.</summary>
        public string LastError { get; private set; }

        /// <summary>Failed attempts of the pending report so far.</summary>
        public int Attempts { get; private set; }

        /// <summary>The schema's version.</summary>
        public long SchemaVersion { get; private set; }

        /// <summary>The schema's digest.</summary>
        public string SchemaDigest { get; private set; }

        /// <summary>Files the library set aside in the state directory, one text each.</summary>
        public IReadOnlyList<string> Warnings { get; private set; }

        /// <summary>The JSON this status was read from (tel_status_json's text).</summary>
        public string Json { get; private set; }
    }

    /// <summary>One attempt to send a report.</summary>
    public sealed class SendAttempt
    {
        internal SendAttempt(Dictionary<string, object> o)
        {
            At = Parse.Time(o, "at");
            Outcome = Parse.Outcome(Parse.Str(o, "outcome"));
            OutcomeName = Parse.Str(o, "outcome");
            long? status = Parse.Long(o, "status");
            HttpStatus = status.HasValue ? (int)status.Value : (int?)null;
            Error = Parse.Str(o, "error");
        }

        /// <summary>When the attempt started, as the library recorded it (the tick's time, whole seconds).</summary>
        public DateTimeOffset? At { get; private set; }

        /// <summary>What happened.</summary>
        public ReportOutcome Outcome { get; private set; }

        /// <summary>The outcome as the library names it ("delivered", "interrupted", ...).</summary>
        public string OutcomeName { get; private set; }

        /// <summary>The collector's HTTP status, or null when none arrived.</summary>
        public int? HttpStatus { get; private set; }

        /// <summary>The error, or null.</summary>
        public string Error { get; private set; }
    }

    /// <summary>A report that left (or was about to leave) the machine, with its exact bytes (tel_history_json, typed).</summary>
    public sealed class SentReport
    {
        internal SentReport(Dictionary<string, object> o)
        {
            ReportId = Parse.Str(o, "report_id");
            Body = Parse.Str(o, "body");
            BodySha256 = Parse.Str(o, "body_sha256");
            BodyLength = Parse.Long(o, "body_length") ?? 0;
            var attempts = new List<SendAttempt>();
            var raw = Parse.Get(o, "attempts") as List<object>;
            if (raw != null)
            {
                foreach (object a in raw) attempts.Add(new SendAttempt(Parse.Obj(a)));
            }
            Attempts = new ReadOnlyCollection<SendAttempt>(attempts);
            var last = attempts.Count > 0 ? attempts[attempts.Count - 1] : null;
            At = last == null ? null : last.At;
            Outcome = last == null ? ReportOutcome.Unknown : last.Outcome;
            HttpStatus = last == null ? null : last.HttpStatus;
        }

        /// <summary>The report's id (the collector keeps one report per id).</summary>
        public string ReportId { get; private set; }

        /// <summary>When the last attempt started, as the library recorded it.</summary>
        public DateTimeOffset? At { get; private set; }

        /// <summary>The last attempt's outcome.</summary>
        public ReportOutcome Outcome { get; private set; }

        /// <summary>The last attempt's HTTP status, or null.</summary>
        public int? HttpStatus { get; private set; }

        /// <summary>The exact text sent; null for a report larger than 32 KiB (then only its SHA-256 and length are kept).</summary>
        public string Body { get; private set; }

        /// <summary>The exact bytes sent (UTF-8 of <see cref="Body"/>); null when <see cref="Body"/> is.</summary>
        public byte[] GetBodyBytes()
        {
            return Body == null ? null : Encoding.UTF8.GetBytes(Body);
        }

        /// <summary>Hex SHA-256 of the bytes sent.</summary>
        public string BodySha256 { get; private set; }

        /// <summary>Length of the bytes sent.</summary>
        public long BodyLength { get; private set; }

        /// <summary>Every attempt, oldest first.</summary>
        public IReadOnlyList<SendAttempt> Attempts { get; private set; }

        internal static IReadOnlyList<SentReport> ListFrom(string json)
        {
            var list = new List<SentReport>();
            var raw = Parse.Get(Json.Object(json), "reports") as List<object>;
            if (raw != null)
            {
                foreach (object r in raw) list.Add(new SentReport(Parse.Obj(r)));
            }
            return new ReadOnlyCollection<SentReport>(list);
        }
    }

    /// <summary>Data of <see cref="TelemetryClient.ReportSent"/> and <see cref="TelemetryClient.ReportRefused"/>.</summary>
    public sealed class SentReportEventArgs : EventArgs
    {
        /// <summary>Creates the event data for <paramref name="report"/>.</summary>
        public SentReportEventArgs(SentReport report)
        {
            Report = report;
        }

        /// <summary>The report, with its attempts and exact bytes.</summary>
        public SentReport Report { get; private set; }
    }
}
