//! The configuration object given to `tel_open`. Unknown keys are errors: a
//! typo such as "disable" for "disabled" must not silently change behaviour.

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
}

const KEYS: &[&str] = &["product", "product_version", "endpoint", "state_dir", "schema", "disabled", "proxy", "ca_cert_pem"];

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
fn check_product(s: &str) -> Result<()> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b' ' | b'.' | b'_' | b'+' | b'-'))
        && !s.starts_with(' ')
        && !s.ends_with(' ');
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "config.product: \"{}\" must be 1-64 of A-Z a-z 0-9 space . _ + -",
            truncate(s, 64)
        )))
    }
}

fn check_version(s: &str) -> Result<()> {
    let ok = (1..=32).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!("config.product_version: \"{}\" must be 1-32 of A-Z a-z 0-9 . + - _", truncate(s, 64))))
    }
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
        transport::check_endpoint(endpoint).map_err(|m| Error::config(format!("config.endpoint: {m}")))?;
        let state_dir = required(o, "state_dir")?;
        if state_dir.is_empty() {
            return Err(Error::config("config.state_dir: must not be empty"));
        }
        let schema = Schema::from_json(o.get("schema").ok_or_else(|| Error::config("config.schema: missing"))?)?;
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
        Ok(Config {
            product: product.into(),
            product_version: product_version.into(),
            endpoint: endpoint.into(),
            state_dir: PathBuf::from(state_dir),
            schema,
            disabled,
            proxy,
            ca_cert_pem,
        })
    }
}
