// The binding's small JSON reader for the typed models (ReportDescription,
// TelemetryStatus, SentReport): no dependency beyond netstandard2.0 / mscorlib.
// Objects are read as Dictionary<string, object>, arrays as List<object>, numbers
// as long (or double), plus string, bool and null. Only ever given the library's
// own output; tested in tests/Tests.cs against real calls.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace OptInTelemetry
{
    internal static class Json
    {
        /// <summary>A JSON string literal of <paramref name="s"/> (quotes, backslashes and control characters escaped).</summary>
        internal static string Quote(string s)
        {
            var sb = new StringBuilder("\"");
            foreach (char c in s)
            {
                if (c == '"' || c == '\\') sb.Append('\\').Append(c);
                else if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                else sb.Append(c);
            }
            return sb.Append('"').ToString();
        }

        internal static object Parse(string text)
        {
            int i = 0;
            object value = ReadValue(text, ref i);
            SkipWhitespace(text, ref i);
            if (i != text.Length)
            {
                throw new FormatException("trailing characters at offset " + i);
            }
            return value;
        }

        /// <summary>Parse(text) as an object.</summary>
        internal static Dictionary<string, object> Object(string text)
        {
            return (Dictionary<string, object>)Parse(text);
        }

        /// <summary>Follows a path of keys (string) and indexes (int); null when absent.</summary>
        internal static object Get(object root, params object[] path)
        {
            object current = root;
            foreach (object step in path)
            {
                var obj = current as Dictionary<string, object>;
                var list = current as List<object>;
                if (step is string && obj != null)
                {
                    object next;
                    current = obj.TryGetValue((string)step, out next) ? next : null;
                }
                else if (step is int && list != null)
                {
                    int index = (int)step;
                    current = index >= 0 && index < list.Count ? list[index] : null;
                }
                else
                {
                    return null;
                }
            }
            return current;
        }

        private static void SkipWhitespace(string s, ref int i)
        {
            while (i < s.Length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            {
                i++;
            }
        }

        private static object ReadValue(string s, ref int i)
        {
            SkipWhitespace(s, ref i);
            if (i >= s.Length)
            {
                throw new FormatException("unexpected end of JSON");
            }
            char c = s[i];
            if (c == '{')
            {
                i++;
                var obj = new Dictionary<string, object>();
                SkipWhitespace(s, ref i);
                if (i < s.Length && s[i] == '}')
                {
                    i++;
                    return obj;
                }
                while (true)
                {
                    SkipWhitespace(s, ref i);
                    string key = ReadString(s, ref i);
                    SkipWhitespace(s, ref i);
                    Expect(s, ref i, ':');
                    obj[key] = ReadValue(s, ref i);
                    SkipWhitespace(s, ref i);
                    if (i < s.Length && s[i] == ',')
                    {
                        i++;
                        continue;
                    }
                    Expect(s, ref i, '}');
                    return obj;
                }
            }
            if (c == '[')
            {
                i++;
                var list = new List<object>();
                SkipWhitespace(s, ref i);
                if (i < s.Length && s[i] == ']')
                {
                    i++;
                    return list;
                }
                while (true)
                {
                    list.Add(ReadValue(s, ref i));
                    SkipWhitespace(s, ref i);
                    if (i < s.Length && s[i] == ',')
                    {
                        i++;
                        continue;
                    }
                    Expect(s, ref i, ']');
                    return list;
                }
            }
            if (c == '"')
            {
                return ReadString(s, ref i);
            }
            if (string.CompareOrdinal(s, i, "true", 0, 4) == 0)
            {
                i += 4;
                return true;
            }
            if (string.CompareOrdinal(s, i, "false", 0, 5) == 0)
            {
                i += 5;
                return false;
            }
            if (string.CompareOrdinal(s, i, "null", 0, 4) == 0)
            {
                i += 4;
                return null;
            }
            int start = i;
            while (i < s.Length && "+-0123456789.eE".IndexOf(s[i]) >= 0)
            {
                i++;
            }
            if (start == i)
            {
                throw new FormatException("unexpected character '" + c + "' at offset " + i);
            }
            string number = s.Substring(start, i - start);
            long l;
            if (long.TryParse(number, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out l))
            {
                return l;
            }
            return double.Parse(number, NumberStyles.Float, CultureInfo.InvariantCulture);
        }

        private static void Expect(string s, ref int i, char c)
        {
            if (i >= s.Length || s[i] != c)
            {
                throw new FormatException("expected '" + c + "' at offset " + i);
            }
            i++;
        }

        private static string ReadString(string s, ref int i)
        {
            Expect(s, ref i, '"');
            var sb = new StringBuilder();
            while (true)
            {
                if (i >= s.Length)
                {
                    throw new FormatException("unterminated string");
                }
                char c = s[i++];
                if (c == '"')
                {
                    return sb.ToString();
                }
                if (c != '\\')
                {
                    sb.Append(c);
                    continue;
                }
                char e = s[i++];
                switch (e)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u':
                        sb.Append((char)int.Parse(s.Substring(i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        i += 4;
                        break;
                    default: throw new FormatException("bad escape \\" + e);
                }
            }
        }
    }
}
