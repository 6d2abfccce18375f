# Sourced by scripts/package: the settings that make a release build of the
# library byte-identical wherever the source tree lies.
#
#   reproducible_env ROOT   exports, for both shipped targets, rustflags that
#     - map the cargo home and the rustup home to fixed names, so no home
#       folder (/root, /home/<user>) ends up in panic locations;
#     - for Windows, keep the linker from stamping the build time into the
#       PE header (--no-insert-timestamp).
#   The rustflags go into CARGO_TARGET_<TRIPLE>_RUSTFLAGS (not RUSTFLAGS,
#   which would override them and apply to the Windows build too).
#   SOURCE_DATE_EPOCH: the last commit's time, unless already set.

reproducible_env() {
    local root=$1
    local cargo_home=${CARGO_HOME:-$HOME/.cargo}
    local rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
    if [ -n "${RUSTFLAGS:-}" ] || [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
        echo "package: ignoring RUSTFLAGS/CARGO_ENCODED_RUSTFLAGS from the environment (they would change the build)" >&2
        unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
    fi
    # No remapping of ROOT itself: cargo already passes this crate's sources as
    # relative paths (src/ffi.rs), and a flag naming ROOT would make the flags, and
    # with them the Windows DLL's section order, depend on the folder.
    local remap="--remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup"
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$remap"
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="$remap -C link-arg=-Wl,--no-insert-timestamp"
    # Intermediate files outside the source tree, at a path that does not depend on
    # where the tree lies. GNU ld lays out a PE import table sorted by the paths of
    # the import libraries (SORT(*)(.idata$N) in its default script), and rustc writes
    # the raw-dylib import libraries (crypt32 for windows-sys, ...) into a temporary
    # folder under the build dir: a build dir of /work/... sorts after mingw's
    # /usr/x86_64-w64-mingw32/lib, one of /tmp/... before it, and the DLL differed.
    # (Final artifacts still land in ROOT/target.)
    local build_dir='{cargo-cache-home}/optin-telemetry-build/{workspace-path-hash}'
    export CARGO_BUILD_BUILD_DIR="${CARGO_BUILD_BUILD_DIR:-$build_dir}"
    if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
        SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
    fi
    export SOURCE_DATE_EPOCH
    export CARGO_TERM_COLOR=never
}
