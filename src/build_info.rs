//! The running build: the crate's version, the git commit it was built
//! from (`unknown` when built without git: a crate tarball, a Docker build
//! without `HEADROOM_GIT_COMMIT`) and the rustc that built it, as
//! `build.rs` found them.

/// The crate's version (`0.1.0`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit's first 12 hex digits, or `unknown`.
pub const COMMIT: &str = env!("HEADROOM_GIT_COMMIT");
/// The rustc version (`1.95.0`), or `unknown`.
pub const RUSTC: &str = env!("HEADROOM_RUSTC_VERSION");
/// What `--version` prints after the name: `0.1.0 (commit 0123456789ab)`.
pub const VERSION_LINE: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("HEADROOM_GIT_COMMIT"), ")");
