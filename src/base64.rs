//! Standard base64 decoding (RFC 4648 §4), for the two places the library
//! reads it: an OHTTP `key_config` and a PEM certificate (WinHTTP's
//! `ca_cert_pem`). Small enough not to need a crate.

/// The bytes of `s`: the standard alphabet, at most two `=` of padding
/// (optional); `None` for anything else, including a lone 6-bit tail or
/// tail bits that are not zero (no encoder writes those).
pub(crate) fn decode(s: &str) -> Option<Vec<u8>> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        // Only the low bits matter: the high ones are shifted out.
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (bits < 6 && acc & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn forms() {
        assert_eq!(decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode("aGVsbG8"), Some(b"hello".to_vec()));
        assert_eq!(decode("aGVsbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["aGVsbG8!", "a", "aGVsbG9", "aGVs bG8=", "aGVsbG8===", "aGVsbG8\n"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
