using System;
using System.Globalization;
using System.IO;
using System.Reflection;
using System.Text;

namespace OptInTelemetry
{
    /// <summary>
    /// The configuration of a client, producing the JSON tel_open takes (<see cref="ToJson"/>).
    /// Open a client with <see cref="TelemetryClient.Create(TelemetryOptions)"/>.
    /// </summary>
    public sealed class TelemetryOptions
    {
        /// <summary>The product's name (e.g. "Mock Mail Archiver").</summary>
        public string Product { get; set; }

        /// <summary>The product's version: 1 to 4 dot-separated numbers of 1 to 5 digits ("5.2.1").</summary>
        public string ProductVersion { get; set; }

        /// <summary>The collector's URL (https; plain http only to a loopback address).</summary>
        public string Endpoint { get; set; }

        /// <summary>The directory for consent, schedule and history (one per installation).</summary>
        public string StateDirectory { get; set; }

        /// <summary>The schema as JSON text (see <see cref="SchemaFromFile"/>, <see cref="SchemaFromResource"/>).</summary>
        public string SchemaJson { get; set; }

        /// <summary>Optional: a proxy URL without credentials, or "none" for a direct connection.</summary>
        public string Proxy { get; set; }

        /// <summary>Optional: PEM certificates of a private CA for the endpoint.</summary>
        public string CaCertificatePem { get; set; }

        /// <summary>
        /// Optional, with <see cref="OhttpKeyConfig"/>: the URL of an Oblivious HTTP relay (RFC 9458;
        /// https, plain http only to a loopback address). Every report then goes encrypted through
        /// it: the relay sees the address but not the content. Bound to the consent ("ohttp.relay").
        /// </summary>
        public string OhttpRelay { get; set; }

        /// <summary>
        /// Optional, with <see cref="OhttpRelay"/>: base64 of the gateway's key configuration
        /// (application/ohttp-keys: one configuration or an RFC 9540 list), shipped with the product;
        /// the library never fetches it. Bound to the consent ("ohttp.key_config").
        /// </summary>
        public string OhttpKeyConfig { get; set; }

        /// <summary>Optional: true turns sending off whatever the consent (a policy).</summary>
        public bool Disabled { get; set; }

        /// <summary>Reads the schema from a UTF-8 JSON file; returns this object.</summary>
        public TelemetryOptions SchemaFromFile(string path)
        {
            SchemaJson = File.ReadAllText(path, Encoding.UTF8);
            return this;
        }

        /// <summary>Reads the schema from an embedded resource of <paramref name="assembly"/>; returns this object.</summary>
        /// <exception cref="ArgumentException">No such resource.</exception>
        public TelemetryOptions SchemaFromResource(Assembly assembly, string resourceName)
        {
            if (assembly == null) throw new ArgumentNullException("assembly");
            using (Stream s = assembly.GetManifestResourceStream(resourceName))
            {
                if (s == null) throw new ArgumentException("no embedded resource named " + resourceName, "resourceName");
                using (var r = new StreamReader(s, Encoding.UTF8))
                {
                    SchemaJson = r.ReadToEnd();
                }
            }
            return this;
        }

        /// <summary>
        /// The configuration JSON for tel_open. The schema text is inserted as it is (the library
        /// checks it); the other values are quoted.
        /// </summary>
        /// <exception cref="InvalidOperationException">Product, ProductVersion, Endpoint, StateDirectory or SchemaJson is not set, or only one of OhttpRelay and OhttpKeyConfig is.</exception>
        public string ToJson()
        {
            Require(Product, "Product");
            Require(ProductVersion, "ProductVersion");
            Require(Endpoint, "Endpoint");
            Require(StateDirectory, "StateDirectory");
            Require(SchemaJson, "SchemaJson");
            var sb = new StringBuilder("{");
            sb.Append("\"product\":").Append(Json.Quote(Product));
            sb.Append(",\"product_version\":").Append(Json.Quote(ProductVersion));
            sb.Append(",\"endpoint\":").Append(Json.Quote(Endpoint));
            sb.Append(",\"state_dir\":").Append(Json.Quote(StateDirectory));
            if (Proxy != null) sb.Append(",\"proxy\":").Append(Json.Quote(Proxy));
            if (CaCertificatePem != null) sb.Append(",\"ca_cert_pem\":").Append(Json.Quote(CaCertificatePem));
            if (Disabled) sb.Append(",\"disabled\":true");
            if (OhttpRelay != null || OhttpKeyConfig != null)
            {
                Require(OhttpRelay, "OhttpRelay");
                Require(OhttpKeyConfig, "OhttpKeyConfig");
                sb.Append(",\"ohttp\":{\"relay\":").Append(Json.Quote(OhttpRelay));
                sb.Append(",\"key_config\":").Append(Json.Quote(OhttpKeyConfig)).Append('}');
            }
            sb.Append(",\"schema\":").Append(SchemaJson.Trim());
            return sb.Append('}').ToString();
        }

        private static void Require(string value, string name)
        {
            if (string.IsNullOrEmpty(value)) throw new InvalidOperationException("TelemetryOptions." + name + " is not set");
        }
    }
}
