//! Windows: the real version API and a write-through atomic replace, declared
//! by hand (three functions do not justify a bindings crate).

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
}

pub fn os_family() -> &'static str {
    "windows"
}

/// "10.0.19045": major.minor plus the build number (which tells Windows 10
/// from 11 and the feature release).
pub fn os_version() -> String {
    let mut info = OsVersionInfoW {
        size: std::mem::size_of::<OsVersionInfoW>() as u32,
        major: 0,
        minor: 0,
        build: 0,
        platform_id: 0,
        csd_version: [0; 128],
    };
    // SAFETY: `info` is a properly sized, writable OSVERSIONINFOW.
    let status = unsafe { RtlGetVersion(&mut info) };
    if status != 0 {
        return "unknown".into();
    }
    format!("{}.{}.{}", info.major, info.minor, info.build)
}

pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    // The profile or ProgramData directory's ACL is inherited; tightening it
    // is the installer's job on Windows.
    fs::create_dir_all(dir)
}

pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

fn wide(p: &Path) -> Vec<u16> {
    OsStr::new(p).encode_wide().chain(std::iter::once(0)).collect()
}

/// Atomic replace that does not return before the rename is on disk.
pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (wide(from), wide(to));
    // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call.
    let ok = unsafe { MoveFileExW(f.as_ptr(), t.as_ptr(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH) };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opening a directory as a file fails on Windows; MOVEFILE_WRITE_THROUGH
/// already makes the rename durable.
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
