//! A loopback fake relay + Oblivious HTTP gateway for tests (plain HTTP on
//! 127.0.0.1): every POST is taken as `message/ohttp-req`, decapsulated with
//! the ohttp crate's server side, its Binary HTTP request recorded, and
//! answered with an encapsulated Binary HTTP response (`answer`). A request
//! that does not decapsulate (another key) is answered 422
//! `{"error":"key_config_outdated"}`, as the collector's gateway does.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default)]
pub struct Inner {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub path: String,
    pub content_type: String,
    /// The bytes POSTed to the relay.
    pub outer: Vec<u8>,
    /// The decapsulated request, if it opened.
    pub inner: Option<Inner>,
}

/// The inner (collector's) answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

pub struct Gateway {
    pub port: u16,
    /// The gateway's key configuration, encoded (one config, not a list).
    pub key_config: Vec<u8>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub answer: Arc<Mutex<Reply>>,
}

pub fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A fresh key configuration (key id `id`, X25519, HKDF-SHA256, AES-128-GCM).
pub fn key_config(id: u8) -> ohttp::KeyConfig {
    use ohttp::hpke::{Aead, Kdf, Kem};
    ohttp::KeyConfig::new(id, Kem::X25519Sha256, vec![ohttp::SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm)]).unwrap()
}

impl Gateway {
    pub fn start() -> Gateway {
        let config = key_config(1);
        let encoded = config.encode().unwrap();
        let server = ohttp::Server::new(config).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(Reply { status: 201, retry_after: None, body: b"{\"stored\":true}".to_vec() }));
        let (s, a) = (seen.clone(), answer.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &server, &s, &a);
            }
        });
        Gateway { port, key_config: encoded, seen, answer }
    }

    pub fn relay(&self) -> String {
        format!("http://127.0.0.1:{}/relay", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, server: &ohttp::Server, seen: &Mutex<Vec<Seen>>, answer: &Mutex<Reply>) -> std::io::Result<()> {
    let mut r = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut length, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap_or(0),
                "content-type" => content_type = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut outer = vec![0; length];
    r.read_exact(&mut outer)?;
    let mut entry = Seen { path, content_type, outer: outer.clone(), inner: None };
    let (status, ctype, body) = match server.decapsulate(&outer) {
        Err(_) => (422, "application/json", b"{\"error\":\"key_config_outdated\"}".to_vec()),
        Ok((request, context)) => {
            let m = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&request[..])).expect("binary HTTP request");
            let c = m.control();
            let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            entry.inner = Some(Inner {
                method: text(c.method()),
                scheme: text(c.scheme()),
                authority: text(c.authority()),
                path: text(c.path()),
                content_type: text(m.header().get(b"content-type")),
                body: m.content().to_vec(),
            });
            let reply = answer.lock().unwrap().clone();
            let mut res = bhttp::Message::response(bhttp::StatusCode::try_from(reply.status).unwrap());
            if let Some(ra) = &reply.retry_after {
                res.put_header("retry-after", ra.as_str());
            }
            res.put_header("content-type", "application/json");
            res.write_content(&reply.body);
            let mut inner = Vec::new();
            res.write_bhttp(bhttp::Mode::KnownLength, &mut inner).unwrap();
            (200, "message/ohttp-res", context.encapsulate(&inner).unwrap())
        }
    };
    seen.lock().unwrap().push(entry);
    let mut w = stream;
    write!(w, "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())?;
    w.write_all(&body)?;
    w.flush()
}
