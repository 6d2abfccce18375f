use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub fn os_family() -> &'static str {
    if cfg!(target_os = "macos") {
        "macos"
    } else if cfg!(target_os = "linux") {
        "linux"
    } else {
        std::env::consts::OS
    }
}

/// Kernel version reduced to major.minor ("6.1"), never the full release
/// string (which can carry distribution and build details).
pub fn os_version() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|s| coarse(&s))
        .unwrap_or_else(|| "unknown".into())
}

fn coarse(release: &str) -> Option<String> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(format!("{major}.{minor}"))
}

/// State directory readable only by its owner.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

extern "C" {
    fn geteuid() -> u32;
}

/// Refuses a state directory that another user could write into (and so
/// plant a `state.json` with a "yes"): writable by group or others, or owned
/// by someone other than this process's effective user or root. The same
/// holds for every directory above it, unless that one is sticky (as /tmp):
/// whoever can write a parent can rename our directory away and put one
/// with a planted consent in its place. Returns the resolved path (no
/// symlinks), which is the one that was checked and must be used.
pub fn check_private_dir(dir: &Path) -> Result<PathBuf, String> {
    let resolved = fs::canonicalize(dir).map_err(|e| format!("cannot inspect it ({e})"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { geteuid() };
    check_one(&resolved, euid, false).map_err(|why| if resolved == dir { why } else { format!("(resolved to {}) {why}", resolved.display()) })?;
    for parent in resolved.ancestors().skip(1) {
        check_one(parent, euid, true).map_err(|why| format!("is inside {}, which {why}; other users could swap state_dir for one holding a planted consent", parent.display()))?;
    }
    Ok(resolved)
}

fn check_one(dir: &Path, euid: u32, parent: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dir).map_err(|e| format!("cannot be inspected ({e})"))?;
    if !meta.is_dir() {
        return Err("is not a directory".into());
    }
    let mode = meta.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(parent && sticky) {
        return Err(if parent {
            format!("is writable by group or others and not sticky (mode {mode:04o})")
        } else {
            format!("is writable by group or others (mode {mode:04o}); other users could plant a consent there. Use a directory only its owner can write (chmod go-w)")
        });
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(if parent {
            format!("is owned by uid {}, not by this process's user (uid {euid}) or root", meta.uid())
        } else {
            format!("is owned by uid {}, not by this process's user (uid {euid}) or root; that user could plant a consent there", meta.uid())
        });
    }
    Ok(())
}

/// New file readable only by its owner.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

pub fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

/// Makes a rename durable: the directory entry itself must reach the disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("optin-perm-{}", crate::random_hex(6)));
        super::create_private_dir(&d).unwrap();
        let resolved = std::fs::canonicalize(&d).unwrap();
        assert_eq!(super::check_private_dir(&d), Ok(resolved.clone()));
        for mode in [0o770, 0o707, 0o777, 0o1777] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = super::check_private_dir(&d).unwrap_err();
            assert!(e.contains("writable by group or others"), "{mode:o}: {e}");
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(super::check_private_dir(&d), Ok(resolved));
        std::fs::remove_dir(&d).unwrap();
    }

    #[test]
    fn coarse_version_drops_details() {
        assert_eq!(super::coarse("6.1.0-28-cloud-amd64\n").as_deref(), Some("6.1"));
        assert_eq!(super::coarse("5.15.167.4-microsoft-standard-WSL2").as_deref(), Some("5.15"));
        assert_eq!(super::coarse("garbage"), None);
    }
}
