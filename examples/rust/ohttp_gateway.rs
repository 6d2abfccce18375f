//! Test helper (tests/python/test_ohttp.py): a loopback fake Oblivious HTTP
//! relay + gateway (tests/support/ohttp_gateway.rs). Prints one JSON line
//! `{"relay": URL, "key_config": base64}`, then one JSON line per request it
//! received: the relay's path and content type, the outer bytes (hex) and
//! the decapsulated inner request (null when it did not open). Arguments:
//! `[STATUS [RETRY_AFTER]]`, the collector's answer inside (default 201).
//! Runs until stdin closes.

#[path = "../../tests/support/ohttp_gateway.rs"]
mod gateway;

use serde_json::json;
use std::io::{Read, Write};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let gw = gateway::Gateway::start();
    if let Some(status) = args.first() {
        let mut a = gw.answer.lock().unwrap();
        a.status = status.parse().expect("STATUS");
        a.retry_after = args.get(1).cloned();
    }
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    {
        let mut out = stdout.lock().unwrap();
        writeln!(out, "{}", json!({"relay": gw.relay(), "key_config": gateway::b64(&gw.key_config)})).unwrap();
        out.flush().unwrap();
    }
    let seen = gw.seen.clone();
    let out = stdout.clone();
    std::thread::spawn(move || {
        let mut printed = 0;
        loop {
            let now: Vec<gateway::Seen> = seen.lock().unwrap()[printed..].to_vec();
            for s in &now {
                let inner = s.inner.as_ref().map(|i| {
                    json!({"method": i.method, "scheme": i.scheme, "authority": i.authority, "path": i.path,
                           "content_type": i.content_type, "body": String::from_utf8_lossy(&i.body)})
                });
                let mut o = out.lock().unwrap();
                writeln!(o, "{}", json!({"path": s.path, "content_type": s.content_type, "outer_hex": hex(&s.outer), "inner": inner})).unwrap();
                o.flush().unwrap();
            }
            printed += now.len();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
