//! The checked-in header must be exactly what the pinned cbindgen generates
//! from the current source. Regenerate with `scripts/update-header`.

#[test]
fn header_is_fresh() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let mut config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    // The header carries Cargo.toml's version, so C code can check it at compile time
    // (and scripts/test-package can check that every package carries the same one).
    config.after_includes = Some(format!(
        "\n/** The version of the library this header belongs to (tel_version() returns the same). */\n#define OPTIN_TELEMETRY_VERSION \"{}\"",
        env!("CARGO_PKG_VERSION")
    ));
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen failed")
        .write(&mut generated);
    let path = format!("{dir}/include/optin_telemetry.h");
    if std::env::var_os("OPTIN_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/optin_telemetry.h is stale: run scripts/update-header and commit the result"
    );
}
