//! Errors of the safe core. Each carries a stable code (the value the C ABI
//! returns) and a message that names the argument, key or field at fault.

use std::fmt;

/// Stable error codes; their numbers are part of the C ABI (`TEL_ERR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    NullArgument = 1,
    InvalidUtf8 = 2,
    InvalidArgument = 3,
    Config = 4,
    Io = 5,
    Internal = 6,
    MalformedJson = 7,
    UnknownField = 8,
    WrongType = 9,
    ValueNotAllowed = 10,
    TooLarge = 11,
    Timeout = 12,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Code::Config, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(Code::Io, format!("{context}: {err}"))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Parses JSON text, mapping syntax errors to `MalformedJson` with `what` named.
/// An object with the same key twice is rejected too: which one wins is
/// implementation-defined, and `{"disabled": true, "disabled": false}` must
/// not quietly mean "enabled".
pub fn parse_json(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str::<strict::Strict>(text)
        .map(|s| s.0)
        .map_err(|e| Error::new(Code::MalformedJson, format!("{what} is not valid JSON: {e}")))
}

mod strict {
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};
    use std::fmt;

    /// A JSON value whose objects have no duplicate keys.
    pub struct Strict(pub Value);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            d.deserialize_any(StrictVisitor).map(Strict)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> std::result::Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(Strict(v)) = seq.next_element()? {
                items.push(v);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
            let mut m = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if m.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key \"{}\"", crate::schema::truncate(&key, 64))));
                }
                let Strict(v) = map.next_value()?;
                m.insert(key, v);
            }
            Ok(Value::Object(m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json() {
        let text = r#"{"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "c": 18446744073709551615}"#;
        assert_eq!(parse_json(text, "t").unwrap(), serde_json::from_str::<serde_json::Value>(text).unwrap());
        assert_eq!(parse_json("[]", "t").unwrap(), json!([]));
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        for text in [r#"{"disabled": true, "disabled": false}"#, r#"{"schema": {"fields": [{"name": "a", "name": "b"}]}}"#] {
            let e = parse_json(text, "the configuration").unwrap_err();
            assert_eq!(e.code, Code::MalformedJson);
            assert!(e.message.contains("duplicate key"), "{}", e.message);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = "[".repeat(100_000);
        assert_eq!(parse_json(&text, "t").unwrap_err().code, Code::MalformedJson);
    }
}
