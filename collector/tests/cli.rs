//! The real binary: flags, schema commands, a running serve picking up a new
//! schema, privacy of what is stored and logged, two processes on one
//! PostgreSQL, built-in TLS; products, releases (two processes at once on one
//! PostgreSQL), export, release flags refused at start.

mod common;

use common::*;
use optin_collector::storage::Store;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_flag_and_unreachable_database_are_one_line_errors() {
    for args in [
        vec![],
        vec!["schema"],
        vec!["serve", "--bogus"],
        vec!["serve", "--listen", "nonsense"],
        vec!["--db", "mysql://x", "schema", "list"],
        vec!["--db", "postgres://nobody@127.0.0.1:1/none", "schema", "list"],
        vec!["--db", "sqlite:/proc/forbidden/x.db", "schema", "list"],
        vec!["schema", "check", "/nonexistent.json"],
    ] {
        let out = bin().args(&args).stdin(Stdio::null()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(err.starts_with("optin-collector: "), "{args:?}: {err}");
        if args.contains(&"postgres://nobody@127.0.0.1:1/none") {
            assert!(err.contains("refused"), "the cause is named: {err}");
        }
    }
}

#[test]
fn schema_check_prints_bits_and_warns_above_32() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(dir.path(), "s.json", SCHEMA);
    let out = bin().args(["schema", "check"]).arg(&ok).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in ["users", "3.00 bits", "archived", "5.91 bits", "trial", "1.58 bits", "profiles", "5.04 bits", "total"] {
        assert!(text.contains(needle), "{needle} missing: {text}");
    }
    assert!(!text.contains("warning"), "{text}");
    let many: Vec<String> = (0..7)
        .map(|i| format!(r#"{{"name": "c{i}", "type": "count", "rounding": "1-2-5", "description": {{"en": "x"}}}}"#))
        .collect();
    let wide = write(dir.path(), "w.json", &format!(r#"{{"version": 1, "fields": [{}]}}"#, many.join(",")));
    let out = bin().args(["schema", "check"]).arg(&wide).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("warning: 41.35 identifying bits is above 32"), "{text}");
}

/// A serve that is already running accepts a schema added by another
/// process within 10 s; the report that arrived first waits in quarantine
/// and is moved in by `schema add`.
#[test]
fn running_serve_picks_up_a_new_schema() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    let server = Child2::spawn(&db, &dir.path().join("serve.log"), &[]);
    let first = report(&report_id(1));
    let r = raw_request(server.ingest, None, "POST", "/v1/report", &[("Content-Type", "application/json")], first.as_bytes());
    assert_eq!(r.status, 202, "unregistered digest: quarantined");
    let file = write(dir.path(), "s.json", SCHEMA);
    let out = bin().args(["--db", &db, "schema", "add"]).arg(&file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 report(s) moved in"), "{text}");
    let list = bin().args(["--db", &db, "schema", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains(&schema().digest));
    let started = Instant::now();
    let second = report(&report_id(2));
    loop {
        let r = raw_request(server.ingest, None, "POST", "/v1/report", &[("Content-Type", "application/json")], second.as_bytes());
        if r.status == 204 {
            break;
        }
        assert_eq!(r.status, 202);
        assert!(started.elapsed() < Duration::from_secs(10), "schema not picked up within 10 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    let purge = bin().args(["--db", &db, "purge"]).output().unwrap();
    assert!(purge.status.success(), "{}", String::from_utf8_lossy(&purge.stderr));
}

/// Posted from 127.0.0.2 with forwarding headers naming documentation
/// addresses and a distinctive User-Agent: none of them ends up in the
/// database files (WAL included), the log or /metrics.
#[test]
fn no_address_or_user_agent_is_stored_or_logged() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("c.db");
    let db = format!("sqlite:{}", db_path.display());
    let file = write(dir.path(), "s.json", SCHEMA);
    assert!(bin().args(["--db", &db, "schema", "add"]).arg(&file).output().unwrap().status.success());
    let log = dir.path().join("serve.log");
    let server = Child2::spawn(&db, &log, &[]);
    let ua = "PrivacyProbe/7.3 (unique-agent-string-4f1c)";
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Forwarded-For", "192.0.2.77, 2001:db8::1234"),
        ("Forwarded", "for=192.0.2.78;proto=https, for=\"[2001:db8::5678]\""),
        ("X-Real-IP", "192.0.2.79"),
        ("User-Agent", ua),
    ];
    let valid = report(&report_id(1));
    let invalid = report(&report_id(2)).replace("\"linux\"", "\"plan9\"");
    let unregistered = report(&report_id(3)).replace(&schema().digest, &format!("sha256:{}", "e".repeat(64)));
    let mut statuses = vec![];
    for body in [valid.as_str(), invalid.as_str(), unregistered.as_str(), "{broken"] {
        statuses.push(raw_request(server.ingest, Some("127.0.0.2"), "POST", "/v1/report", &headers, body.as_bytes()).status);
    }
    assert_eq!(statuses, [204, 422, 202, 400]);
    let metrics = raw_request(server.admin, Some("127.0.0.2"), "GET", "/metrics", &headers[1..], b"").body;
    assert!(metrics.contains("optin_reports_accepted_total 1"), "{metrics}");
    // The stored row is there (the search below looks at real data).
    let db_bytes: Vec<u8> = files_under(dir.path()).iter().filter(|p| p.to_string_lossy().contains("c.db")).flat_map(|p| std::fs::read(p).unwrap()).collect();
    assert!(contains(&db_bytes, b"Mail Archiver"), "the report was stored");
    drop(server); // SIGKILL: the WAL stays as it was
    let needles: [&[u8]; 8] =
        [b"192.0.2.", b"2001:db8", b"2001:0db8", b"127.0.0.2", b"unique-agent-string", b"PrivacyProbe", &[127, 0, 0, 2], &[192, 0, 2, 77]];
    let mut haystacks: Vec<(String, Vec<u8>)> = files_under(dir.path())
        .into_iter()
        .filter(|p| p != &file)
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    assert!(haystacks.iter().any(|(name, _)| name.ends_with("c.db-wal")), "WAL searched too: {:?}", haystacks.iter().map(|h| &h.0).collect::<Vec<_>>());
    haystacks.push(("/metrics".into(), metrics.into_bytes()));
    for (name, bytes) in &haystacks {
        for needle in needles {
            // Raw 4-byte addresses only matter in text-free places; a random
            // 16-byte key could contain them by chance only with tiny odds.
            assert!(!contains(bytes, needle), "{name} contains {:?}", String::from_utf8_lossy(needle));
        }
    }
}

/// Two collector processes on one PostgreSQL; the same report posted to both
/// is stored once.
#[test]
fn two_processes_on_one_postgres_store_a_report_once() {
    let Some(base) = pg_url() else {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(fresh_pg_db(&base));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "s.json", SCHEMA);
    let out = bin().args(["--db", &url, "schema", "add"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = Child2::spawn(&url, &dir.path().join("a.log"), &[]);
    let b = Child2::spawn(&url, &dir.path().join("b.log"), &[]);
    let body = report(&report_id(42));
    let send = |to| raw_request(to, None, "POST", "/v1/report", &[("Content-Type", "application/json")], body.as_bytes()).status;
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| send(a.ingest));
        let tb = s.spawn(|| send(b.ingest));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_eq!((ra, rb), (204, 204));
    assert_eq!(send(a.ingest), 204);
    let count = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c.query_one("SELECT count(*) FROM reports", &[]).await.unwrap().get::<_, i64>(0)
    });
    assert_eq!(count, 1);
}

/// Built-in TLS with --tls-cert/--tls-key (a self-signed certificate made by
/// the openssl command-line tool).
#[test]
fn serves_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("note: openssl not available; TLS not tested");
        return;
    }
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    let server = Child2::spawn(&db, &dir.path().join("serve.log"), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &server.ingest.to_string(), "-CAfile"])
        .arg(&cert)
        .args(["-verify_return_error", "-quiet", "-servername", "localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let body = report(&report_id(5));
            let req = format!(
                "POST /v1/report HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            child.stdin.take().unwrap().write_all(req.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Not registered: 202 (quarantine) proves the request went through TLS to the handler.
    assert!(text.starts_with("HTTP/1.1 202"), "{text} / {}", String::from_utf8_lossy(&out.stderr));
}

/// Started under a low soft limit on open files (a service manager's usual
/// 1024, here 128) with the default --max-connections 1024, idle
/// connections used up every descriptor: the admin listener could no longer
/// accept (/healthz timed out) and the database could not open files.
/// serve raises the soft limit, or lowers the cap to fit a low hard limit.
#[cfg(target_os = "linux")]
#[test]
fn idle_connections_do_not_exhaust_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    let file = write(dir.path(), "s.json", SCHEMA);
    assert!(bin().args(["--db", &db, "schema", "add"]).arg(&file).output().unwrap().status.success());
    // (ulimit arguments, report number) -> (/healthz status, POST status, log)
    let run = |ulimit: &str, n: u64| {
        let (ip, ap) = (free_port(), free_port());
        let log_path = dir.path().join(format!("serve{n}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let script = format!(
            "ulimit {ulimit} && exec \"$0\" serve --db '{db}' --listen 127.0.0.1:{ip} --admin-listen 127.0.0.1:{ap} --request-timeout 600"
        );
        let mut child = std::process::Command::new("bash")
            .args(["-c", &script, env!("CARGO_BIN_EXE_optin-collector")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let admin: std::net::SocketAddr = format!("127.0.0.1:{ap}").parse().unwrap();
        let ingest: std::net::SocketAddr = format!("127.0.0.1:{ip}").parse().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(admin).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Answered at once, or not before the idle connections time out (600 s).
        let within_10s = |to: std::net::SocketAddr, req: String| {
            let mut s = std::net::TcpStream::connect(to).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
            read_response(&mut s).status
        };
        let body = report(&report_id(n));
        let post = format!(
            "POST /v1/report HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let idle: Vec<_> = (0..100).map(|_| std::net::TcpStream::connect(ingest).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(300));
        // Within the cap: served while 100 connections idle.
        let stored = within_10s(ingest, post);
        let more: Vec<_> = (0..100).map(|_| std::net::TcpStream::connect(ingest).unwrap()).collect();
        // Let the server accept them all (or run out trying).
        std::thread::sleep(Duration::from_millis(500));
        let health = within_10s(admin, "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into());
        drop((idle, more));
        let _ = child.kill();
        let _ = child.wait();
        (health, stored, std::fs::read_to_string(&log_path).unwrap())
    };
    let (health, stored, log) = run("-Sn 128", 5);
    assert_eq!((health, stored), (200, 204), "{log}");
    // A hard limit of 256: the cap is lowered to 256 - 192 and says so.
    let (health, stored, log) = run("-n 256", 6);
    assert_eq!((health, stored), (200, 204), "{log}");
    assert!(log.contains("--max-connections 1024 lowered to 64: the open-file limit is 256"), "{log}");
}

/// `serve` on a database file it cannot write (here: read-only to the user
/// running it) started and then answered every report 503. It is a one-line
/// error at start instead; reading commands still work.
#[cfg(unix)]
#[test]
fn serve_refuses_a_read_only_database() {
    use std::os::unix::fs::PermissionsExt;
    let is_root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    // root may write anyway: run as nobody (65534) then, from a copy of the
    // binary in a directory nobody can reach (see `reachable_by_nobody`).
    let (dir, exe) = if is_root {
        match reachable_by_nobody() {
            Ok(found) => found,
            Err(why) => {
                // Straight to stderr: the test harness would swallow a println! of a passing test.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("SKIPPED serve_refuses_a_read_only_database: as root it runs the collector as nobody (65534), which is impossible here: {why}\n").as_bytes(),
                );
                return;
            }
        }
    } else {
        (tempfile::tempdir().unwrap(), std::path::PathBuf::from(env!("CARGO_BIN_EXE_optin-collector")))
    };
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let path = data.join("ro.db");
    let db = format!("sqlite:{}", path.display());
    let file = write(&data, "s.json", SCHEMA);
    assert!(bin().args(["--db", &db, "schema", "add"]).arg(&file).output().unwrap().status.success());
    // The directory is writable (the -wal and -shm files can be made), the
    // database file is not.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let as_user = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(&exe);
        if is_root {
            c.uid(65534).gid(65534);
        }
        c.args(args).stdin(Stdio::null());
        c
    };
    let (ip, ap) = (free_port(), free_port());
    let (listen, admin) = (format!("127.0.0.1:{ip}"), format!("127.0.0.1:{ap}"));
    let mut serve = as_user(&["--db", &db, "serve", "--listen", &listen, "--admin-listen", &admin])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} as nobody: {e}", exe.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = serve.kill();
            let _ = serve.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(serve.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = status.unwrap_or_else(|| panic!("serve kept running on a read-only database: {err}"));
    assert!(!status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("read-only"), "{err}");
    let list = as_user(&["--db", &db, "schema", "list"]).output().unwrap();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
}

/// A fresh directory (mode 0755, removed when dropped) holding a copy of the
/// collector binary (mode 0755) that nobody (65534) could be seen to run.
///
/// The checkout, and so the binary under target/, may lie below a directory
/// only root may enter (a clone in a `mktemp -d` folder, mode 0700): nobody
/// could not even start it there (PermissionDenied), nor reach a database
/// next to it. So the binary is copied out, and the test's files go beside
/// it. Tried under the temporary directory, then /tmp, /var/tmp and
/// /dev/shm; the error names every place tried and why it failed.
#[cfg(unix)]
fn reachable_by_nobody() -> Result<(tempfile::TempDir, std::path::PathBuf), String> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let mut bases = vec![std::env::temp_dir()];
    for b in ["/tmp", "/var/tmp", "/dev/shm"] {
        let b = std::path::PathBuf::from(b);
        if !bases.contains(&b) {
            bases.push(b);
        }
    }
    let mut tried = vec![];
    for base in bases {
        let attempt = || -> Result<(tempfile::TempDir, std::path::PathBuf), String> {
            let dir = tempfile::Builder::new().prefix("optin-cli-nobody-").tempdir_in(&base).map_err(|e| format!("cannot create a directory: {e}"))?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
            let exe = dir.path().join("optin-collector");
            std::fs::copy(env!("CARGO_BIN_EXE_optin-collector"), &exe).map_err(|e| format!("cannot copy the binary: {e}"))?;
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
            let probe = std::process::Command::new(&exe)
                .arg("--version")
                .uid(65534)
                .gid(65534)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("nobody cannot start {}: {e}", exe.display()))?;
            if !probe.status.success() {
                return Err(format!("{} --version as nobody failed: {}", exe.display(), String::from_utf8_lossy(&probe.stderr).trim()));
            }
            Ok((dir, exe))
        };
        match attempt() {
            Ok(found) => return Ok(found),
            Err(why) => tried.push(format!("{}: {why}", base.display())),
        }
    }
    Err(tried.join("; "))
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Runs the binary; (success, stdout, stderr).
fn run(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = bin().args(["--db", db]).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A command that must fail with one line on stderr naming `needle`.
fn refused(db: &str, args: &[&str], needle: &str) {
    let (ok, _, err) = run(db, args);
    assert!(!ok, "{args:?} succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("optin-collector: ") && err.contains(needle), "{args:?}: {err}");
}

/// `product add` registers (and adds versions), `product list` shows it,
/// bad names, versions and weeks are one-line errors that register nothing.
#[test]
fn product_add_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    assert_eq!(run(&db, &["product", "list"]).1, "no products registered\n");
    refused(&db, &["product", "add", "Mail/Archiver"], "not a product name");
    refused(&db, &["product", "add", &"x".repeat(65)], "not a product name");
    refused(&db, &["product", "add", "Mail Archiver", "--version", "5.2.1-beta"], "--version");
    refused(&db, &["product", "add", "Mail Archiver", "--version", "5,2"], "--version");
    refused(&db, &["product", "add", "Mail Archiver", "--since", "2026-48"], "--since");
    assert_eq!(run(&db, &["product", "list"]).1, "no products registered\n", "a refused add registered something");
    let (ok, out, err) = run(&db, &["product", "add", "Mail Archiver", "--version", "5.2.1", "--since", "2026-W40"]);
    assert!(ok, "{err}");
    assert_eq!(out, "registered Mail Archiver (released from 2026-W40; versions: 5.2.1)\n");
    // More versions; a later --since keeps the first week.
    let (ok, out, _) = run(&db, &["product", "add", "Mail Archiver", "--version", "5.3.0", "--version", "5.2.1", "--since", "2026-W45"]);
    assert!(ok);
    assert_eq!(out, "registered Mail Archiver (released from 2026-W40; versions: 5.2.1, 5.3.0)\n");
    let (ok, out, _) = run(&db, &["product", "add", "Archiver 2+"]);
    assert!(ok && out.starts_with("registered Archiver 2+ (released from "), "{out}");
    let (_, list, _) = run(&db, &["product", "list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with("Archiver 2+  released from "), "{list}");
    assert_eq!(lines[1], "Mail Archiver  released from 2026-W40  versions: 5.2.1, 5.3.0");
}

/// `release` computes every due week of a registered product once and
/// says so; run again it has nothing to do and the stored releases stay
/// as they were. `export` writes those releases (CSV and JSON).
#[test]
fn release_then_export() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let db = format!("sqlite:{}", path.display());
    let file = write(dir.path(), "s.json", SCHEMA);
    assert!(run(&db, &["schema", "add", file.to_str().unwrap()]).0);
    let newest = optin_collector::release::newest_due_week(now(), optin_collector::release::DEFAULT_GRACE_S);
    let (first, busy) = (newest.minus(2), newest.minus(1));
    assert!(run(&db, &["product", "add", "Mail Archiver", "--version", "5.2.1", "--since", &first.to_string()]).0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(open_sqlite(&path));
    let bodies: Vec<String> = (0..150).map(|i| report(&report_id(i))).collect();
    rt.block_on(store.insert_reports(rows_of(&schema(), 1, busy, &bodies))).unwrap();

    let (ok, out, err) = run(&db, &["release"]);
    assert!(ok, "{err}");
    let weeks: Vec<String> = (0..3).rev().map(|i| newest.minus(i).to_string()).collect();
    let released: Vec<&str> = out.lines().map(|l| l.split(' ').nth(3).unwrap_or("").trim_end_matches(':')).collect();
    assert_eq!(released, weeks, "{out}");
    assert!(out.lines().all(|l| l.starts_with("released Mail Archiver 2") && l.ends_with(" reports (noisy)")), "{out}");
    let stored = rt.block_on(store.releases("Mail Archiver")).unwrap();
    assert_eq!(stored.iter().map(|s| &s.0).collect::<Vec<_>>(), weeks.iter().collect::<Vec<_>>());
    let (ok, again, _) = run(&db, &["release"]);
    assert!(ok);
    assert_eq!(again, "nothing to release\n");
    assert_eq!(rt.block_on(store.releases("Mail Archiver")).unwrap(), stored, "a release changed");

    // Export: the stored release's cells, one CSV row each.
    let r = optin_collector::release::Release::from_json(&rt.block_on(store.release("Mail Archiver", &busy.to_string())).unwrap().unwrap()).unwrap();
    let (ok, csv, err) = run(&db, &["export", "--week", &busy.to_string(), "--format", "csv"]);
    assert!(ok, "{err}");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("product,week,reports,field,value,count,low,high,epsilon_per_year,delta"));
    let mut rows = 0;
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 10, "{line}");
        assert_eq!(cols[..3], ["Mail Archiver", &busy.to_string(), &r.reports.value.to_string()], "{line}");
        let c = r.fields[cols[3]].iter().find(|c| c.label == cols[4]).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(cols[5..8], [c.value.to_string(), c.low.to_string(), c.high.to_string()], "{line}");
        assert_eq!(cols[8].parse::<f64>().unwrap(), r.guarantee.epsilon_per_year);
        rows += 1;
    }
    assert_eq!(rows, r.fields.values().map(Vec::len).sum::<usize>());
    let (ok, json, _) = run(&db, &["export", "--week", &busy.to_string(), "--format", "json"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(json[0]["reports"].as_i64(), Some(r.reports.value));
    assert_eq!(json[0]["fields"]["trial"]["true"].as_i64(), Some(r.fields["trial"][1].value));
    assert!(json[0]["release"]["epsilon_per_year"].is_number(), "the guarantee goes with the numbers: {json}");
    // A week without a release: nothing but the header; no week: one line.
    let (ok, empty, _) = run(&db, &["export", "--week", &newest.minus(-1).to_string(), "--format", "csv"]);
    assert!(ok);
    assert_eq!(empty, "product,week,reports,field,value,count,low,high,epsilon_per_year,delta\n");
    assert_eq!(run(&db, &["export", "--week", &newest.minus(-1).to_string(), "--format", "json"]).1.trim(), "[]");
    refused(&db, &["export", "--week", "2026-48"], "--week");
    refused(&db, &["export", "--week", &busy.to_string(), "--min-cell", "5"], "--min-cell");
}

/// A --cap or --crosstab that names no suitable field of a registered
/// product is refused at start (serve, release, purge), in one line.
#[test]
fn bad_caps_and_crosstabs_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    let file = write(dir.path(), "s.json", SCHEMA);
    assert!(run(&db, &["schema", "add", file.to_str().unwrap()]).0);
    assert!(run(&db, &["product", "add", "Mail Archiver", "--version", "5.2.1"]).0);
    let serve = ["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    for (flags, needle) in [
        (vec!["--crosstab", "profiles:edition"], "--crosstab profiles:edition"),
        (vec!["--crosstab", "edition:profiles"], "--crosstab edition:profiles"),
        (vec!["--crosstab", "edition:nope"], "--crosstab edition:nope"),
        (vec!["--crosstab", "edition:edition"], "--crosstab edition:edition"),
        (vec!["--crosstab", "edition"], "--crosstab edition"),
        (vec!["--crosstab", "edition:"], "--crosstab edition:"),
        (vec!["--cap", "users=100"], "--cap users=100"),
        (vec!["--cap", "nope=100"], "--cap nope=100"),
        (vec!["--cap", "archived=0"], "--cap archived=0"),
        (vec!["--cap", "archived"], "--cap archived"),
        (vec!["--cap", "archived=many"], "--cap archived=many"),
        (vec!["--budget", "0"], "--budget"),
        (vec!["--delta", "0.5"], "--delta"),
    ] {
        // A serve that started would keep running: wait at most 60 s.
        let mut child = bin()
            .args(["--db", &db])
            .args(serve)
            .args(&flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("serve {flags:?} started");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(!status.success(), "{flags:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
        for command in [vec!["release"], vec!["purge"]] {
            let args: Vec<&str> = command.iter().chain(&flags).copied().collect();
            refused(&db, &args, needle);
        }
    }
    // Good ones start (and release with them).
    let good = ["--crosstab", "edition:trial", "--crosstab", "os_family:users", "--cap", "archived=5000"];
    let (ok, out, err) = run(&db, &[&["release"][..], &good].concat());
    assert!(ok, "{err}");
    assert_eq!(out, "nothing to release\n", "the product's first week is the current one");
    let server = Child2::spawn(&db, &dir.path().join("serve.log"), &good);
    let r = raw_request(server.admin, None, "GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
}

/// Two `optin-collector release` processes at once on one PostgreSQL with a
/// week of 200,000 reports: each week is released by one of them, once; the
/// other leaves it (or finds nothing to do); what is stored is what the
/// releasing process reported.
#[test]
fn two_release_processes_on_one_postgres_release_each_week_once() {
    let Some(base) = pg_url() else {
        eprintln!("note: {PG_ENV} not set; PostgreSQL not tested here");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(fresh_pg_db(&base));
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "s.json", SCHEMA);
    assert!(run(&url, &["schema", "add", file.to_str().unwrap()]).0);
    let newest = optin_collector::release::newest_due_week(now(), optin_collector::release::DEFAULT_GRACE_S);
    let busy = newest.minus(1);
    assert!(run(&url, &["product", "add", "Mail Archiver", "--since", &busy.to_string()]).0);
    let store = rt.block_on(open_pg(&url));
    // 2,000 reports through the store, then copied 99 times over (new ids)
    // by the server: inserting 200,000 one by one would take half a minute.
    let bodies: Vec<String> = (0..2_000u64)
        .map(|i| if i % 2 == 0 { report(&report_id(i)) } else { report(&report_id(i)).replace("\"trial\":false", "\"trial\":true") })
        .collect();
    assert_eq!(rt.block_on(store.insert_reports(rows_of(&schema(), 1, busy, &bodies))).unwrap(), 2_000);
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let columns = "week, schema_id, os_family, os_version, arch, product, product_version, library_version, codes";
        let copy = format!(
            "INSERT INTO reports (report_id, {columns}) SELECT decode(md5(encode(report_id, 'hex') || '/' || g), 'hex'), {columns} \
             FROM reports, generate_series(1, 99) AS g"
        );
        c.batch_execute(&copy).await.unwrap();
    });
    assert_eq!(rt.block_on(store.count_reports()).unwrap(), 200_000);

    let spawn = || bin().args(["--db", &url, "release"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let mut released = std::collections::BTreeMap::new();
    for out in &outputs {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("released Mail Archiver ") {
                let (week, n) = rest.split_once(": ").unwrap();
                let n: i64 = n.strip_suffix(" reports (noisy)").unwrap().parse().unwrap();
                assert!(released.insert(week.to_string(), n).is_none(), "{week} released twice");
            } else {
                assert!(line == "nothing to release" || line.ends_with("release(s) left to another process computing them"), "{line}");
            }
        }
    }
    assert_eq!(released.keys().collect::<Vec<_>>(), [&busy.to_string(), &newest.to_string()]);
    let stored = rt.block_on(store.releases("Mail Archiver")).unwrap();
    assert_eq!(stored.len(), 2);
    for (week, body) in &stored {
        let r = optin_collector::release::Release::from_json(body).unwrap();
        assert_eq!(r.reports.value, released[week], "{week}: stored is not what the releasing process computed");
    }
    assert!(released[&busy.to_string()] > 190_000, "the busy week's reports were counted");
    assert_eq!(rt.block_on(store.releases("Mail Archiver")).unwrap(), stored, "read back the same");
}
