//! End to end: the real library (Rust API, `optin_telemetry::Client` with
//! its clock driven by `tick_at`) sends to a running `optin-collector serve`;
//! what the collector stored equals the preview, field by field.

mod common;

use common::*;
use optin_collector::privacy::decode_codes;
use optin_collector::storage::Store;
use optin_telemetry::schema::{CountEncoding, Kind};
use optin_telemetry::validate::{bucket_labels, ReportValue};
use optin_telemetry::{Client, ConsentState};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A stored value as the report carried it.
fn as_json(kind: &Kind, v: &ReportValue) -> Value {
    match (kind, v) {
        (_, ReportValue::Bool(b)) => json!(b),
        (Kind::Count { encoding: CountEncoding::Buckets(b) }, ReportValue::Bucket(i)) => json!(bucket_labels(b)[*i]),
        (_, ReportValue::Rounded(n)) => json!(n),
        (Kind::Choice { values }, ReportValue::Choice(i)) => json!(values[*i]),
        (Kind::Choices { values }, ReportValue::Choices(set)) => json!(set.iter().map(|&i| values[i].clone()).collect::<Vec<_>>()),
        _ => panic!("value does not fit its field"),
    }
}

#[test]
fn library_report_is_stored_as_previewed() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("c.db");
    let db = format!("sqlite:{}", db_path.display());
    let server = Child2::spawn(&db, &dir.path().join("serve.log"), &[]);
    let config = json!({
        "product": "Mail Archiver",
        "product_version": "5.2.1",
        "endpoint": format!("http://{}/v1/report", server.ingest),
        "state_dir": dir.path().join("state").to_str().unwrap(),
        "schema": serde_json::from_str::<Value>(SCHEMA).unwrap(),
    });
    // The vendor registers the very configuration it ships.
    let cfg_file = dir.path().join("config.json");
    std::fs::write(&cfg_file, config.to_string()).unwrap();
    let out = bin().args(["--db", &db, "schema", "add"]).arg(&cfg_file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let client = Client::open(&config.to_string()).unwrap();
    client.set_consent(true).unwrap();
    assert_eq!(client.consent().unwrap(), ConsentState::Granted);
    client.set_count("users", 7).unwrap();
    // Not in the 1-2-5 series: the library sends a drawn neighbour, and the
    // collector must store exactly the previewed one.
    client.set_count("archived", 1_234_567).unwrap();
    client.set_bool("trial", true).unwrap();
    client.set_values_json(r#"{"profiles": ["pst", "imap", "exchange"]}"#).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    client.tick_at(now).unwrap();
    let status: Value = serde_json::from_str(&client.status().unwrap()).unwrap();
    let due = status["next_due"].as_i64().expect("a report is scheduled");
    let preview = client.preview();
    client.tick_at(due).unwrap();
    client.flush(Duration::from_secs(20)).unwrap();
    let history: Value = serde_json::from_str(&client.history().unwrap()).unwrap();
    assert_eq!(history["reports"].as_array().map(Vec::len), Some(1), "{history}");

    let shown: Value = serde_json::from_str(&preview).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(open_sqlite(&db_path));
    let id = shown["report_id"].as_str().unwrap();
    let mut key = [0u8; 16];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).unwrap();
    }
    let row = rt.block_on(store.report(key)).unwrap().unwrap_or_else(|| panic!("not stored; history {history}; preview {preview}"));
    assert_eq!(rt.block_on(store.count_reports()).unwrap(), 1);
    for (name, stored) in [
        ("os_family", &row.os_family),
        ("os_version", &row.os_version),
        ("arch", &row.arch),
        ("product", &row.product),
        ("product_version", &row.product_version),
        ("library_version", &row.library_version),
    ] {
        assert_eq!(shown[name].as_str(), Some(stored.as_str()), "{name}");
    }
    let schemas = rt.block_on(store.schemas()).unwrap();
    let stored_schema = schemas.iter().find(|s| s.id == row.schema_id).unwrap();
    assert_eq!(shown["schema_digest"].as_str(), Some(stored_schema.digest.as_str()));
    let s = schema();
    let values = decode_codes(&s, &row.codes).unwrap();
    let mut stored_fields = serde_json::Map::new();
    for (field, v) in s.fields.iter().zip(values) {
        if let Some(v) = v {
            stored_fields.insert(field.name.clone(), as_json(&field.kind, &v));
        }
    }
    assert_eq!(Value::Object(stored_fields), shown["fields"], "stored fields differ from the preview");
    assert_eq!(shown["fields"]["profiles"], json!(["imap", "exchange", "pst"]));
    drop(client);
}
