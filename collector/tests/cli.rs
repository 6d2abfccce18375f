//! The real binary: flags, schema commands, a running serve picking up a new
//! schema, privacy of what is stored and logged, two processes on one
//! PostgreSQL, built-in TLS.

mod common;

use common::*;
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
