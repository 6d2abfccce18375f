//! The administrator's machine-wide switch, read from where each operating
//! system keeps such settings, so that a company can turn telemetry off for
//! every product (or one product) without touching each product's settings.
//!
//! - Windows (Group Policy): `HKLM\SOFTWARE\Policies\optin-telemetry`, DWORD
//!   `Disabled` (all products), and the same value in the subkey named after
//!   the configuration's `product` (that product only). The ADMX template in
//!   `windows/policy/` writes exactly these values.
//! - Unix: the file `/etc/optin-telemetry/disabled` (all products) or
//!   `/etc/optin-telemetry/<product>.disabled` (that product only). Their
//!   content does not matter; they exist or not (a dangling symbolic link
//!   exists). A file named `/etc/optin-telemetry` instead of the directory
//!   counts as set for all products.
//!
//! A policy that cannot be read (access denied, a value of the wrong type) is
//! treated as set: an administrator's "off" must not be lost to a permission
//! problem, and the reason says what happened.
//!
//! There is deliberately no way to point the library at another policy
//! location at run time: anything that could redirect the lookup could also
//! be used to hide a policy. Tests exercise the lookup through `blocked_in`
//! (a directory given as an argument) and, end to end, through a private
//! mount namespace on Linux and Wine's registry on Windows.

/// Registry key (under HKEY_LOCAL_MACHINE) of the machine-wide policy. *fixed*
pub const REGISTRY_KEY: &str = r"SOFTWARE\Policies\optin-telemetry";
/// DWORD value under [`REGISTRY_KEY`] and under each product's subkey. *fixed*
pub const REGISTRY_VALUE: &str = "Disabled";
/// Directory of the policy files on Unix.
pub const POLICY_DIR: &str = "/etc/optin-telemetry";
/// File name of the machine-wide switch in [`POLICY_DIR`].
pub const ALL_PRODUCTS_FILE: &str = "disabled";
/// Suffix of a per-product switch: `<product>.disabled`.
pub const PRODUCT_FILE_SUFFIX: &str = ".disabled";

/// Why the administrator's policy blocks sending for `product`, if it does.
pub fn blocked(product: &str) -> Option<String> {
    imp::blocked(product)
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::io::ErrorKind;
    use std::path::Path;

    pub fn blocked(product: &str) -> Option<String> {
        blocked_in(Path::new(POLICY_DIR), product)
    }

    /// Checks `dir` (the real one is [`POLICY_DIR`]; tests pass their own).
    pub(crate) fn blocked_in(dir: &Path, product: &str) -> Option<String> {
        // `product` is checked at configuration time: no '/', so the name
        // cannot leave `dir`; its ".disabled" suffix rules out "." and "..".
        for (name, scope) in [(ALL_PRODUCTS_FILE.to_string(), "all products"), (format!("{product}{PRODUCT_FILE_SUFFIX}"), "this product")] {
            let path = dir.join(&name);
            match std::fs::symlink_metadata(&path) {
                Ok(_) => return Some(format!("policy: {} exists (administrator switch, {scope})", path.display())),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                // A file where the directory belongs (`echo 1 > /etc/optin-telemetry`):
                // an administrator meant to switch sending off.
                Err(e) if e.kind() == ErrorKind::NotADirectory => {
                    return Some(format!("policy: {} is not a directory; treated as set (all products)", dir.display()))
                }
                Err(e) => return Some(format!("policy: cannot check {} ({e}); treated as set", path.display())),
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn files_block_all_products_or_one() {
            let dir = std::env::temp_dir().join(format!("optin-policy-{}", crate::random_hex(8)));
            assert_eq!(blocked_in(&dir, "Mock Archiver"), None, "a missing directory is no policy");
            std::fs::create_dir_all(&dir).unwrap();
            assert_eq!(blocked_in(&dir, "Mock Archiver"), None, "an empty directory is no policy");
            std::fs::write(dir.join("Other Product.disabled"), "").unwrap();
            assert_eq!(blocked_in(&dir, "Mock Archiver"), None, "another product's switch does not apply");
            let one = blocked_in(&dir, "Other Product").expect("per-product switch");
            assert!(one.contains("Other Product.disabled") && one.contains("this product"), "{one}");
            std::fs::write(dir.join("disabled"), "0").unwrap(); // content does not matter
            let all = blocked_in(&dir, "Mock Archiver").expect("machine-wide switch");
            assert!(all.contains("all products"), "{all}");
            std::fs::remove_dir_all(&dir).unwrap();
        }

        /// `echo 1 > /etc/optin-telemetry` is an administrator trying to
        /// switch sending off: it must not be read as "no policy".
        #[test]
        fn a_file_in_place_of_the_directory_counts_as_set() {
            let f = std::env::temp_dir().join(format!("optin-policy-file-{}", crate::random_hex(8)));
            std::fs::write(&f, "1").unwrap();
            let why = blocked_in(&f, "Mock Archiver").expect("a file where the policy directory belongs blocks");
            assert!(why.contains("not a directory") && why.contains("treated as set"), "{why}");
            std::fs::remove_file(&f).unwrap();
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::*;

    type Hkey = isize;
    const HKEY_LOCAL_MACHINE: Hkey = 0x8000_0002u32 as i32 as isize;
    const RRF_RT_ANY: u32 = 0x0000_ffff;
    const REG_DWORD: u32 = 4;
    const ERROR_SUCCESS: i32 = 0;
    const ERROR_FILE_NOT_FOUND: i32 = 2;
    const ERROR_MORE_DATA: i32 = 234;

    #[link(name = "advapi32")]
    extern "system" {
        fn RegGetValueW(key: Hkey, subkey: *const u16, value: *const u16, flags: u32, kind: *mut u32, data: *mut u8, size: *mut u32) -> i32;
    }

    use crate::platform::wide;

    enum Read {
        Absent,
        Dword(u32),
        Other(String),
    }

    /// `HKLM\<subkey>\Disabled`, any type accepted so that a wrong type can
    /// be reported (and treated as set) rather than ignored.
    fn read(subkey: &str) -> Read {
        let (k, v) = (wide(subkey), wide(REGISTRY_VALUE));
        let mut kind = 0u32;
        let mut data = [0u8; 8];
        let mut size = data.len() as u32;
        // SAFETY: NUL-terminated strings and a buffer whose size is passed.
        let rc = unsafe { RegGetValueW(HKEY_LOCAL_MACHINE, k.as_ptr(), v.as_ptr(), RRF_RT_ANY, &mut kind, data.as_mut_ptr(), &mut size) };
        match rc {
            ERROR_SUCCESS if kind == REG_DWORD && size == 4 => Read::Dword(u32::from_le_bytes([data[0], data[1], data[2], data[3]])),
            ERROR_SUCCESS | ERROR_MORE_DATA => Read::Other(format!("is not a DWORD (registry type {kind})")),
            ERROR_FILE_NOT_FOUND => Read::Absent,
            e => Read::Other(format!("cannot be read (Windows error {e})")),
        }
    }

    pub fn blocked(product: &str) -> Option<String> {
        // `product` is checked at configuration time: no backslash, so it
        // names exactly one subkey.
        for (subkey, scope) in [(REGISTRY_KEY.to_string(), "all products"), (format!(r"{REGISTRY_KEY}\{product}"), "this product")] {
            match read(&subkey) {
                Read::Absent | Read::Dword(0) => {}
                Read::Dword(_) => return Some(format!(r"policy: Group Policy HKLM\{subkey}\{REGISTRY_VALUE} is set ({scope})")),
                Read::Other(why) => return Some(format!(r"policy: Group Policy HKLM\{subkey}\{REGISTRY_VALUE} {why}; treated as set ({scope})")),
            }
        }
        None
    }
}

#[cfg(not(any(unix, windows)))]
mod imp {
    pub fn blocked(_product: &str) -> Option<String> {
        None
    }
}
