//! Binary HTTP (RFC 9292), only what the Oblivious HTTP client needs: the
//! known-length encoding of one request (what the gateway forwards to the
//! collector) and the decoding of the known-length response that comes back.
//!
//! The response arrives from the gateway through the relay: every length in
//! it is checked against the bytes that are really there before it is used,
//! nothing is allocated from a length the message gives, and any malformed
//! input is an error, never a panic.

/// Framing indicators (RFC 9292 §3.3): known-length request and response.
const KNOWN_LENGTH_REQUEST: u8 = 0;
const KNOWN_LENGTH_RESPONSE: u64 = 1;
/// Indeterminate-length response: valid Binary HTTP, but not what this
/// client asks gateways for; named in the error so that it is recognisable.
const INDETERMINATE_LENGTH_RESPONSE: u64 = 3;

/// The largest value a variable-length integer (RFC 9000 §16) can carry.
const VARINT_MAX: u64 = (1 << 62) - 1;

/// Appends `v` as a variable-length integer (RFC 9000 §16), in its shortest
/// form: the two high bits of the first byte say whether 1, 2, 4 or 8 bytes
/// follow. `None` above 2^62 - 1, which no length of ours reaches.
fn put_varint(out: &mut Vec<u8>, v: u64) -> Option<()> {
    match v {
        0..=0x3f => out.push(v as u8),
        0x40..=0x3fff => out.extend_from_slice(&(v as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3fff_ffff => out.extend_from_slice(&(v as u32 | 0x8000_0000).to_be_bytes()),
        0x4000_0000..=VARINT_MAX => out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes()),
        _ => return None,
    }
    Some(())
}

/// Appends `bytes` with its length in front, as every string, field line and
/// section of a known-length message is written.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    put_varint(out, u64::try_from(bytes.len()).ok()?)?;
    out.extend_from_slice(bytes);
    Some(())
}

/// A known-length Binary HTTP request (RFC 9292 §3): control data (method,
/// scheme, authority, path), the header section, the content and an empty
/// trailer section, without padding. `headers` are (lower-case name, value).
/// `None` only for a part longer than 2^62 - 1 bytes.
pub fn request(method: &str, scheme: &str, authority: &str, path: &str, headers: &[(&str, &[u8])], content: &[u8]) -> Option<Vec<u8>> {
    let mut fields = Vec::new();
    for (name, value) in headers {
        put_bytes(&mut fields, name.as_bytes())?;
        put_bytes(&mut fields, value)?;
    }
    let mut out = Vec::with_capacity(16 + method.len() + scheme.len() + authority.len() + path.len() + fields.len() + content.len());
    out.push(KNOWN_LENGTH_REQUEST);
    for part in [method, scheme, authority, path] {
        put_bytes(&mut out, part.as_bytes())?;
    }
    put_bytes(&mut out, &fields)?;
    put_bytes(&mut out, content)?;
    // The trailer section is written (empty) rather than truncated: the same
    // bytes the bhttp crate writes, which the collector's gateway was tested with.
    put_varint(&mut out, 0)?;
    Some(out)
}

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A varint, a length or a section runs past the end of the message.
    Truncated,
    /// A framing indicator other than "known-length response".
    Framing(u64),
    /// A status code outside 100–599.
    Status(u64),
    /// A field line with an empty name.
    EmptyName,
    /// Bytes after the trailer section that are not zero padding.
    Padding,
    /// Informational responses only, no final one.
    NoFinalResponse,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Truncated => f.write_str("truncated (a length runs past the end)"),
            Malformed::Framing(INDETERMINATE_LENGTH_RESPONSE) => f.write_str("an indeterminate-length response (only known-length responses are read)"),
            Malformed::Framing(n) => write!(f, "framing indicator {n} is not a known-length response (1)"),
            Malformed::Status(n) => write!(f, "status {n} is not between 100 and 599"),
            Malformed::EmptyName => f.write_str("a field with an empty name"),
            Malformed::Padding => f.write_str("non-zero bytes after the trailer section"),
            Malformed::NoFinalResponse => f.write_str("no final response after the informational ones"),
        }
    }
}

/// Reads a message front to back; each step checks the remaining length
/// first, so no index ever leaves the slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let first = *self.rest.first().ok_or(Malformed::Truncated)?;
        let len = 1usize << (first >> 6);
        let bytes = self.rest.get(..len).ok_or(Malformed::Truncated)?;
        let v = bytes[1..].iter().fold(u64::from(first & 0x3f), |v, b| (v << 8) | u64::from(*b));
        self.rest = &self.rest[len..];
        Ok(v)
    }

    /// A length-prefixed part, as a slice of the message (no copy).
    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| Malformed::Truncated)?;
        if n > self.rest.len() {
            return Err(Malformed::Truncated);
        }
        let (part, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(part)
    }

    /// A known-length field section, checked to consist of whole field lines
    /// with non-empty names.
    fn fields(&mut self) -> Result<Fields<'a>, Malformed> {
        let section = self.bytes()?;
        let fields = Fields { section };
        for line in fields.lines() {
            line?;
        }
        Ok(fields)
    }

    /// RFC 9292 §3.8: a message may end early where the remaining sections
    /// are empty (the RFC 9458 example response is just `01 40c8`): an
    /// absent section reads as an empty one.
    fn fields_or_empty(&mut self) -> Result<Fields<'a>, Malformed> {
        if self.rest.is_empty() {
            return Ok(Fields { section: &[] });
        }
        self.fields()
    }

    fn bytes_or_empty(&mut self) -> Result<&'a [u8], Malformed> {
        if self.rest.is_empty() {
            return Ok(&[]);
        }
        self.bytes()
    }
}

/// A field section of a response: its (name, value) lines in order.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    section: &'a [u8],
}

impl<'a> Fields<'a> {
    fn lines(&self) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), Malformed>> {
        let mut r = Reader { rest: self.section };
        std::iter::from_fn(move || {
            if r.rest.is_empty() {
                return None;
            }
            let line = r.bytes().and_then(|name| {
                if name.is_empty() {
                    return Err(Malformed::EmptyName);
                }
                Ok((name, r.bytes()?))
            });
            if line.is_err() {
                r.rest = &[]; // one error, then the end
            }
            Some(line)
        })
    }

    /// The first value of the field `name` (ASCII case-insensitive; Binary
    /// HTTP names are lower case, a sender that wrote them otherwise still
    /// means the same field).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.lines().filter_map(Result::ok).find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }
}

/// The final response of a known-length Binary HTTP message.
#[derive(Debug)]
pub struct Response<'a> {
    pub status: u16,
    pub headers: Fields<'a>,
    pub content: &'a [u8],
}

/// Reads a known-length response (RFC 9292 §3): informational (1xx)
/// responses are skipped, the final one is returned; the trailer section is
/// checked and skipped (nothing in it matters to a report); trailing
/// sections may be truncated (empty); what follows must be zero padding.
pub fn response(message: &[u8]) -> Result<Response<'_>, Malformed> {
    let mut r = Reader { rest: message };
    match r.varint()? {
        KNOWN_LENGTH_RESPONSE => {}
        other => return Err(Malformed::Framing(other)),
    }
    let status = loop {
        if r.rest.is_empty() {
            return Err(if message.len() > 1 { Malformed::NoFinalResponse } else { Malformed::Truncated });
        }
        match r.varint()? {
            // An informational response always carries its header section.
            100..=199 => {
                r.fields()?;
            }
            s @ 200..=599 => break s as u16,
            other => return Err(Malformed::Status(other)),
        }
    };
    let headers = r.fields_or_empty()?;
    let content = r.bytes_or_empty()?;
    r.fields_or_empty()?; // the trailers
    if r.rest.iter().any(|b| *b != 0) {
        return Err(Malformed::Padding);
    }
    Ok(Response { status, headers, content })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes from hex digits (whitespace ignored): the RFCs' test vectors.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn varints_take_their_shortest_form_and_read_back() {
        for (v, len) in [(0u64, 1), (63, 1), (64, 2), (0x3fff, 2), (0x4000, 4), (0x3fff_ffff, 4), (0x4000_0000, 8), (VARINT_MAX, 8)] {
            let mut out = Vec::new();
            put_varint(&mut out, v).unwrap();
            assert_eq!(out.len(), len, "{v}");
            let mut r = Reader { rest: &out };
            assert_eq!(r.varint(), Ok(v));
            assert!(r.rest.is_empty());
            for cut in 0..len {
                assert_eq!(Reader { rest: &out[..cut] }.varint(), Err(Malformed::Truncated), "{v} cut at {cut}");
            }
        }
        assert_eq!(put_varint(&mut Vec::new(), VARINT_MAX + 1), None);
        // RFC 9000 §A.1's examples.
        assert_eq!(Reader { rest: &hex("c2197c5eff14e88c") }.varint(), Ok(151_288_809_941_952_652));
        assert_eq!(Reader { rest: &hex("9d7f3e7d") }.varint(), Ok(494_878_333));
        assert_eq!(Reader { rest: &hex("7bbd") }.varint(), Ok(15_293));
        // A longer form than needed is still the same number.
        assert_eq!(Reader { rest: &hex("4025") }.varint(), Ok(37));
    }

    /// RFC 9458 Appendix A's request is GET https://example.com/ without
    /// header, content or trailers; ours writes those (empty) sections out.
    #[test]
    fn a_request_is_the_rfc_9458_example_layout() {
        let ours = request("GET", "https", "example.com", "/", &[], b"").unwrap();
        assert_eq!(ours, [hex("00034745540568747470730b6578616d706c652e636f6d012f"), vec![0, 0, 0]].concat());
        let with = request("POST", "https", "c.example", "/v1/report", &[("content-type", b"application/json")], b"{}").unwrap();
        let expected = hex(
            "00 04 504f5354 05 6874747073 09 632e6578616d706c65 0a 2f76312f7265706f7274
             1e 0c 636f6e74656e742d74797065 10 6170706c69636174696f6e2f6a736f6e
             02 7b7d 00",
        );
        assert_eq!(with, expected);
    }

    #[test]
    fn the_rfc_9458_example_response_is_200_with_nothing_else() {
        let m = hex("0140c8");
        let r = response(&m).unwrap();
        assert_eq!((r.status, r.content, r.headers.get("retry-after")), (200, &b""[..], None));
    }

    #[test]
    fn informational_responses_are_skipped_and_fields_read() {
        // 103 with a link header, then 429 with retry-after, content, a trailer and padding.
        let mut m = vec![1];
        put_varint(&mut m, 103).unwrap();
        let mut f = Vec::new();
        put_bytes(&mut f, b"link").unwrap();
        put_bytes(&mut f, b"</a>").unwrap();
        put_bytes(&mut m, &f).unwrap();
        put_varint(&mut m, 429).unwrap();
        let mut h = Vec::new();
        for (n, v) in [(&b"content-type"[..], &b"application/json"[..]), (b"Retry-After", b"120")] {
            put_bytes(&mut h, n).unwrap();
            put_bytes(&mut h, v).unwrap();
        }
        put_bytes(&mut m, &h).unwrap();
        put_bytes(&mut m, b"{\"error\":\"slow down\"}").unwrap();
        let mut t = Vec::new();
        put_bytes(&mut t, b"x-t").unwrap();
        put_bytes(&mut t, b"1").unwrap();
        put_bytes(&mut m, &t).unwrap();
        m.extend_from_slice(&[0; 7]);
        let r = response(&m).unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.headers.get("retry-after"), Some(&b"120"[..]));
        assert_eq!(r.headers.get("content-type"), Some(&b"application/json"[..]));
        assert_eq!(r.content, b"{\"error\":\"slow down\"}");
        // A malformed trailer section is an error like any other section.
        let mut bad = m.clone();
        let at = bad.len() - 7 - 2; // the length of the trailer's value
        bad[at] = 5;
        assert_eq!(response(&bad).unwrap_err(), Malformed::Truncated);
        // Every cut of it: an error or (at a section boundary) a shorter message, never a panic.
        for cut in 0..m.len() {
            let _ = response(&m[..cut]);
        }
    }

    #[test]
    fn hostile_responses_are_errors_not_panics() {
        let cases: &[(&str, Malformed)] = &[
            ("", Malformed::Truncated),
            ("01", Malformed::Truncated),
            ("00 40c8", Malformed::Framing(0)),
            ("03 40c8 00", Malformed::Framing(3)),
            ("c0", Malformed::Truncated),                           // an 8-byte varint with 0 bytes after it
            ("01 c000000000000000", Malformed::Status(0)),
            ("01 7fff", Malformed::Status(0x3fff)),
            ("01 4063", Malformed::Status(99)),
            ("01 4064", Malformed::Truncated),                      // a 100 without its header section
            ("01 4064 00", Malformed::NoFinalResponse),
            ("01 40c8 05 0161", Malformed::Truncated),              // header section longer than the message
            ("01 40c8 ffffffffffffffff", Malformed::Truncated),     // a length of 2^62 - 1
            ("01 40c8 02 0161", Malformed::Truncated),              // a name without its value
            ("01 40c8 02 0000", Malformed::EmptyName),
            ("01 40c8 00 05 6869", Malformed::Truncated),           // content shorter than said
            ("01 40c8 00 00 00 0001", Malformed::Padding),
            ("01 40c8 00 00 00 00 ff", Malformed::Padding),
        ];
        for (h, want) in cases {
            assert_eq!(response(&hex(h)).map(|r| r.status).unwrap_err(), *want, "{h}");
        }
        // Random bytes behind a valid framing indicator and status: an answer or an error, never a panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..20_000 {
            let mut m = hex("01 40c8");
            for _ in 0..(n % 64) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                m.push(x as u8);
            }
            if let Ok(r) = response(&m) {
                assert!(r.content.len() <= m.len());
            }
        }
        // Truncated after the final status, after the headers, after the content: valid and empty.
        assert_eq!(response(&hex("01 40c8 00")).unwrap().status, 200);
        assert_eq!(response(&hex("01 40c8 00 02 6869")).unwrap().content, b"hi");
    }
}
