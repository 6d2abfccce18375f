use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

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
    fn coarse_version_drops_details() {
        assert_eq!(super::coarse("6.1.0-28-cloud-amd64\n").as_deref(), Some("6.1"));
        assert_eq!(super::coarse("5.15.167.4-microsoft-standard-WSL2").as_deref(), Some("5.15"));
        assert_eq!(super::coarse("garbage"), None);
    }
}
