//! Windows: the real version API and a write-through atomic replace, declared
//! by hand (four functions do not justify a bindings crate).
//!
//! Every path this module hands to a Windows API itself goes through
//! [`win32_path`], which gives it the long-path treatment Rust's own file
//! functions apply: without it, a `state_dir` near 260 characters works for
//! `std::fs` but fails in `MoveFileExW` on a Windows without the long-path
//! opt-in.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

#[repr(C)]
struct OsVersionInfoW {
    size: u32,
    major: u32,
    minor: u32,
    build: u32,
    platform_id: u32,
    csd_version: [u16; 128],
}

impl OsVersionInfoW {
    fn empty() -> Self {
        OsVersionInfoW { size: std::mem::size_of::<Self>() as u32, major: 0, minor: 0, build: 0, platform_id: 0, csd_version: [0; 128] }
    }
}

const MOVEFILE_REPLACE_EXISTING: u32 = 0x1;
const MOVEFILE_WRITE_THROUGH: u32 = 0x8;

#[link(name = "ntdll")]
extern "system" {
    // Unlike GetVersionEx, not subject to the manifest-based compatibility shim
    // that reports 6.2 to programs without a Windows 10 manifest.
    fn RtlGetVersion(info: *mut OsVersionInfoW) -> i32;
}

#[link(name = "kernel32")]
extern "system" {
    fn MoveFileExW(existing: *const u16, new: *const u16, flags: u32) -> i32;
    fn GetFullPathNameW(name: *const u16, buffer_len: u32, buffer: *mut u16, file_part: *mut *mut u16) -> u32;
}

pub fn os_family() -> &'static str {
    "windows"
}

/// "10.0.19045": major.minor plus the build number (which tells Windows 10
/// from 11 and the feature release).
pub fn os_version() -> String {
    let mut info = OsVersionInfoW::empty();
    // SAFETY: `info` is a properly sized, writable OSVERSIONINFOW.
    let status = unsafe { RtlGetVersion(&mut info) };
    if status != 0 {
        return "unknown".into();
    }
    format!("{}.{}.{}", info.major, info.minor, info.build)
}

/// Creates the state directory (its parents as usual) with a protected DACL
/// that allows only SYSTEM, Administrators and the directory's owner (the
/// creating user), inherited by everything inside, so no other user can
/// plant a consent there. An existing directory is used as it is: its ACL is
/// not inspected (the installer or administrator that made it owns that).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    create_dir_with_private_dacl(dir)
}

/// SDDL: protected DACL (no ACEs inherited from the parent); full access for
/// SYSTEM (SY), Administrators (BA) and OWNER RIGHTS (OW), inherited by
/// files and subdirectories.
const PRIVATE_DIR_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)";

#[repr(C)]
struct SecurityAttributes {
    length: u32,
    descriptor: *mut std::ffi::c_void,
    inherit_handle: i32,
}

#[link(name = "advapi32")]
extern "system" {
    fn ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl: *const u16, revision: u32, descriptor: *mut *mut std::ffi::c_void, size: *mut u32) -> i32;
}

#[link(name = "kernel32")]
extern "system" {
    fn CreateDirectoryW(path: *const u16, attributes: *const SecurityAttributes) -> i32;
    fn LocalFree(mem: *mut std::ffi::c_void) -> *mut std::ffi::c_void;
}

fn create_dir_with_private_dacl(dir: &Path) -> io::Result<()> {
    let sddl = wide(PRIVATE_DIR_SDDL);
    let mut descriptor = std::ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; `descriptor` receives a LocalAlloc'd
    // buffer that is freed below; the size output is optional.
    if unsafe { ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.as_ptr(), 1, &mut descriptor, std::ptr::null_mut()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let attributes = SecurityAttributes { length: std::mem::size_of::<SecurityAttributes>() as u32, descriptor, inherit_handle: 0 };
    // SAFETY: the path is NUL-terminated and `attributes` points to a valid
    // security descriptor for the duration of the call.
    let path = win32_path(dir)?;
    let ok = unsafe { CreateDirectoryW(path.as_ptr(), &attributes) } != 0;
    let result = if ok || dir.is_dir() { Ok(()) } else { Err(io::Error::last_os_error()) };
    // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
    unsafe { LocalFree(descriptor) };
    result
}

pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

const BACKSLASH: u16 = b'\\' as u16;
const SLASH: u16 = b'/' as u16;
const QUESTION: u16 = b'?' as u16;
const COLON: u16 = b':' as u16;
const DOT: u16 = b'.' as u16;

/// Win32 APIs without the long-path opt-in limit a path to MAX_PATH (260)
/// UTF-16 units, directory APIs to 248; std switches to the `\\?\` form from
/// that length on, and so does [`win32_path`].
const SHORT_PATH_LIMIT: usize = 248;

fn is_sep(c: u16) -> bool {
    c == BACKSLASH || c == SLASH
}

/// `\\?\...` or `\??\...`: already in the form Windows takes verbatim.
fn is_verbatim(p: &[u16]) -> bool {
    matches!(p, [BACKSLASH, BACKSLASH | QUESTION, QUESTION, BACKSLASH, ..])
}

/// A string as NUL-terminated UTF-16 for a Windows API call.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A path as a NUL-terminated UTF-16 string for a Windows API call, in the
/// form Rust's std uses for its own file calls: short absolute paths as they
/// are; a verbatim path as it is; anything else (long, relative, with `..`
/// or `/`) made absolute and normalised by `GetFullPathNameW`, then given the
/// `\\?\` prefix (`\\?\UNC\` for a share) that lifts the MAX_PATH limit.
fn win32_path(p: &Path) -> io::Result<Vec<u16>> {
    let mut path: Vec<u16> = OsStr::new(p).encode_wide().collect();
    if path.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL character"));
    }
    let short_absolute = path.len() < SHORT_PATH_LIMIT
        && match path.as_slice() {
            [drive, COLON] => !is_sep(*drive),
            [drive, COLON, sep, ..] => !is_sep(*drive) && is_sep(*sep),
            [a, b, ..] => is_sep(*a) && is_sep(*b),
            _ => false,
        };
    if path.is_empty() || is_verbatim(&path) || short_absolute {
        path.push(0);
        return Ok(path);
    }
    path.push(0);
    let mut full = verbatim_form(&full_path_name(&path)?);
    full.push(0);
    Ok(full)
}

/// `GetFullPathNameW` of a NUL-terminated path (result without the NUL).
fn full_path_name(path: &[u16]) -> io::Result<Vec<u16>> {
    let mut buf = vec![0u16; 512];
    loop {
        let cap = u32::try_from(buf.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path too long"))?;
        // SAFETY: `path` is NUL-terminated; `buf` is writable for `cap` units.
        let n = unsafe { GetFullPathNameW(path.as_ptr(), cap, buf.as_mut_ptr(), std::ptr::null_mut()) } as usize;
        if n == 0 {
            return Err(io::Error::last_os_error());
        }
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        // Too small: `n` is the size needed, NUL included.
        buf.resize(n, 0);
    }
}

/// The `\\?\` form of an absolute, normalised path (GetFullPathNameW's
/// output): `C:\x` -> `\\?\C:\x`, `\\server\share\x` -> `\\?\UNC\server\share\x`,
/// `\\.\device` -> `\\?\device`; a verbatim path and anything unexpected are
/// left as they are (a prefix on a path Windows did not normalise would
/// change its meaning).
fn verbatim_form(full: &[u16]) -> Vec<u16> {
    let prefix: &[u16] = &[BACKSLASH, BACKSLASH, QUESTION, BACKSLASH];
    let (head, rest): (Vec<u16>, &[u16]) = match full {
        [_, COLON, BACKSLASH, ..] => (prefix.to_vec(), full),
        _ if is_verbatim(full) => (Vec::new(), full),
        [BACKSLASH, BACKSLASH, DOT, BACKSLASH, rest @ ..] => (prefix.to_vec(), rest),
        [BACKSLASH, BACKSLASH, rest @ ..] => (prefix.iter().copied().chain("UNC\\".encode_utf16()).collect(), rest),
        _ => (Vec::new(), full),
    };
    head.into_iter().chain(rest.iter().copied()).collect()
}

const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_SHARING_VIOLATION: i32 = 32;
/// Pauses between attempts of a replace that another handle blocks: about
/// 0.6 s in all, while the caller holds the lock file.
const REPLACE_RETRY_MS: [u64; 6] = [10, 30, 60, 100, 150, 250];

/// Atomic replace that does not return before the rename is on disk.
///
/// MoveFileExW fails with ERROR_ACCESS_DENIED while any handle is open on the
/// target (even one that allows sharing delete) and with a sharing violation
/// on the source. The library itself only opens these files while holding
/// the lock file, but a virus scanner, the search indexer or a backup agent
/// may open them briefly at any time: retry a few times before giving up.
pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (win32_path(from)?, win32_path(to)?);
    let mut pauses = REPLACE_RETRY_MS.iter();
    loop {
        // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call.
        let ok = unsafe { MoveFileExW(f.as_ptr(), t.as_ptr(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH) };
        if ok != 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match (err.raw_os_error(), pauses.next()) {
            (Some(ERROR_ACCESS_DENIED | ERROR_SHARING_VIOLATION), Some(ms)) => std::thread::sleep(std::time::Duration::from_millis(*ms)),
            _ => return Err(err),
        }
    }
}

/// Opening a directory as a file fails on Windows; MOVEFILE_WRITE_THROUGH
/// already makes the rename durable.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}


#[cfg(test)]
mod tests {
    //! Run under Wine by scripts/test-windows (and natively on Windows): these
    //! exercise the Windows system calls themselves, not a Unix stand-in.
    use super::*;
    use crate::store::{State, Store};
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::process::{Child, ChildStdin, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("optin-win-{name}-{}", crate::random_hex(6)));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[link(name = "kernel32")]
    extern "system" {
        // Same OSVERSIONINFOW layout as RtlGetVersion takes.
        fn GetVersionExW(info: *mut OsVersionInfoW) -> i32;
    }

    /// The version the kernel publishes in KUSER_SHARED_DATA (mapped at
    /// 0x7FFE0000 in every process, layout fixed since NT 4; NtBuildNumber
    /// since Windows 10): an independent source, never shimmed.
    fn kernel_shared_version() -> (u32, u32, u32) {
        let base = 0x7FFE_0000usize as *const u8;
        // SAFETY: KUSER_SHARED_DATA is always mapped read-only at this address.
        unsafe {
            (
                std::ptr::read_volatile(base.add(0x26C) as *const u32),
                std::ptr::read_volatile(base.add(0x270) as *const u32),
                std::ptr::read_volatile(base.add(0x260) as *const u32),
            )
        }
    }

    fn parse_version(v: &str) -> (u32, u32, u32) {
        let parts: Vec<u32> = v.split('.').map(|p| {
            assert!(!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()), "os_version {v:?} is not major.minor.build");
            p.parse().unwrap()
        }).collect();
        assert_eq!(parts.len(), 3, "os_version {v:?} is not major.minor.build");
        (parts[0], parts[1], parts[2])
    }

    #[link(name = "advapi32")]
    extern "system" {
        fn GetFileSecurityW(path: *const u16, info: u32, descriptor: *mut std::ffi::c_void, len: u32, needed: *mut u32) -> i32;
        fn ConvertSecurityDescriptorToStringSecurityDescriptorW(descriptor: *const std::ffi::c_void, revision: u32, info: u32, out: *mut *mut u16, len: *mut u32) -> i32;
    }

    const DACL_SECURITY_INFORMATION: u32 = 4;

    /// A security descriptor's DACL as SDDL.
    fn sddl_of(descriptor: *const std::ffi::c_void) -> String {
        let mut out = std::ptr::null_mut();
        let mut len = 0u32;
        // SAFETY: `descriptor` is valid; the output string is LocalFree'd.
        unsafe {
            assert_ne!(ConvertSecurityDescriptorToStringSecurityDescriptorW(descriptor, 1, DACL_SECURITY_INFORMATION, &mut out, &mut len), 0);
            let text = String::from_utf16_lossy(std::slice::from_raw_parts(out, len as usize)).trim_end_matches('\0').to_string();
            LocalFree(out.cast());
            text
        }
    }

    fn assert_private(sddl: &str) {
        assert!(sddl.starts_with("D:P"), "inherits from the parent: {sddl}");
        for who in [";;;SY)", ";;;BA)", ";;;OW)"] {
            assert!(sddl.contains(who), "{who} missing in {sddl}");
        }
        assert_eq!(sddl.matches("(A;").count(), 3, "other principals allowed: {sddl}");
    }

    #[test]
    fn the_descriptor_given_to_create_directory_is_protected_and_names_three_principals() {
        let sddl = wide(PRIVATE_DIR_SDDL);
        let mut descriptor = std::ptr::null_mut();
        // SAFETY: as in create_dir_with_private_dacl.
        assert_ne!(unsafe { ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.as_ptr(), 1, &mut descriptor, std::ptr::null_mut()) }, 0);
        assert_private(&sddl_of(descriptor));
        // SAFETY: allocated by the conversion above.
        unsafe { LocalFree(descriptor) };
        let base = tempdir("dacl");
        let d = base.join("a").join("state");
        create_private_dir(&d).unwrap();
        assert!(d.is_dir());
        create_private_dir(&d).unwrap(); // an existing one is fine
        fs::remove_dir_all(base).unwrap();
    }

    /// Wine 8 does not keep the DACL given to CreateDirectoryW (it reports
    /// one made from the Unix mode), so this runs on real Windows only.
    #[test]
    #[ignore = "needs real Windows: Wine does not store ACLs given at creation"]
    fn a_new_state_dir_gets_a_dacl_for_system_administrators_and_the_owner_only() {
        let base = tempdir("dacl-disk");
        let d = base.join("state");
        create_private_dir(&d).unwrap();
        let w = win32_path(&d).unwrap();
        let mut buf = vec![0u8; 4096];
        let mut needed = 0u32;
        // SAFETY: buffer and length match.
        assert_ne!(unsafe { GetFileSecurityW(w.as_ptr(), DACL_SECURITY_INFORMATION, buf.as_mut_ptr().cast(), buf.len() as u32, &mut needed) }, 0);
        assert_private(&sddl_of(buf.as_ptr().cast()));
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn os_version_is_major_minor_build_from_the_real_version_api() {
        let v = os_version();
        let (major, minor, build) = parse_version(&v);
        assert!(major >= 10 && build > 0, "os_version {v}: supported Windows reports 10.0.<build> (under Wine: set the prefix to win10)");
        assert_eq!((major, minor, build), kernel_shared_version(), "os_version {v} disagrees with KUSER_SHARED_DATA");
        assert_eq!(os_family(), "windows");
        // GetVersionExW answers 6.2 to a program without a Windows 10 manifest
        // (this test binary has none): the report must not carry that.
        let mut shimmed = OsVersionInfoW::empty();
        // SAFETY: a properly sized, writable OSVERSIONINFOW.
        assert_ne!(unsafe { GetVersionExW(&mut shimmed) }, 0);
        assert!((shimmed.major, shimmed.minor) <= (major, minor));
        if (shimmed.major, shimmed.minor) != (major, minor) {
            eprintln!("GetVersionExW says {}.{}.{}, RtlGetVersion {v}: the compatibility shim is bypassed", shimmed.major, shimmed.minor, shimmed.build);
        }
    }

    fn w(s: &str) -> Vec<u16> {
        s.encode_utf16().collect()
    }

    fn unw(v: &[u16]) -> String {
        String::from_utf16(v.strip_suffix(&[0]).expect("NUL-terminated")).unwrap()
    }

    #[test]
    fn verbatim_form_prefixes_drive_unc_and_device_paths() {
        let cases = [
            (r"C:\Users\x\state", r"\\?\C:\Users\x\state"),
            (r"z:\", r"\\?\z:\"),
            (r"\\server\share\dir\state.json", r"\\?\UNC\server\share\dir\state.json"),
            (r"\\.\C:\dir", r"\\?\C:\dir"),
            (r"\\?\C:\already", r"\\?\C:\already"),
            (r"\\?\UNC\server\share", r"\\?\UNC\server\share"),
            (r"\??\C:\nt", r"\??\C:\nt"),
            // Not what GetFullPathNameW returns: left alone rather than guessed at.
            (r"relative\dir", r"relative\dir"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(String::from_utf16(&verbatim_form(&w(input))).unwrap(), expected, "verbatim_form({input:?})");
        }
    }

    #[test]
    fn win32_path_gives_long_relative_and_odd_paths_the_verbatim_form() {
        // Short absolute paths stay as they are (as std does).
        assert_eq!(unw(&win32_path(Path::new(r"C:\Users\Jürgen\state.json")).unwrap()), r"C:\Users\Jürgen\state.json");
        assert_eq!(unw(&win32_path(Path::new(r"\\server\share\s")).unwrap()), r"\\server\share\s");
        assert_eq!(unw(&win32_path(Path::new(r"\\?\C:\x")).unwrap()), r"\\?\C:\x");
        // Long absolute paths get the prefix, after normalisation.
        let long = format!(r"C:\{}\state.json", ["Müller Archiv"; 30].join("\\"));
        assert!(long.len() > 300);
        assert_eq!(unw(&win32_path(Path::new(&long)).unwrap()), format!(r"\\?\{long}"));
        let with_dots = format!(r"C:\a\..\{}/x/./state.json", "d".repeat(260));
        assert_eq!(unw(&win32_path(Path::new(&with_dots)).unwrap()), format!(r"\\?\C:\{}\x\state.json", "d".repeat(260)));
        let unc = format!(r"\\server\share\{}", "u".repeat(270));
        assert_eq!(unw(&win32_path(Path::new(&unc)).unwrap()), format!(r"\\?\UNC\server\share\{}", "u".repeat(270)));
        // A relative path is made absolute against the current directory.
        let cwd = std::env::current_dir().unwrap();
        let rel = unw(&win32_path(Path::new(r"rel\state.json")).unwrap());
        assert!(rel.starts_with(r"\\?\") && rel.ends_with(r"\rel\state.json"), "{rel}");
        assert_eq!(PathBuf::from(&rel[4..]), cwd.join("rel").join("state.json"));
        assert_eq!(win32_path(Path::new("a\0b")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    /// An absolute directory whose path is well over MAX_PATH (260).
    fn long_dir(name: &str) -> PathBuf {
        let mut d = tempdir(name);
        while d.as_os_str().len() <= 300 {
            d.push("a-long-directory-name-of-forty-characters");
        }
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replace_file_and_the_store_work_in_a_state_dir_longer_than_max_path() {
        let d = long_dir("long");
        assert!(d.as_os_str().len() > 260, "{}", d.display());
        let (from, to) = (d.join("new.tmp"), d.join("state.json"));
        fs::write(&to, b"old").unwrap();
        fs::write(&from, b"new").unwrap();
        replace_file(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"new");
        assert!(!from.exists());
        // The whole store: create, lock, write twice (the second replaces), read back.
        let state_dir = d.join("state");
        let store = Store::open(&state_dir).unwrap();
        let g = store.lock().unwrap();
        for i in 0..2 {
            let st = State { last_sent: Some(i), ..State::default() };
            store.save(&g, &st).unwrap();
            assert_eq!(store.load(&g), (st, None));
        }
        drop(g);
        // The same long directory spelled with `..` and `/`, which only a
        // normalised (GetFullPathNameW) verbatim path resolves correctly.
        let odd = PathBuf::from(format!("{}/../{}/new.tmp", d.display(), d.file_name().unwrap().to_str().unwrap()));
        fs::write(&from, b"newer").unwrap();
        replace_file(&odd, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"newer");
        assert!(!from.exists());
        let mut top = d.clone();
        while top.parent() != Some(&std::env::temp_dir()) && top.pop() {}
        fs::remove_dir_all(top).unwrap();
    }

    #[test]
    fn replace_file_replaces_an_existing_file_and_leaves_no_source() {
        let d = tempdir("replace");
        let (from, to) = (d.join("new.tmp"), d.join("state.json"));
        fs::write(&to, b"old").unwrap();
        fs::write(&from, b"new contents").unwrap();
        replace_file(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"new contents");
        assert!(!from.exists());
        // Also when there is nothing to replace yet.
        fs::write(&from, b"third").unwrap();
        fs::remove_file(&to).unwrap();
        replace_file(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"third");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn replace_file_reports_errors_and_leaves_the_target_alone() {
        let d = tempdir("replace-err");
        let to = d.join("state.json");
        fs::write(&to, b"kept").unwrap();
        let e = replace_file(&d.join("missing"), &to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert_eq!(fs::read(&to).unwrap(), b"kept");
        fs::write(d.join("src"), b"x").unwrap();
        assert!(replace_file(&d.join("src"), &d.join("no-such-dir").join("state.json")).is_err());
        assert!(d.join("src").exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn replace_file_waits_out_a_reader_that_holds_the_target_briefly() {
        let d = tempdir("replace-busy");
        let (from, to) = (d.join("new.tmp"), d.join("state.json"));
        fs::write(&to, b"old").unwrap();
        fs::write(&from, b"new").unwrap();
        // Like a virus scanner: a handle open on the target for 150 ms.
        let reader = File::open(&to).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(reader);
        });
        replace_file(&from, &to).unwrap();
        t.join().unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"new");
        // A handle that stays open: an error after the retries, nothing lost.
        fs::write(&from, b"newer").unwrap();
        let reader = File::open(&to).unwrap();
        let started = Instant::now();
        let e = replace_file(&from, &to).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(ERROR_ACCESS_DENIED), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(reader);
        assert_eq!(fs::read(&to).unwrap(), b"new");
        assert_eq!(fs::read(&from).unwrap(), b"newer");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn directories_cannot_be_opened_so_sync_dir_does_not_try() {
        let d = tempdir("dir");
        assert!(File::open(&d).is_err(), "std opened a directory: sync_dir could fsync it");
        sync_dir(&d).unwrap();
        create_private_dir(&d.join("a").join("b")).unwrap();
        create_private_file(&d.join("f")).unwrap();
        assert_eq!(create_private_file(&d.join("f")).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn store_replaces_state_and_history_on_windows() {
        let d = tempdir("store");
        let store = Store::open(&d).unwrap();
        let g = store.lock().unwrap();
        let mut st = State { last_sent: Some(1), ..State::default() };
        for i in 0..5 {
            st.last_sent = Some(i);
            st.last_error = Some(format!("attempt {i}"));
            store.save(&g, &st).unwrap();
            assert_eq!(store.load(&g), (st.clone(), None));
        }
        // A reader outside the lock is not blocked: the lock is on another file.
        let text = fs::read_to_string(d.join("state.json")).unwrap();
        assert!(text.contains("attempt 4"), "{text}");
        let names: Vec<String> = fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
        // A corrupted file is set aside with std::fs::rename on Windows too.
        fs::write(d.join("state.json"), b"{\"format\":1,").unwrap();
        let (loaded, warning) = store.load(&g);
        assert_eq!(loaded, State::default());
        assert!(warning.unwrap().contains("kept aside"));
        assert!(fs::read_dir(&d).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("state.json.bad-")));
        drop(g);
        fs::remove_dir_all(d).unwrap();
    }

    fn try_lock_file(dir: &Path) -> Result<(), fs::TryLockError> {
        let f = OpenOptions::new().read(true).write(true).open(dir.join("lock")).unwrap();
        f.try_lock()
        // Dropping `f` closes the handle, which releases a lock it took.
    }

    #[test]
    fn lock_is_exclusive_per_handle_and_released_by_dropping_the_guard() {
        let d = tempdir("lock");
        let store = Store::open(&d).unwrap();
        let g = store.lock().unwrap();
        assert!(matches!(try_lock_file(&d), Err(fs::TryLockError::WouldBlock)), "a second handle took the held lock");
        // Another thread blocks in Store::lock until the guard is dropped.
        let (tx, rx) = mpsc::channel();
        let d2 = d.clone();
        let t = std::thread::spawn(move || {
            let store = Store::open(&d2).unwrap(); // takes and drops the lock too: blocks as well
            let g = store.lock().unwrap();
            tx.send(Instant::now()).unwrap();
            drop(g);
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "Store::lock did not wait for the holder");
        let released = Instant::now();
        drop(g);
        let acquired = rx.recv_timeout(Duration::from_secs(10)).expect("the lock was not released by dropping the guard");
        assert!(acquired >= released);
        t.join().unwrap();
        try_lock_file(&d).expect("lock still held after every guard was dropped");
        fs::remove_dir_all(d).unwrap();
    }

    // ---- two processes: a service and a desktop program sharing state_dir ----

    const CHILD_ENV: &str = "OPTIN_TEST_LOCK_CHILD_DIR";

    /// Not a test by itself: the other process of the tests below (the test
    /// binary runs itself with `--ignored --exact` this name). It takes the
    /// lock, writes a state, says HELD, then follows commands on stdin.
    #[test]
    #[ignore = "helper process for the two-process lock tests"]
    fn lock_holder_child() {
        let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
        let store = Store::open(Path::new(&dir)).unwrap();
        let g = store.lock().unwrap();
        store.save(&g, &State { last_error: Some("written by the child".into()), ..State::default() }).unwrap();
        let mut out = io::stdout();
        writeln!(out, "HELD").unwrap();
        out.flush().unwrap();
        let mut guard = Some(g);
        for line in io::stdin().lock().lines() {
            match line.unwrap().trim() {
                "release" => {
                    drop(guard.take());
                    writeln!(out, "RELEASED").unwrap();
                    out.flush().unwrap();
                }
                "exit" => break,
                _ => {}
            }
        }
    }

    struct ChildHolder {
        child: Child,
        stdin: ChildStdin,
        lines: mpsc::Receiver<String>,
    }

    impl ChildHolder {
        fn spawn(dir: &Path) -> ChildHolder {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "platform::windows::tests::lock_holder_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("cannot start the child process");
            let stdin = child.stdin.take().unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut holder = ChildHolder { child, stdin, lines };
            holder.expect("HELD");
            holder
        }

        fn expect(&mut self, what: &str) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    // libtest prints "test <name> ... " without a newline before it.
                    Ok(l) if l.trim_end().ends_with(what) => return,
                    Ok(_) => continue, // libtest's own output
                    Err(_) => panic!("the child process never said {what}"),
                }
            }
        }

        fn say(&mut self, what: &str) {
            writeln!(self.stdin, "{what}").unwrap();
            self.stdin.flush().unwrap();
        }
    }

    impl Drop for ChildHolder {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[test]
    fn two_processes_contend_on_the_lock_file() {
        let d = tempdir("two-proc");
        let mut child = ChildHolder::spawn(&d);
        assert!(matches!(try_lock_file(&d), Err(fs::TryLockError::WouldBlock)), "this process took the lock the child holds");
        // The state file itself stays readable while the other process holds the lock.
        assert!(fs::read_to_string(d.join("state.json")).unwrap().contains("written by the child"));
        // Store::lock waits for the other process.
        let (tx, rx) = mpsc::channel();
        let d2 = d.clone();
        let t = std::thread::spawn(move || {
            let store = Store::open(&d2).unwrap(); // takes and drops the lock too: blocks as well
            let g = store.lock().unwrap();
            let (st, _) = store.load(&g);
            tx.send(st).unwrap();
            // Hold it until the main thread has checked the child cannot take it.
            std::thread::sleep(Duration::from_millis(200));
            drop(g);
        });
        assert!(rx.recv_timeout(Duration::from_millis(500)).is_err(), "Store::lock returned while another process held the lock");
        child.say("release");
        child.expect("RELEASED");
        let st = rx.recv_timeout(Duration::from_secs(10)).expect("the lock was not handed over after the other process dropped its guard");
        assert_eq!(st.last_error.as_deref(), Some("written by the child"));
        t.join().unwrap();
        child.say("exit");
        let status = child.child.wait().unwrap();
        assert!(status.success(), "child process: {status}");
        try_lock_file(&d).expect("the lock is free once both are done");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_killed_holder_releases_the_lock() {
        let d = tempdir("killed");
        let mut child = ChildHolder::spawn(&d);
        assert!(matches!(try_lock_file(&d), Err(fs::TryLockError::WouldBlock)));
        child.child.kill().unwrap(); // TerminateProcess: no destructor runs
        child.child.wait().unwrap();
        // Windows releases a dead process's locks soon, not necessarily at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while try_lock_file(&d).is_err() {
            assert!(Instant::now() < deadline, "a killed process kept the lock");
            std::thread::sleep(Duration::from_millis(50));
        }
        let store = Store::open(&d).unwrap();
        drop(store.lock().unwrap());
        drop(child);
        fs::remove_dir_all(d).unwrap();
    }
}
