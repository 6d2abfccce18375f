//! The configuration object given to `tel_open`. Unknown keys are errors: a
//! typo such as "disable" for "disabled" must not silently change behaviour.

use crate::consent::Scope;
use crate::error::{parse_json, Error, Result};
use crate::schema::{truncate, Schema};
use crate::transport;
use serde_json::Value;
use std::path::PathBuf;

pub const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub struct Config {
    pub product: String,
    pub product_version: String,
    pub endpoint: String,
    pub state_dir: PathBuf,
    pub schema: Schema,
    /// Machine-wide admin policy the host read from its own settings.
    pub disabled: bool,
    pub proxy: Option<String>,
    pub ca_cert_pem: Option<String>,
    /// Most identifying bits a schema may have (`Schema::total_bits`).
    pub max_bits: f64,
    /// Oblivious HTTP through a relay (`"ohttp"`), if configured.
    pub ohttp: Option<crate::oblivious::Ohttp>,
}

/// Default of `max_bits`: a report is then one of at most 2^32 possible ones.
pub const DEFAULT_MAX_BITS: f64 = 32.0;
pub const MAX_ENDPOINT_PATH: usize = 64;

const KEYS: &[&str] = &["product", "product_version", "endpoint", "state_dir", "schema", "disabled", "proxy", "ca_cert_pem", "max_bits", "ohttp"];

fn string<'a>(o: &'a serde_json::Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::config(format!("config.{key}: must be a string"))),
    }
}

fn required<'a>(o: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str> {
    string(o, key)?.ok_or_else(|| Error::config(format!("config.{key}: missing")))
}

/// Product names are short display names: letters, digits, space, `. _ + -`.
/// Public so a collector checks reports by the very same rule.
pub fn is_valid_product(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b'.' | b'_' | b'+' | b'-'))
        && !s.starts_with(' ')
        && !s.ends_with(' ')
}

fn check_product(s: &str) -> Result<()> {
    if is_valid_product(s) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "config.product: \"{}\" must be 1-64 of A-Z a-z 0-9 space . _ + -",
            truncate(s, 64)
        )))
    }
}

/// Most parts of a `product_version`.
const PRODUCT_VERSION_PARTS: usize = 4;
/// Most digits of each part of a `product_version`.
const PRODUCT_VERSION_DIGITS: usize = 5;

/// 1 to 4 dot-separated decimal numbers of 1 to 5 digits each (`24.1.3`,
/// `10.2.1.21234`): room for a release and a build number, none for a
/// per-installation id, a date-and-time stamp or a name. A release channel
/// is a `choice` field of the schema instead. Public so a collector checks
/// reports by the very same rule.
pub fn is_valid_product_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() <= PRODUCT_VERSION_PARTS
        && parts.iter().all(|p| (1..=PRODUCT_VERSION_DIGITS).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
}

fn check_version(s: &str) -> Result<()> {
    if is_valid_product_version(s) {
        Ok(())
    } else {
        Err(Error::config(format!(
            "config.product_version: \"{}\" must be 1 to {PRODUCT_VERSION_PARTS} dot-separated decimal numbers of 1 to {PRODUCT_VERSION_DIGITS} digits each (e.g. 24.1.3 or 10.2.1.21234), nothing else; report a release channel as a choice field",
            truncate(s, 64)
        )))
    }
}

/// What the endpoint may carry besides scheme and host: it leaves with every
/// report and is bound to the consent, so nothing in it may vary per user or
/// installation. No query, fragment or user info; a short plain path.
fn check_endpoint_parts(url: &str) -> Result<()> {
    check_url_parts("config.endpoint", url)
}

/// The endpoint's rules for any URL of the configuration (`key` names it in
/// messages): the relay's URL is bound to the consent and leaves with every
/// report just the same.
pub(crate) fn check_url_parts(key: &str, url: &str) -> Result<()> {
    let bad = |part: &str| -> Result<()> { Err(Error::config(format!("{key}: must not have a {part}"))) };
    if url.contains('#') {
        return bad("fragment (#...)");
    }
    if url.contains('?') {
        return bad("query (?...)");
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return bad("user info (user@ or user:password@ carries credentials or names)");
    }
    if url.contains("://") {
        check_authority(key, authority)?; // without a scheme, transport::check_endpoint says what is wrong
    }
    let path_ok = path.chars().count() <= MAX_ENDPOINT_PATH
        && path.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'.' | b'-'));
    if !path_ok {
        return Err(Error::config(format!(
            "{key}: the path \"{}\" must be at most {MAX_ENDPOINT_PATH} characters of A-Z a-z 0-9 / _ . -",
            truncate(path, 80)
        )));
    }
    Ok(())
}

/// The URL parser takes almost any characters as a host (`c.example;jsmith`,
/// `c$example`, 2000 characters, an IPv6 zone id such as `%25jsmith`) and
/// any digits as a port (`:0000443`, `:99999`). Such a host or port either
/// never works, or carries text or extra variants in the Host header, the
/// TLS server name and the DNS query of every report. So: a DNS name or an
/// IP address, and a port in its one decimal form.
fn check_authority(key: &str, authority: &str) -> Result<()> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').unwrap_or((v6, ""));
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(Error::config(format!(
                    "{key}: the host \"[{}]\" must be an IPv6 address in brackets, without a zone id",
                    truncate(addr, 64)
                )));
            }
            match after {
                "" => (None, None),
                p => match p.strip_prefix(':') {
                    Some(port) => (None, Some(port)),
                    None => return Err(Error::config(format!("{key}: after the host \"[{}]\" only a :port may follow", truncate(addr, 64)))),
                },
            }
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        },
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(Error::config(format!(
                "{key}: the host \"{}\" must be a DNS name (at most 253 characters; dot-separated labels of 1-63 of A-Z a-z 0-9 -, not starting or ending with -) or an IP address",
                truncate(host, 64)
            )));
        }
    }
    if let Some(port) = port {
        let ok = (1..=5).contains(&port.len())
            && port.bytes().all(|c| c.is_ascii_digit())
            && !port.starts_with('0')
            && port.parse::<u32>().is_ok_and(|n| n <= 65535);
        if !ok {
            return Err(Error::config(format!(
                "{key}: the port \"{}\" must be a number from 1 to 65535 without leading zeros (or leave out \":port\")",
                truncate(port, 16)
            )));
        }
    }
    Ok(())
}

/// Refuses a schema whose identifying-bits bound exceeds `max_bits`.
fn check_bits(schema: &Schema, max_bits: f64) -> Result<()> {
    let total = schema.total_bits();
    if total <= max_bits {
        return Ok(());
    }
    let mut widest: Vec<(&str, f64)> = schema.fields.iter().map(|f| (f.name.as_str(), f.kind.bits())).collect();
    widest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let named: Vec<String> = widest.iter().take(3).map(|(n, b)| format!("\"{n}\" {b:.2}")).collect();
    Err(Error::config(format!(
        "config.schema: {total:.2} identifying bits, above config.max_bits {max_bits}; the widest fields: {} (use buckets, fewer values or fewer fields)",
        named.join(", ")
    )))
}

impl Config {
    pub fn parse(text: &str) -> Result<Config> {
        let v = parse_json(text, "the configuration")?;
        let o = v.as_object().ok_or_else(|| Error::config("the configuration must be a JSON object"))?;
        if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(format!("config: unknown key \"{}\" (allowed: {})", truncate(k, 64), KEYS.join(", "))));
        }
        let product = required(o, "product")?;
        check_product(product)?;
        let product_version = required(o, "product_version")?;
        check_version(product_version)?;
        let endpoint = required(o, "endpoint")?;
        check_endpoint_parts(endpoint)?;
        transport::check_endpoint(endpoint).map_err(|m| Error::config(format!("config.endpoint: {m}")))?;
        let state_dir = required(o, "state_dir")?;
        if state_dir.is_empty() {
            return Err(Error::config("config.state_dir: must not be empty"));
        }
        let schema = Schema::from_json(o.get("schema").ok_or_else(|| Error::config("config.schema: missing"))?)?;
        let max_bits = match o.get("max_bits") {
            None | Some(Value::Null) => DEFAULT_MAX_BITS,
            Some(v) => v
                .as_f64()
                .filter(|b| b.is_finite() && *b >= 0.0)
                .ok_or_else(|| Error::config("config.max_bits: must be a non-negative number"))?,
        };
        check_bits(&schema, max_bits)?;
        let disabled = match o.get("disabled") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(Error::config("config.disabled: must be true or false")),
        };
        let proxy = string(o, "proxy")?.map(str::to_string);
        if let Some(p) = &proxy {
            transport::check_proxy(p).map_err(|m| Error::config(format!("config.proxy: {m}")))?;
        }
        let ca_cert_pem = string(o, "ca_cert_pem")?.map(str::to_string);
        if let Some(pem) = &ca_cert_pem {
            transport::parse_ca(pem).map_err(|m| Error::config(format!("config.ca_cert_pem: {m}")))?;
        }
        let ohttp = match o.get("ohttp") {
            None | Some(Value::Null) => None,
            Some(v) => Some(crate::oblivious::Ohttp::parse(v)?),
        };
        Ok(Config {
            product: product.into(),
            product_version: product_version.into(),
            endpoint: endpoint.into(),
            state_dir: PathBuf::from(state_dir),
            schema,
            disabled,
            proxy,
            ca_cert_pem,
            max_bits,
            ohttp,
        })
    }

    /// What a consent answer given under this configuration covers.
    pub fn scope(&self) -> Scope<'_> {
        Scope { schema: &self.schema, product: &self.product, product_version: &self.product_version, endpoint: &self.endpoint, ohttp: self.ohttp.as_ref().map(|o| o.digest.as_str()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_version_is_numbers_only() {
        for ok in ["1", "0", "24.1.3", "10.2.1.21234", "99999.0.1", "99999.99999.99999.99999", "2026.11.29.1"] {
            assert!(is_valid_product_version(ok), "{ok}");
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        let bad = [
            "", ".", "1.2.3.4.5", "1..2", "1.", ".1", "1234567890", "123456", "1.234567", "999999999.1.2.3",
            "1.0-beta", "1.2-beta", "24.1.3+abc", "v1", " 1", "1 ", "1,2", "-1", "+1", "1.2.3.4.", "١.٢", "1.2\n",
        ];
        for bad in bad {
            assert!(!is_valid_product_version(bad), "{bad:?}");
            let e = check_version(bad).unwrap_err();
            assert_eq!(e.code, crate::error::Code::Config, "{bad:?}");
            assert!(e.message.contains("config.product_version") && e.message.contains("1 to 5 digits"), "{bad:?}: {}", e.message);
        }
    }

    /// `tel_open` refuses a configuration whose product_version breaks the rule.
    #[test]
    fn open_refuses_a_product_version_outside_the_rule() {
        let config = |v: &str| {
            serde_json::json!({"product": "P", "product_version": v, "endpoint": "http://127.0.0.1:9/r", "state_dir": "/nonexistent/optin",
                "schema": {"version": 1, "fields": [{"name": "t", "type": "bool", "description": {"en": "x"}}]}})
            .to_string()
        };
        assert_eq!(Config::parse(&config("99999.0.1")).unwrap().product_version, "99999.0.1");
        for bad in ["1.234567", "1.2.3.4.5", "1.2-beta", ""] {
            let e = Config::parse(&config(bad)).unwrap_err();
            assert_eq!(e.code, crate::error::Code::Config, "{bad}");
            assert!(e.message.starts_with("config.product_version:"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn endpoint_parts_name_the_part_at_fault() {
        for ok in ["https://c.example", "https://c.example/v1/report", "http://127.0.0.1:9/a_b.c-d"] {
            assert!(check_endpoint_parts(ok).is_ok(), "{ok}");
        }
        let long = format!("https://c.example/{}", "a".repeat(64));
        for (bad, part) in [
            ("https://c.example/r?x=1", "query"),
            ("https://c.example/r#x", "fragment"),
            ("https://jsmith@c.example/r", "user info"),
            ("https://c.example/j%20smith", "path"),
            (long.as_str(), "path"),
        ] {
            let e = check_endpoint_parts(bad).unwrap_err();
            assert!(e.message.contains(part), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn endpoint_host_and_port_have_one_plain_form() {
        let long_label = format!("https://{}.example/r", "a".repeat(64));
        let long_host = format!("https://{}example/r", "abcdefghi.".repeat(25));
        for ok in ["https://c.example:443/r", "https://C.Example/r", "https://xn--bcher-kva.example", "https://[::1]:9/r", "https://[::1]", "http://127.0.0.1:65535/"] {
            assert!(check_endpoint_parts(ok).is_ok(), "{ok}");
        }
        for (bad, part) in [
            ("https://c.example;jsmith/r", "host"),
            ("https://c$example/r", "host"),
            ("https://c_example/r", "host"),
            ("https://-c.example/r", "host"),
            ("https://c.example./r", "host"),
            ("https://", "host"),
            (long_label.as_str(), "host"),
            (long_host.as_str(), "host"),
            ("https://[fe80::1%25jsmith]/r", "zone id"),
            ("https://[::1]x/r", "port"),
            ("https://c.example:0443/r", "port"),
            ("https://c.example:/r", "port"),
            ("https://c.example:65536/r", "port"),
            ("https://c.example:0/r", "port"),
            ("https://c.example:443:1/r", "port"),
        ] {
            let e = check_endpoint_parts(bad).unwrap_err();
            assert!(e.message.contains(part), "{bad}: {}", e.message);
        }
    }
}
