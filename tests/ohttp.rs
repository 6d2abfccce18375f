//! Reports through an Oblivious HTTP relay (RFC 9458), against a loopback
//! fake relay + gateway built on the ohttp crate's server side.

#[path = "support/ohttp_gateway.rs"]
mod gateway;

use gateway::{b64, Gateway};
use optin_telemetry::client::Client;
use optin_telemetry::consent::ConsentState;
use serde_json::{json, Value};
use std::time::Duration;

const T0: i64 = 1_800_000_000;
const ENDPOINT: &str = "https://collector.example/v1/report";

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("optin-ohttp-{name}-{}-{}", std::process::id(), T0));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(state: &std::path::Path, ohttp: Option<Value>) -> String {
    let mut c = json!({
        "product": "Mock Archiver", "product_version": "1.0", "endpoint": ENDPOINT, "state_dir": state,
        "schema": {"version": 1, "fields": [
            {"name": "edition", "type": "choice", "values": ["standard", "enterprise"], "description": {"en": "Edition"}},
            {"name": "trial", "type": "bool", "description": {"en": "Trial"}}]},
    });
    if let Some(o) = ohttp {
        c["ohttp"] = o;
    }
    c.to_string()
}

fn ohttp(relay: &str, key: &[u8]) -> Option<Value> {
    Some(json!({"relay": relay, "key_config": b64(key)}))
}

fn status(c: &Client) -> Value {
    serde_json::from_str(&c.status().unwrap()).unwrap()
}

/// Consent, the first tick (draws the schedule); returns the due time.
fn granted(c: &Client) -> i64 {
    c.set_values_json(r#"{"edition": "enterprise", "trial": true}"#).unwrap();
    c.set_consent(true).unwrap();
    c.tick_at(T0).unwrap();
    status(c)["next_due"].as_i64().expect("a due time")
}

fn send_at(c: &Client, t: i64) {
    c.tick_at(t).unwrap();
    c.flush(Duration::from_secs(20)).unwrap();
}

#[test]
fn a_report_goes_encapsulated_through_the_relay() {
    let gw = Gateway::start();
    let d = dir("send");
    let c = Client::open(&config(&d, ohttp(&gw.relay(), &gw.key_config))).unwrap();
    let due = granted(&c);
    c.tick_at(due - 1).unwrap();
    let preview = c.preview();
    send_at(&c, due);
    let seen = gw.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!((s.path.as_str(), s.content_type.as_str()), ("/relay", "message/ohttp-req"));
    let inner = s.inner.as_ref().expect("the gateway opened the request");
    assert_eq!(
        (inner.method.as_str(), inner.scheme.as_str(), inner.authority.as_str(), inner.path.as_str(), inner.content_type.as_str()),
        ("POST", "https", "collector.example", "/v1/report", "application/json")
    );
    assert_eq!(inner.body, preview.as_bytes(), "the inner body is the preview's bytes");
    // Nothing of the report in clear on the way to the relay.
    let report: Value = serde_json::from_str(&preview).unwrap();
    let id = report["report_id"].as_str().unwrap();
    for needle in [id, "enterprise", "Mock Archiver", "edition", "report_id", "collector.example"] {
        assert!(!s.outer.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} in clear");
    }
    let st = status(&c);
    assert_eq!((st["last_error"].clone(), st["last_sent"].as_i64()), (Value::Null, Some(due)), "{st}");
    let h: Value = serde_json::from_str(&c.history().unwrap()).unwrap();
    let r = &h["reports"][0];
    assert_eq!((r["via"].as_str(), r["outcome"].as_str(), r["status"].as_u64(), r["body"].as_str()), (Some("relay"), Some("delivered"), Some(201), Some(preview.as_str())));
    // describe names the relay, in English and German.
    let en: Value = serde_json::from_str(&c.describe("en").unwrap()).unwrap();
    let text = en["relay"]["text"].as_str().unwrap();
    assert!(text.contains("127.0.0.1") && text.contains("sees your internet address but not the content"), "{text}");
    let de: Value = serde_json::from_str(&c.describe("de").unwrap()).unwrap();
    assert!(de["relay"]["text"].as_str().unwrap().contains("sieht Ihre Internetadresse, aber nicht den Inhalt"));
    drop(c);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_inner_429_is_retried_later_like_a_direct_one() {
    let gw = Gateway::start();
    gw.answer.lock().unwrap().status = 429;
    gw.answer.lock().unwrap().retry_after = Some("7200".into());
    let d = dir("retry");
    let c = Client::open(&config(&d, ohttp(&gw.relay(), &gw.key_config))).unwrap();
    let due = granted(&c);
    send_at(&c, due);
    let st = status(&c);
    assert_eq!(st["attempts"].as_u64(), Some(1), "{st}");
    assert!(st["last_error"].as_str().unwrap().starts_with("HTTP 429"), "{st}");
    assert!(st["next_due"].as_i64().unwrap() >= due + 7200, "{st}");
    drop(c);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_new_relay_or_key_makes_the_consent_outdated() {
    let gw = Gateway::start();
    let other = gateway::key_config(2).encode().unwrap();
    let d = dir("consent");
    let c = Client::open(&config(&d, ohttp(&gw.relay(), &gw.key_config))).unwrap();
    c.set_consent(true).unwrap();
    assert_eq!(c.consent().unwrap(), ConsentState::Granted);
    drop(c);
    let outdated = |cfg: String, why: &str| {
        let c = Client::open(&cfg).unwrap();
        assert_eq!(c.consent().unwrap(), ConsentState::Outdated, "{why}");
        let desc: Value = serde_json::from_str(&c.describe("en").unwrap()).unwrap();
        assert_eq!(desc["consent"]["changes"]["relay_changed"], json!(true), "{why}: {desc}");
    };
    outdated(config(&d, ohttp(&format!("http://127.0.0.1:{}/other", gw.port), &gw.key_config)), "another relay");
    outdated(config(&d, ohttp(&gw.relay(), &other)), "another key configuration");
    outdated(config(&d, None), "no relay any more");
    let c = Client::open(&config(&d, ohttp(&gw.relay(), &gw.key_config))).unwrap();
    assert_eq!(c.consent().unwrap(), ConsentState::Granted, "the same relay and key");
    drop(c);
    // The same key given as an RFC 9540 list is the same key.
    let mut list = (gw.key_config.len() as u16).to_be_bytes().to_vec();
    list.extend_from_slice(&gw.key_config);
    let c = Client::open(&config(&d, ohttp(&gw.relay(), &list))).unwrap();
    assert_eq!(c.consent().unwrap(), ConsentState::Granted, "the same key as a list");
    drop(c);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_unknown_key_waits_for_a_new_configuration_without_retrying() {
    let gw = Gateway::start();
    let stale = gateway::key_config(7).encode().unwrap();
    let d = dir("stale");
    let c = Client::open(&config(&d, ohttp(&gw.relay(), &stale))).unwrap();
    let due = granted(&c);
    send_at(&c, due);
    let st = status(&c);
    assert!(st["last_error"].as_str().unwrap().starts_with("key_config_outdated:"), "{st}");
    assert_eq!(st["consent"], "granted");
    // Weeks of ticks: not one more attempt.
    for day in 1..=60 {
        send_at(&c, due + day * 86_400);
    }
    assert_eq!(gw.seen().len(), 1, "no retry loop");
    let h: Value = serde_json::from_str(&c.history().unwrap()).unwrap();
    assert_eq!((h["reports"].as_array().unwrap().len(), h["reports"][0]["outcome"].as_str()), (1, Some("key_config_outdated")));
    drop(c);
    // The product ships the gateway's new key: a new consent, and the report goes.
    let c = Client::open(&config(&d, ohttp(&gw.relay(), &gw.key_config))).unwrap();
    assert_eq!(c.consent().unwrap(), ConsentState::Outdated);
    c.set_consent(true).unwrap();
    let t = due + 61 * 86_400;
    c.tick_at(t).unwrap();
    let next = status(&c)["next_due"].as_i64().unwrap();
    send_at(&c, next);
    let seen = gw.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].inner.is_some());
    assert_eq!(status(&c)["last_error"], Value::Null);
    drop(c);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn open_refuses_a_bad_ohttp_configuration() {
    let gw = Gateway::start();
    let d = dir("refuse");
    let list = {
        let mut l = (gw.key_config.len() as u16).to_be_bytes().to_vec();
        l.extend_from_slice(&gw.key_config);
        l
    };
    assert!(Client::open(&config(&d, ohttp(&gw.relay(), &list))).is_ok(), "an RFC 9540 list");
    // A configuration with an unsupported AEAD (0x0099) only.
    let mut unsupported = gw.key_config.clone();
    let n = unsupported.len();
    unsupported[n - 2..].copy_from_slice(&[0x00, 0x99]);
    for (ohttp, part) in [
        (json!({"relay": gw.relay(), "key_config": "not base64!"}), "not base64"),
        (json!({"relay": gw.relay(), "key_config": b64(&unsupported)}), "no supported suite"),
        (json!({"relay": gw.relay(), "key_config": b64(b"\x01\x00")}), "config.ohttp.key_config"),
        (json!({"relay": "http://relay.example/r", "key_config": b64(&gw.key_config)}), "plain http"),
        (json!({"relay": "https://relay.example/r?u=1", "key_config": b64(&gw.key_config)}), "query"),
        (json!({"relay": gw.relay(), "key_config": b64(&gw.key_config), "keys_url": "x"}), "unknown key \"keys_url\""),
        (json!({"key_config": b64(&gw.key_config)}), "config.ohttp.relay: missing"),
        (json!("https://relay.example"), "must be an object"),
    ] {
        let e = Client::open(&config(&d, Some(ohttp.clone()))).err().expect("refused");
        assert_eq!(e.code, optin_telemetry::error::Code::Config, "{ohttp}");
        assert!(e.message.contains(part) && e.message.contains("config.ohttp"), "{ohttp}: {}", e.message);
    }
    let _ = std::fs::remove_dir_all(&d);
}
