//! A hostile client of the admin listener: abused query parameters on every
//! published endpoint (clear 4xx or a normal answer, never a 5xx, the server
//! keeps answering), Authorization header edge cases, and markup in
//! vendor-registered schema texts (escaped on the dashboard).

mod common;

use common::*;
use optin_collector::commands::add_schema;
use optin_collector::privacy::{keep, Week};
use optin_collector::release::{release_due, ReleaseConfig};
use optin_collector::storage::Store;
use optin_collector::Options;
use optin_telemetry::validate::validate;

const NOW: i64 = 1_795_000_000; // 2026-W47

async fn ask(to: std::net::SocketAddr, path: String, headers: Vec<(&'static str, String)>) -> Response {
    tokio::task::spawn_blocking(move || {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        raw_request(to, None, "GET", &path, &h, b"")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abused_queries_get_clear_answers() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let id = add_schema(&store, SCHEMA).await.unwrap().id;
    let s = schema();
    // Last week is released, the current one is not.
    let last_week = Week::of_unix(NOW).minus(1);
    register(&store, "Mail Archiver", &["5.2.1"], &last_week.to_string()).await;
    for week in [last_week, Week::of_unix(NOW)] {
        let rows = (0..30).map(|i| keep(&validate(&s, report(&report_id(i)).as_bytes()).unwrap(), id, week)).collect();
        store.insert_reports(rows).await.unwrap();
    }
    release_due(&store, NOW, &ReleaseConfig::default()).await.unwrap();
    let server = serve(store, Options::default(), TestClock::new(NOW).clock()).await;
    let admin = server.running.admin_addr;
    let long = "x".repeat(6000);
    let weeks = [
        "2026-W46", "2026-W47", "2026-W00", "2026-W54", "2025-W53", "0000-W01", "9999-W52", "+026-W47", "-001-W01", "2026-W+1", "2026-w47", "2026W47",
        "2026-W4%00", "2026-W%FF", "%", "%%", "%zz", "", "2026-W47%27%3B%20DROP%20TABLE%20reports%3B--", &long,
    ];
    let products = ["Mail+Archiver", "", "%27%20OR%201%3D1--", "%00", "%C3%28", &long, "Mail+Archiver&product=other"];
    let mut paths = vec![];
    for w in weeks {
        for p in products {
            paths.push(format!("/api/v1/fields?product={p}&week={w}"));
            paths.push(format!("/api/v1/mean?product={p}&week={w}&field=archived"));
            paths.push(format!("/api/v1/crosstab?product={p}&week={w}&a=trial&b=os_family"));
            paths.push(format!("/api/v1/release?product={p}&week={w}"));
        }
    }
    for q in ["field=", "field=archived&field=users", "field=%27", "field=other", &format!("field={long}")] {
        paths.push(format!("/api/v1/mean?product=Mail+Archiver&{q}"));
    }
    for q in ["a=trial", "a=trial&b=trial", "a=&b=", "a=trial&b=nope", "a=profiles&b=profiles", "a=profiles&b=edition", "a=users&b=archived"] {
        paths.push(format!("/api/v1/crosstab?product=Mail+Archiver&{q}"));
    }
    paths.extend(["/api/v1/fields", "/api/v1/fields?", "/api/v1/fields?&&&=&", "/api/v1/weeks?week=x", "/api/v1/products?x=%"].map(String::from));
    let mut answered = vec![];
    for path in paths {
        let r = ask(admin, path.clone(), vec![]).await;
        assert!(r.status == 200 || (400..500).contains(&r.status), "{path}: {} {}", r.status, r.body);
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{path}: {}", r.head);
        if r.status == 200 {
            answered.push(path);
        }
    }
    // Answered: the well-formed questions about the released week (fields,
    // mean, release; mean without a week is about the newest release, the
    // last field given counts), weeks and products.
    assert_eq!(answered.len(), 6, "{answered:?}");
    // A malformed week is a 400 with a reason, not an empty answer; an
    // unknown product, a week without a release, an undeclared crosstab and
    // a field the release lacks are 404s with theirs.
    for (path, status, reason) in [
        ("/api/v1/fields?product=Mail+Archiver&week=2026-48", 400, "bad_week"),
        ("/api/v1/fields?week=2026-W46", 400, "product_missing"),
        ("/api/v1/fields?product=Mail+Archiverx&week=2026-W46", 404, "unknown_product"),
        ("/api/v1/fields?product=Mail+Archiver&week=2026-W47", 404, "week_not_released"),
        ("/api/v1/fields?product=Mail+Archiver&week=2025-W01", 404, "week_not_released"),
        ("/api/v1/crosstab?product=Mail+Archiver&week=2026-W46&a=trial&b=os_family", 404, "crosstab_not_released"),
        ("/api/v1/mean?product=Mail+Archiver&week=2026-W46&field=nope", 404, "unknown_field"),
        ("/api/v1/mean?product=Mail+Archiver&week=2026-W46", 400, "field_missing"),
    ] {
        let r = ask(admin, path.into(), vec![]).await;
        assert_eq!((r.status, r.body.trim()), (status, format!("{{\"error\":\"{reason}\"}}").as_str()), "{path}");
    }
    // Still answering.
    assert_eq!(ask(admin, "/api/v1/products".into(), vec![]).await.status, 200);
    server.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_edge_cases() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let token = "0123456789abcdef-token";
    // Product x has a release (of a week without reports), so its figures
    // are there for the right token.
    register(&store, "x", &[], &Week::of_unix(NOW).minus(1).to_string()).await;
    release_due(&store, NOW, &ReleaseConfig::default()).await.unwrap();
    let options = Options { admin_token: optin_collector::api::Token(Some(token.as_bytes().to_vec())), ..Options::default() };
    let server = serve(store, options, TestClock::new(NOW).clock()).await;
    let admin = server.running.admin_addr;
    let a = |v: &str| vec![("Authorization", v.to_string())];
    for (headers, want) in [
        (vec![], 401),
        (a(""), 401),
        (a("Bearer"), 401),
        (a("Bearer "), 401),
        (a(token), 401),
        (a(&format!("Basic {token}")), 401),
        (a(&format!("Bearer {token}x")), 401),
        (a(&format!("Bearer {}", &token[..token.len() - 1])), 401),
        (a(&format!("Bearer {token} {token}")), 401),
        (a(&format!("Bearer\t{token}")), 401),
        (vec![("Authorization", "Bearer wrong-wrong-wrong-wr".to_string()), ("Authorization", format!("Bearer {token}"))], 401),
        (vec![("X-Authorization", format!("Bearer {token}"))], 401),
        (a(&format!("Bearer {token}")), 200),
    ] {
        for path in ["/", "/api/v1/products", "/api/v1/fields?product=x", "/api/v1/release?product=x", "/metrics", "/healthz"] {
            let r = ask(admin, path.into(), headers.clone()).await;
            assert_eq!(r.status, want, "{path} with {headers:?}: {}", r.body);
            if want == 401 {
                assert!(!r.body.contains("product") && !r.body.contains("week"), "{path}: a 401 tells nothing: {}", r.body);
            }
        }
    }
    server.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_texts_are_escaped_on_the_dashboard() {
    let db = Db::new("sqlite").await;
    let store = open_sqlite(&db.sqlite_path().unwrap()).await;
    let evil = r#"{"version": 1, "fields": [
      {"name": "trial", "type": "bool", "description": {"en": "</title><script>alert(1)</script><img src=http://evil.test/x>\" onload=\"x", "de": "<style>@import 'http://evil.test/'</style>"}}
    ]}"#;
    let Ok(row) = add_schema(&store, evil).await else {
        eprintln!("note: such a description is refused at registration: nothing to escape");
        return;
    };
    let (s, _) = optin_collector::commands::parse_schema(evil).unwrap();
    let body = |i: u64| {
        format!(
            r#"{{"arch":"x86_64","fields":{{"trial":true}},"format":1,"library_version":"0.1.0","os_family":"linux","os_version":"6.1","product":"Mail Archiver","product_version":"1","report_id":"{}","schema_digest":"{}","schema_version":1}}"#,
            report_id(i),
            s.digest
        )
    };
    let last_week = Week::of_unix(NOW).minus(1);
    let rows: Vec<_> = (0..200).filter_map(|i| validate(&s, body(i).as_bytes()).ok()).map(|r| keep(&r, row.id, last_week)).collect();
    assert_eq!(rows.len(), 200); // enough for figures (MIN_REPORTS_FOR_FIGURES)
    store.insert_reports(rows).await.unwrap();
    // The descriptions reach the page through the week's release.
    register(&store, "Mail Archiver", &["1"], &last_week.to_string()).await;
    release_due(&store, NOW, &ReleaseConfig::default()).await.unwrap();
    let server = serve(store, Options::default(), TestClock::new(NOW).clock()).await;
    for lang in ["en", "de"] {
        let r = ask(server.running.admin_addr, "/".into(), vec![("Accept-Language", lang.to_string())]).await;
        assert_eq!(r.status, 200);
        let lower = r.body.to_ascii_lowercase();
        assert!(r.body.contains(if lang == "en" { "&lt;script&gt;" } else { "&lt;style&gt;" }), "{lang}: the description is on the page, escaped");
        for bad in ["<script", "<img", "<style", "onload=\""] {
            assert!(!lower.contains(bad), "{lang}: {bad} unescaped on the page");
        }
        assert_eq!(
            r.header("content-security-policy").as_deref(),
            Some("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        );
    }
    server.running.stop().await;
}

/// `serve --admin-token-file` with a file whose token no client could send
/// (or none at all) refuses to start with one line naming the file, instead
/// of serving an admin listener that answers 401 to everyone.
#[test]
fn unusable_token_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("newline only", b"\n".to_vec()),
        ("15 characters", b"0123456789abcde\n".to_vec()),
        // Notepad's UTF-8 byte order mark: invisible, and no header carries it.
        ("byte order mark", b"\xef\xbb\xbf0123456789abcdef-token\r\n".to_vec()),
        ("not ASCII", "0123456789abcdef-tökén\n".as_bytes().to_vec()),
        ("not UTF-8", b"0123456789abcdef-\xff\xfe\n".to_vec()),
        ("a space inside", b"0123456789abcdef token\n".to_vec()),
    ];
    for (what, content) in cases {
        let file = dir.path().join("token");
        std::fs::write(&file, &content).unwrap();
        let mut child = bin()
            .args(["serve", "--db", &db, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--admin-token-file"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Not a speed check: a refusal comes at once; a server that started
        // keeps running, and 60 s tells the two apart on any machine.
        let mut status = None;
        for _ in 0..600 {
            if let Some(s) = child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: serve started with that token file");
        }
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(!status.unwrap().success(), "{what}");
        assert!(err.contains("--admin-token-file") && err.trim().lines().count() == 1, "{what}: {err}");
    }
    // A directory instead of a file: a clear error too.
    let out = bin()
        .args(["serve", "--db", &db, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--admin-token-file"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--admin-token-file"));
}
