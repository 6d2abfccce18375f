//! Link settings of the shared library that a distribution expects from the
//! build itself (README "Release packages").
//!
//! Linux: the cdylib gets the SONAME `liboptin_telemetry.so.<major>`, so a
//! program linked with `-loptin_telemetry` records that name (not the
//! unversioned development link) and packages can install
//! `liboptin_telemetry.so.<major>` beside `liboptin_telemetry.so`.
//!
//! No version script of our own: rustc already passes one to the linker that
//! exports exactly the `#[no_mangle]` functions (all `tel_*`) and makes every
//! other symbol local. A second one made GNU ld 2.40 stop with "anonymous
//! version tag cannot be combined with other version tags" (rustc 1.95 with
//! `-C linker-features=-lld`; rustc links through `cc`, i.e. GNU ld on Debian,
//! before 1.90, and this crate's rust-version is 1.89), and under rust-lld
//! rustc's explicit names override a second script's `local: *`, so it could
//! not hide anything either. scripts/test-c, scripts/test-cpp and
//! scripts/test-package check the exported symbols instead.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liboptin_telemetry.so.{major}");
    }
}
