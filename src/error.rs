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
pub fn parse_json(text: &str, what: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::new(Code::MalformedJson, format!("{what} is not valid JSON: {e}")))
}
