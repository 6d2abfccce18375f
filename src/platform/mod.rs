//! The few things that differ per operating system, behind one small API.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

pub fn arch() -> &'static str {
    std::env::consts::ARCH
}
