using System;
using System.Runtime.InteropServices;

namespace OptInTelemetry
{
    /// <summary>
    /// Owns one native <c>tel_client*</c>. Passed directly to every P/Invoke, so the
    /// runtime adds a reference for the duration of each call: Dispose (or the
    /// finalizer) during a call only marks the handle closed, and tel_close runs
    /// once the last call has returned. This is how the header's rule "tel_close
    /// must not race any other call on the same client" is kept.
    /// </summary>
    /// <remarks>
    /// SafeHandle has a critical finalizer: a client that is never disposed is
    /// closed on the finalizer thread. tel_close interrupts a send in flight
    /// (at most about 50 ms, on Windows too); dispose clients.
    /// </remarks>
    internal sealed class TelemetryHandle : SafeHandle
    {
        // Used by the marshaller for `out TelemetryHandle` in tel_open: the object
        // exists before the call, so the new pointer cannot leak between the
        // native return and the assignment.
        private TelemetryHandle() : base(IntPtr.Zero, true)
        {
        }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        protected override bool ReleaseHandle()
        {
            NativeMethods.tel_close(handle);
            return true;
        }
    }
}
