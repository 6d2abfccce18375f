//! The report: one JSON object, built the same way for the preview and for
//! the send, so the bytes the user was shown are the bytes that go out.
//!
//! Keys are emitted in sorted order (serde_json's default map), compact, UTF-8.

use crate::platform;
use crate::schema::{FieldValue, Schema, REPORT_FORMAT};
use serde_json::{Map, Value};

/// Values of the built-in fields, fixed for the life of a client.
#[derive(Clone, Debug)]
pub struct Builtins {
    pub os_family: String,
    pub os_version: String,
    pub arch: String,
    pub product: String,
    pub product_version: String,
    pub library_version: String,
}

impl Builtins {
    pub fn detect(product: &str, product_version: &str) -> Builtins {
        Builtins {
            os_family: platform::os_family().into(),
            os_version: platform::os_version(),
            arch: platform::arch().into(),
            product: product.into(),
            product_version: product_version.into(),
            library_version: crate::VERSION.into(),
        }
    }

    /// In the order of `schema::BUILTIN_FIELDS`.
    pub fn values(&self) -> [(&'static str, &str); 6] {
        [
            ("os_family", &self.os_family),
            ("os_version", &self.os_version),
            ("arch", &self.arch),
            ("product", &self.product),
            ("product_version", &self.product_version),
            ("library_version", &self.library_version),
        ]
    }
}

pub fn build(schema: &Schema, values: &[Option<FieldValue>], builtins: &Builtins, report_id: &str) -> String {
    let mut fields = Map::new();
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            fields.insert(schema.fields[i].name.clone(), schema.encode(i, v));
        }
    }
    let mut report = Map::new();
    for (name, value) in builtins.values() {
        report.insert(name.into(), Value::String(value.into()));
    }
    report.insert("fields".into(), Value::Object(fields));
    report.insert("format".into(), REPORT_FORMAT.into());
    report.insert("report_id".into(), report_id.into());
    report.insert("schema_digest".into(), schema.digest.clone().into());
    report.insert("schema_version".into(), schema.version.into());
    serde_json::to_string(&Value::Object(report)).expect("a Value always serializes")
}
