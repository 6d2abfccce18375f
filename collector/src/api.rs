//! Admin listener reads: `/api/v1/*` (JSON) and the dashboard at `/`, every
//! figure read from a stored weekly release ([`crate::release`]; nothing is
//! computed from raw reports here); bearer-token access control
//! (constant-time comparison) and the dashboard's security headers.

use crate::privacy::Week;
use crate::published;
use crate::release::Release;
use crate::storage::Store;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The dashboard's policy: nothing from elsewhere, no script at all, styles
/// only from our own stylesheet.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A secret that never shows up in Debug output.
#[derive(Clone, Default)]
pub struct Token(pub Option<Vec<u8>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Token(***)" } else { "Token(none)" })
    }
}

/// Equal in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

/// Middleware: with a token configured, `Authorization: Bearer <token>` or 401.
pub async fn require_token<S: Store>(State(state): State<Arc<AppState<S>>>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.options.admin_token.0 {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().as_bytes().to_vec())
            .unwrap_or_default();
        if !constant_time_eq(&given, token) {
            let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

pub fn json_error(code: StatusCode, reason: &str) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], format!("{{\"error\":\"{reason}\"}}\n")).into_response()
}

fn json(v: Value) -> Response {
    let mut body = v.to_string();
    body.push('\n');
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn storage_failed(e: crate::storage::StoreError) -> Response {
    eprintln!("storage error: {e}");
    json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
}

/// Query parameters, percent-decoded (`+` is a space).
pub fn query(uri: &Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn current_week<S>(state: &AppState<S>) -> Week {
    Week::of_unix((state.clock)())
}

/// The stored release the query asks for (`product`, and `week` or the
/// newest released one), or the answer to send instead. Only registered
/// products are known here.
async fn requested_release<S: Store>(state: &AppState<S>, q: &HashMap<String, String>) -> Result<Release, Box<Response>> {
    let product = q.get("product").ok_or_else(|| Box::new(json_error(StatusCode::BAD_REQUEST, "product_missing")))?;
    let week = match q.get("week") {
        Some(w) => Some(Week::parse(w).ok_or_else(|| Box::new(json_error(StatusCode::BAD_REQUEST, "bad_week")))?.to_string()),
        None => None,
    };
    let products = state.store.products().await.map_err(|e| Box::new(storage_failed(e)))?;
    if !products.iter().any(|p| &p.name == product) {
        return Err(Box::new(json_error(StatusCode::NOT_FOUND, "unknown_product")));
    }
    let week = match week {
        Some(w) => w,
        None => match state.store.released_weeks(product).await.map_err(|e| Box::new(storage_failed(e)))?.pop() {
            Some(w) => w,
            None => return Err(Box::new(json_error(StatusCode::NOT_FOUND, "week_not_released"))),
        },
    };
    match state.store.release(product, &week).await.map_err(|e| Box::new(storage_failed(e)))? {
        Some(body) => Release::from_json(&body).map_err(|e| {
            eprintln!("{e}");
            Box::new(json_error(StatusCode::INTERNAL_SERVER_ERROR, "bad_release"))
        }),
        None => Err(Box::new(json_error(StatusCode::NOT_FOUND, "week_not_released"))),
    }
}

pub async fn products<S: Store>(State(state): State<Arc<AppState<S>>>) -> Response {
    match state.store.products().await {
        Ok(p) => json(json!({ "products": p.into_iter().map(|p| p.name).collect::<Vec<_>>() })),
        Err(e) => storage_failed(e),
    }
}

/// Weeks with a release (of the given product, or of any), and the current week.
pub async fn weeks<S: Store>(State(state): State<Arc<AppState<S>>>, uri: Uri) -> Response {
    let q = query(&uri);
    let products = match state.store.products().await {
        Ok(p) => p,
        Err(e) => return storage_failed(e),
    };
    let mut weeks = BTreeSet::new();
    for p in products.iter().filter(|p| q.get("product").is_none_or(|want| *want == p.name)) {
        match state.store.released_weeks(&p.name).await {
            Ok(w) => weeks.extend(w),
            Err(e) => return storage_failed(e),
        }
    }
    json(json!({ "weeks": weeks, "current": current_week(&state).to_string() }))
}

pub async fn fields<S: Store>(State(state): State<Arc<AppState<S>>>, uri: Uri) -> Response {
    match requested_release(&state, &query(&uri)).await {
        Ok(r) => json(published::fields(&r)),
        Err(r) => *r,
    }
}

pub async fn mean<S: Store>(State(state): State<Arc<AppState<S>>>, uri: Uri) -> Response {
    let q = query(&uri);
    let r = match requested_release(&state, &q).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(field) = q.get("field") else { return json_error(StatusCode::BAD_REQUEST, "field_missing") };
    match published::mean(&r, field) {
        Some(v) => json(v),
        None => json_error(StatusCode::NOT_FOUND, "unknown_field"),
    }
}

pub async fn crosstab<S: Store>(State(state): State<Arc<AppState<S>>>, uri: Uri) -> Response {
    let q = query(&uri);
    let r = match requested_release(&state, &q).await {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let (Some(a), Some(b)) = (q.get("a"), q.get("b")) else { return json_error(StatusCode::BAD_REQUEST, "field_missing") };
    match published::crosstab(&r, a, b) {
        Some(v) => json(v),
        None => json_error(StatusCode::NOT_FOUND, "crosstab_not_released"),
    }
}

/// The whole stored release, as stored.
pub async fn release<S: Store>(State(state): State<Arc<AppState<S>>>, uri: Uri) -> Response {
    match requested_release(&state, &query(&uri)).await {
        Ok(r) => json(serde_json::to_value(&r).unwrap_or(Value::Null)),
        Err(r) => *r,
    }
}

/// The browser's preferred language among ours: "de" or "en".
pub fn language(headers: &HeaderMap) -> &'static str {
    let Some(value) = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()) else { return "en" };
    let mut best = ("en", -1.0f64);
    for part in value.split(',') {
        let mut it = part.split(';');
        let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it.find_map(|p| p.trim().strip_prefix("q=").and_then(|x| x.parse::<f64>().ok())).unwrap_or(1.0);
        let ours = if tag.starts_with("de") {
            "de"
        } else if tag.starts_with("en") || tag == "*" {
            "en"
        } else {
            continue;
        };
        if q > best.1 {
            best = (ours, q);
        }
    }
    best.0
}

pub async fn dashboard<S: Store>(State(state): State<Arc<AppState<S>>>, headers: HeaderMap) -> Response {
    let lang = language(&headers);
    match crate::dashboard::gather(&state).await {
        Ok(data) => {
            let html = crate::dashboard::render(&data, lang);
            let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
            secure_headers(r.headers_mut());
            r.headers_mut().insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang));
            r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept-Language, Authorization"));
            r
        }
        Err(e) => storage_failed(e),
    }
}

pub async fn stylesheet() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], crate::dashboard::CSS).into_response();
    secure_headers(r.headers_mut());
    r
}

/// Browsers ask for `/favicon.ico` on their own; "no content" instead of a
/// 404 keeps their consoles free of errors (the page has no icon).
pub async fn no_icon() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    secure_headers(r.headers_mut());
    r
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn query_decoding_and_language() {
        let q = query(&"/x?product=Mail%20Archiver&week=2026-W48&a=b+c&bad=%zz%4".parse().unwrap());
        assert_eq!(q["product"], "Mail Archiver");
        assert_eq!(q["a"], "b c");
        assert_eq!(q["bad"], "%zz%4");
        let mut h = HeaderMap::new();
        assert_eq!(language(&h), "en");
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("de-AT,de;q=0.9,en;q=0.8"));
        assert_eq!(language(&h), "de");
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("fr,en;q=0.5,de;q=0.4"));
        assert_eq!(language(&h), "en");
    }
}
