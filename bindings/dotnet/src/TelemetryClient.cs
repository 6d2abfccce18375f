using System;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace OptInTelemetry
{
    /// <summary>
    /// An open optin-telemetry client: consent, field values, preview, schedule.
    /// </summary>
    /// <remarks>
    /// <para>Every member may be called from any thread at the same time, Dispose
    /// included: the native handle is a SafeHandle, so tel_close runs only after
    /// the calls in progress have returned. A member called after Dispose throws
    /// ObjectDisposedException.</para>
    /// <para>Failures of the native library become <see cref="TelemetryException"/>
    /// (ResultCode + the library's message naming the argument or field at fault).
    /// Arguments the binding can reject itself (null, NUL characters, lone
    /// surrogates, negative counts) throw ArgumentException and its subclasses
    /// before any native call.</para>
    /// <para>A client never disposed is closed by the SafeHandle's finalizer.</para>
    /// </remarks>
    public sealed class TelemetryClient : IDisposable
    {
        private readonly TelemetryHandle handle;

        // Set by Dispose. The SafeHandle alone is not enough: SafeHandle.Dispose only
        // drops the owner's reference, and while other threads' calls overlap the
        // reference count never reaches zero, so IsClosed stays false and new calls
        // would keep succeeding. With this flag every call that starts after
        // Dispose returns throws ObjectDisposedException, and the handle closes as
        // soon as the calls already in progress have returned.
        private int disposed;

        /// <summary>
        /// Opens a client (tel_open): validates <paramref name="configJson"/>, creates
        /// its state_dir, reads the saved consent. The first call also loads the native
        /// library and checks its version (<see cref="TelemetryLibrary.EnsureLoaded"/>).
        /// </summary>
        /// <param name="configJson">A JSON object with product, product_version, endpoint,
        /// state_dir, schema (optionally disabled, proxy, ca_cert_pem); see the README.
        /// product_version is 1 to 4 dot-separated decimal numbers of 1 to 5 digits each
        /// ("24.1.3", "10.2.1.21234"), nothing else; any other value throws TelemetryException
        /// with ResultCode.Config (TEL_ERR_CONFIG).</param>
        /// <exception cref="TelemetryException">Config, MalformedJson, Io, TooLarge...</exception>
        /// <exception cref="TelemetryVersionMismatchException">The native library has another version.</exception>
        public TelemetryClient(string configJson)
        {
            handle = OpenHandle(configJson);
        }

        /// <summary>Same as the constructor.</summary>
        public static TelemetryClient Open(string configJson)
        {
            return new TelemetryClient(configJson);
        }

        /// <summary>
        /// Opens a client with the configuration <paramref name="options"/> produce (<see cref="TelemetryOptions.ToJson"/>).
        /// (Not an overload of Open: Open(null) keeps compiling.)
        /// </summary>
        public static TelemetryClient Create(TelemetryOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            return new TelemetryClient(options.ToJson());
        }

        /// <summary>Opens a client on a thread-pool thread (tel_open reads the state directory under its lock file).</summary>
        public static Task<TelemetryClient> CreateAsync(TelemetryOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            string json = options.ToJson();
            return Task.Run(() => new TelemetryClient(json));
        }

        /// <summary>
        /// Raised when a report's outcome "delivered" is first seen (by <see cref="Flush"/>,
        /// <see cref="FlushAsync(CancellationToken)"/> or <see cref="CheckForOutcomes"/>), on the thread that
        /// made that call: a thread-pool thread for FlushAsync (marshal to the UI thread yourself).
        /// </summary>
        public event EventHandler<SentReportEventArgs> ReportSent;

        /// <summary>
        /// Raised when a report's outcome "refused" (the collector dropped it) is first seen; same
        /// rules as <see cref="ReportSent"/>.
        /// </summary>
        public event EventHandler<SentReportEventArgs> ReportRefused;

        // Outcomes already seen (report id + attempt count), for the events.
        private readonly object seenLock = new object();
        private HashSet<string> seen;

        /// <summary>
        /// Reads the history and raises <see cref="ReportSent"/> / <see cref="ReportRefused"/> for
        /// every delivered or refused report not seen before by this client object. The first call
        /// only remembers what is there. Flush and FlushAsync call it themselves.
        /// </summary>
        public void CheckForOutcomes()
        {
            IReadOnlyList<SentReport> reports = GetSentReports();
            var fresh = new List<SentReport>();
            lock (seenLock)
            {
                bool first = seen == null;
                if (first) seen = new HashSet<string>();
                foreach (SentReport r in reports)
                {
                    if (r.Outcome != ReportOutcome.Delivered && r.Outcome != ReportOutcome.Refused) continue;
                    if (seen.Add(r.ReportId + "/" + r.Attempts.Count) && !first) fresh.Add(r);
                }
            }
            for (int i = fresh.Count - 1; i >= 0; i--)
            {
                EventHandler<SentReportEventArgs> h = fresh[i].Outcome == ReportOutcome.Delivered ? ReportSent : ReportRefused;
                if (h != null) h(this, new SentReportEventArgs(fresh[i]));
            }
        }

        private void RememberOutcomes()
        {
            bool none;
            lock (seenLock) none = seen == null;
            if (none) CheckForOutcomes();
        }

        /// <summary>The "view data" document, typed: every field with its kind, description in <paramref name="language"/>, value as set and as sent; consent and what changed; the next report and when it is due.</summary>
        public ReportDescription DescribeReport(string language)
        {
            return new ReportDescription(Describe(language));
        }

        /// <summary>DescribeReport on a thread-pool thread.</summary>
        public Task<ReportDescription> DescribeReportAsync(string language)
        {
            ThrowIfDisposed();
            return Task.Run(() => DescribeReport(language));
        }

        /// <summary>The sending status, typed (tel_status_json). <see cref="Status"/> keeps the JSON.</summary>
        public TelemetryStatus GetStatus()
        {
            return new TelemetryStatus(Status);
        }

        /// <summary>GetStatus on a thread-pool thread.</summary>
        public Task<TelemetryStatus> GetStatusAsync()
        {
            ThrowIfDisposed();
            return Task.Run(() => GetStatus());
        }

        /// <summary>The last 52 reports that left the machine, newest first, typed. <see cref="History"/> keeps the JSON.</summary>
        public IReadOnlyList<SentReport> GetSentReports()
        {
            return SentReport.ListFrom(History);
        }

        /// <summary>GetSentReports on a thread-pool thread.</summary>
        public Task<IReadOnlyList<SentReport>> GetSentReportsAsync()
        {
            ThrowIfDisposed();
            return Task.Run(() => GetSentReports());
        }

        /// <summary>SetConsent on a thread-pool thread (it writes the state file under its lock file).</summary>
        public Task SetConsentAsync(bool granted)
        {
            ThrowIfDisposed();
            return Task.Run(() => SetConsent(granted));
        }

        /// <summary>The consent on a thread-pool thread (it reads the state file under its lock file).</summary>
        public Task<Consent> GetConsentAsync()
        {
            ThrowIfDisposed();
            return Task.Run(() => Consent);
        }

        /// <summary>PreviewJson on a thread-pool thread.</summary>
        public Task<string> PreviewJsonAsync()
        {
            ThrowIfDisposed();
            return Task.Run(() => PreviewJson());
        }

        /// <summary>ClearHistory on a thread-pool thread.</summary>
        public Task ClearHistoryAsync()
        {
            ThrowIfDisposed();
            return Task.Run(() => ClearHistory());
        }

        /// <summary>
        /// Waits, without blocking the calling thread, until no send of this client is in flight;
        /// then raises <see cref="ReportSent"/> / <see cref="ReportRefused"/> for new outcomes (on a
        /// thread-pool thread). Cancelling ends the wait (within about 50 ms), not the send.
        /// </summary>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
        public Task FlushAsync(CancellationToken cancellationToken)
        {
            return FlushAsync(Timeout.InfiniteTimeSpan, cancellationToken);
        }

        /// <summary>FlushAsync with a timeout: the task's result is true when no send is in flight, false when <paramref name="timeout"/> ran out.</summary>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
        public Task<bool> FlushAsync(TimeSpan timeout, CancellationToken cancellationToken)
        {
            if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
            {
                throw new ArgumentOutOfRangeException("timeout", timeout, "The timeout cannot be negative.");
            }
            ThrowIfDisposed();
            return Task.Run(() =>
            {
                RememberOutcomes();
                var watch = System.Diagnostics.Stopwatch.StartNew();
                TimeSpan slice = TimeSpan.FromMilliseconds(50);
                while (true)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    TimeSpan wait = slice;
                    if (timeout != Timeout.InfiniteTimeSpan)
                    {
                        TimeSpan left = timeout - watch.Elapsed;
                        if (left < TimeSpan.Zero) left = TimeSpan.Zero;
                        if (left < wait) wait = left;
                    }
                    if (FlushNative(wait))
                    {
                        CheckForOutcomes();
                        return true;
                    }
                    if (timeout != Timeout.InfiniteTimeSpan && watch.Elapsed >= timeout)
                    {
                        return false;
                    }
                }
            }, cancellationToken);
        }

        private static TelemetryHandle OpenHandle(string configJson)
        {
            byte[] config = Utf8.Encode(configJson, "configJson");
            TelemetryLibrary.EnsureLoaded();
            TelemetryHandle h;
            int rc = NativeMethods.tel_open(config, out h);
            if (rc != 0)
            {
                TelemetryException error = TelemetryException.FromLastError("tel_open", rc);
                if (h != null)
                {
                    h.Dispose(); // invalid (zero) handle: no tel_close
                }
                throw error;
            }
            if (h == null || h.IsInvalid)
            {
                throw new TelemetryException(ResultCode.Internal, "tel_open returned TEL_OK without a client", "tel_open");
            }
            return h;
        }

        /// <summary>The SafeHandle itself (for the binding's tests).</summary>
        internal TelemetryHandle Handle
        {
            get { return handle; }
        }

        /// <summary>True once Dispose was called.</summary>
        public bool IsDisposed
        {
            get { return Volatile.Read(ref disposed) != 0 || handle.IsClosed; }
        }

        /// <summary>The consent in force for the schema in use (tel_get_consent).</summary>
        public Consent Consent
        {
            get
            {
                ThrowIfDisposed();
                uint value;
                Check(NativeMethods.tel_get_consent(handle, out value), "tel_get_consent");
                switch (value)
                {
                    case NativeMethods.TEL_CONSENT_UNDECIDED: return Consent.Undecided;
                    case NativeMethods.TEL_CONSENT_GRANTED: return Consent.Granted;
                    case NativeMethods.TEL_CONSENT_DENIED: return Consent.Denied;
                    case NativeMethods.TEL_CONSENT_OUTDATED: return Consent.Outdated;
                    default:
                        throw new TelemetryException(ResultCode.Internal, "unknown consent value " + value, "tel_get_consent");
                }
            }
        }

        /// <summary>Records the user's answer (on disk before this returns). A "no" is final across schema changes.</summary>
        public void SetConsent(bool granted)
        {
            ThrowIfDisposed();
            Check(NativeMethods.tel_set_consent(handle, granted ? 1 : 0), "tel_set_consent");
        }

        /// <summary>Sets a bool field.</summary>
        public void Set(string field, bool value)
        {
            byte[] name = Utf8.Encode(field, "field");
            ThrowIfDisposed();
            Check(NativeMethods.tel_set_bool(handle, name, value ? 1 : 0), "tel_set_bool");
        }

        /// <summary>Sets a count field (never reported exactly: as its bucket, or rounded at random to 0, 1, 2, 5, 10, 20, 50, ... with "rounding": "1-2-5").</summary>
        public void Set(string field, ulong count)
        {
            byte[] name = Utf8.Encode(field, "field");
            ThrowIfDisposed();
            Check(NativeMethods.tel_set_count(handle, name, count), "tel_set_count");
        }

        /// <summary>Sets a count field. <paramref name="count"/> must not be negative.</summary>
        public void Set(string field, long count)
        {
            if (count < 0)
            {
                throw new ArgumentOutOfRangeException("count", count, "A count cannot be negative.");
            }
            Set(field, (ulong)count);
        }

        /// <summary>Sets a count field. <paramref name="count"/> must not be negative.</summary>
        public void Set(string field, int count)
        {
            Set(field, (long)count);
        }

        /// <summary>
        /// Not a count: C# converts a char to int implicitly, so Set("users", '7')
        /// would send 55. This overload wins for a char argument and does not
        /// compile (CS0619).
        /// </summary>
        [Obsolete("A char is not a count: Set(field, '7') would send 55. Pass a number (or a string for a choice field).", true)]
        public void Set(string field, char value)
        {
            throw new NotSupportedException("A char is not a count.");
        }

        /// <summary>Sets a choice field to one of its declared values.</summary>
        public void Set(string field, string choice)
        {
            byte[] name = Utf8.Encode(field, "field");
            byte[] value = Utf8.Encode(choice, "choice");
            ThrowIfDisposed();
            Check(NativeMethods.tel_set_choice(handle, name, value), "tel_set_choice");
        }

        /// <summary>Sets a choices field (several declared values) via tel_set_values_json.</summary>
        public void Set(string field, IEnumerable<string> choices)
        {
            if (field == null)
            {
                throw new ArgumentNullException("field");
            }
            if (choices == null)
            {
                throw new ArgumentNullException("choices");
            }
            var json = new StringBuilder();
            json.Append('{').Append(Utf8.JsonString(field)).Append(":[");
            bool first = true;
            foreach (string c in choices)
            {
                if (c == null)
                {
                    throw new ArgumentException("A choice is null.", "choices");
                }
                if (!first)
                {
                    json.Append(',');
                }
                json.Append(Utf8.JsonString(c));
                first = false;
            }
            json.Append("]}");
            SetValuesJson(json.ToString());
        }

        /// <summary>Unsets a field (it is left out of the report).</summary>
        public void Unset(string field)
        {
            if (field == null)
            {
                throw new ArgumentNullException("field");
            }
            SetValuesJson("{" + Utf8.JsonString(field) + ":null}");
        }

        /// <summary>
        /// Sets several fields at once from <c>{"field": value, ...}</c>: true/false, a
        /// non-negative integer, a string, an array of strings, or null to unset.
        /// All or nothing.
        /// </summary>
        public void SetValuesJson(string valuesJson)
        {
            byte[] json = Utf8.Encode(valuesJson, "valuesJson");
            ThrowIfDisposed();
            Check(NativeMethods.tel_set_values_json(handle, json), "tel_set_values_json");
        }

        /// <summary>The exact text of the next report (whatever the consent; sends nothing).</summary>
        public string PreviewJson()
        {
            ThrowIfDisposed();
            IntPtr p;
            int rc = NativeMethods.tel_preview_json(handle, out p);
            return TakeString(rc, p, "tel_preview_json");
        }

        /// <summary>Describe(null): the "view data" document in English.</summary>
        public string Describe()
        {
            return Describe(null);
        }

        /// <summary>
        /// What a consent or "view data" dialog needs, as JSON: every field with its
        /// description in <paramref name="language"/> (e.g. "de", "de-AT"; null or ""
        /// means English), kind and value; the consent state; the changes when outdated;
        /// and the next report's exact text.
        /// </summary>
        public string Describe(string language)
        {
            byte[] tag = Utf8.Encode(language, "language", true);
            ThrowIfDisposed();
            IntPtr p;
            int rc = NativeMethods.tel_describe_json(handle, tag, out p);
            return TakeString(rc, p, "tel_describe_json");
        }

        /// <summary>Lets the library act on its schedule; call often (e.g. every minute) from any thread. Cheap when nothing is due.</summary>
        public void Tick()
        {
            ThrowIfDisposed();
            Check(NativeMethods.tel_tick(handle), "tel_tick");
        }

        /// <summary>Tick with an explicit "now" (unix seconds), for tests and simulations.</summary>
        public void TickAt(long unixSeconds)
        {
            ThrowIfDisposed();
            Check(NativeMethods.tel_tick_at(handle, unixSeconds), "tel_tick_at");
        }

        /// <summary>Tick with an explicit "now", for tests and simulations.</summary>
        public void TickAt(DateTimeOffset now)
        {
            TickAt(now.ToUnixTimeSeconds());
        }

        /// <summary>
        /// Waits until no send of this client is in flight. Returns true when none is
        /// (at once if none was), false when <paramref name="timeout"/> ran out
        /// (TEL_ERR_TIMEOUT). Does not wait for retries due later. Blocks the calling
        /// thread: from a UI thread use <see cref="FlushAsync(CancellationToken)"/>. When it
        /// returns true it raises <see cref="ReportSent"/> / <see cref="ReportRefused"/> on
        /// this thread for outcomes not seen before.
        /// <see cref="Timeout.InfiniteTimeSpan"/> waits about 49 days.
        /// </summary>
        public bool Flush(TimeSpan timeout)
        {
            RememberOutcomes();
            bool done = FlushNative(timeout);
            if (done) CheckForOutcomes();
            return done;
        }

        private bool FlushNative(TimeSpan timeout)
        {
            uint ms;
            if (timeout == Timeout.InfiniteTimeSpan)
            {
                ms = uint.MaxValue;
            }
            else if (timeout < TimeSpan.Zero)
            {
                throw new ArgumentOutOfRangeException("timeout", timeout, "The timeout cannot be negative.");
            }
            else
            {
                double total = Math.Ceiling(timeout.TotalMilliseconds);
                ms = total >= uint.MaxValue ? uint.MaxValue : (uint)total;
            }
            ThrowIfDisposed();
            int rc = NativeMethods.tel_flush(handle, ms);
            if (rc == (int)ResultCode.Timeout)
            {
                return false;
            }
            Check(rc, "tel_flush");
            return true;
        }

        /// <summary>
        /// The sending status as JSON: consent, next_due, last_sent, sending, blocked_by,
        /// last_error, attempts, schema_version, schema_digest, warnings.
        /// </summary>
        public string Status
        {
            get
            {
                ThrowIfDisposed();
                IntPtr p;
                int rc = NativeMethods.tel_status_json(handle, out p);
                return TakeString(rc, p, "tel_status_json");
            }
        }

        /// <summary>The last 52 reports that left the machine, newest first, as JSON: {"reports": [...]}, each with its exact body.</summary>
        public string History
        {
            get
            {
                ThrowIfDisposed();
                IntPtr p;
                int rc = NativeMethods.tel_history_json(handle, out p);
                return TakeString(rc, p, "tel_history_json");
            }
        }

        /// <summary>Deletes the history of sent reports.</summary>
        public void ClearHistory()
        {
            ThrowIfDisposed();
            Check(NativeMethods.tel_clear_history(handle), "tel_clear_history");
        }

        /// <summary>
        /// Closes the client: calls starting afterwards throw ObjectDisposedException;
        /// tel_close runs once the calls already in progress on other threads have
        /// returned (at once if there are none). Idempotent. It does not wait for the
        /// network: a send in flight is interrupted (its connection shut down) and its
        /// report is sent again later with the same id (see the README for the figures).
        /// </summary>
        public void Dispose()
        {
            Interlocked.Exchange(ref disposed, 1);
            handle.Dispose();
        }

        private void ThrowIfDisposed()
        {
            if (Volatile.Read(ref disposed) != 0 || handle.IsClosed)
            {
                throw new ObjectDisposedException(typeof(TelemetryClient).FullName);
            }
        }

        // Reads tel_last_error_message right away, on this thread, before any other
        // call into the library.
        private static void Check(int rc, string function)
        {
            if (rc != 0)
            {
                throw TelemetryException.FromLastError(function, rc);
            }
        }

        // Copies and frees a string the library returned through an out parameter.
        // On failure the out parameter is not written (p stays zero) and nothing is freed.
        private static string TakeString(int rc, IntPtr p, string function)
        {
            if (rc != 0)
            {
                throw TelemetryException.FromLastError(function, rc);
            }
            try
            {
                return Utf8.Decode(p);
            }
            finally
            {
                NativeMethods.tel_string_free(p);
            }
        }
    }
}
