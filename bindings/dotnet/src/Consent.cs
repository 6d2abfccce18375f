namespace OptInTelemetry
{
    /// <summary>The consent in force for the schema in use (TEL_CONSENT_*).</summary>
    public enum Consent
    {
        /// <summary>No answer yet: nothing is sent. Ask the user.</summary>
        Undecided = 0,
        /// <summary>The user agreed to the schema in use: reports may be sent.</summary>
        Granted = 1,
        /// <summary>The user declined: nothing is sent; a schema change does not ask again.</summary>
        Denied = 2,
        /// <summary>The user agreed to an earlier schema: nothing is sent until they answer again (ask again, showing Describe's "changes").</summary>
        Outdated = 3,
    }
}
