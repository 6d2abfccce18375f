# Sourced by scripts/package: the settings that make a release build of the
# library byte-identical wherever the source tree lies.
#
#   reproducible_env ROOT   exports, for both shipped targets, rustflags that
#     - map ROOT, the cargo home and the rustup home to fixed names, so no
#       build path ends up in panic locations (and no /root or /home/<user>);
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
    local remap="--remap-path-prefix=$root=/build/optin-telemetry --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup"
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$remap"
    export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="$remap -C link-arg=-Wl,--no-insert-timestamp"
    if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
        SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
    fi
    export SOURCE_DATE_EPOCH
    export CARGO_TERM_COLOR=never
}
