using System;
using System.Runtime.InteropServices;
using System.Text;

namespace OptInTelemetry
{
    /// <summary>UTF-8 conversions at the native boundary (netstandard2.0 has no Marshal.PtrToStringUTF8).</summary>
    internal static class Utf8
    {
        // Throws on lone surrogates instead of silently sending U+FFFD.
        private static readonly UTF8Encoding Strict = new UTF8Encoding(false, true);

        /// <summary>
        /// NUL-terminated UTF-8 bytes of <paramref name="value"/>. Rejects null (unless
        /// <paramref name="allowNull"/>), embedded NUL characters (the library would see a
        /// truncated string) and invalid UTF-16 (lone surrogates).
        /// </summary>
        internal static byte[] Encode(string value, string paramName, bool allowNull = false)
        {
            if (value == null)
            {
                if (allowNull)
                {
                    return null;
                }
                throw new ArgumentNullException(paramName);
            }
            if (value.IndexOf('\0') >= 0)
            {
                throw new ArgumentException("The string contains a NUL character, which cannot cross the C boundary.", paramName);
            }
            byte[] bytes;
            try
            {
                int count = Strict.GetByteCount(value);
                bytes = new byte[count + 1];
                Strict.GetBytes(value, 0, value.Length, bytes, 0);
            }
            catch (EncoderFallbackException e)
            {
                throw new ArgumentException("The string is not valid UTF-16 (lone surrogate): " + e.Message, paramName, e);
            }
            return bytes; // last byte stays 0
        }

        /// <summary>Copies a NUL-terminated UTF-8 string; IntPtr.Zero gives null. Does not free.</summary>
        internal static string Decode(IntPtr p)
        {
            if (p == IntPtr.Zero)
            {
                return null;
            }
            int length = 0;
            while (Marshal.ReadByte(p, length) != 0)
            {
                length++;
            }
            if (length == 0)
            {
                return string.Empty;
            }
            byte[] bytes = new byte[length];
            Marshal.Copy(p, bytes, 0, length);
            return Encoding.UTF8.GetString(bytes);
        }

        /// <summary>JSON string literal (with quotes) for <paramref name="value"/>.</summary>
        internal static string JsonString(string value)
        {
            var sb = new StringBuilder(value.Length + 2);
            sb.Append('"');
            foreach (char c in value)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20)
                        {
                            sb.Append("\\u").Append(((int)c).ToString("x4"));
                        }
                        else
                        {
                            sb.Append(c);
                        }
                        break;
                }
            }
            sb.Append('"');
            return sb.ToString();
        }
    }
}
