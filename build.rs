//! Build information for `--version` and `headroom_build_info`: the git
//! commit the binary was built from and the rustc that built it.
//!
//! The commit is `HEADROOM_GIT_COMMIT` when set (a Docker build, which has
//! no `.git`, passes it as a build argument), else `git rev-parse
//! --short=12 HEAD` when this directory is the top of a git work tree, else
//! `unknown` (a crate tarball, a build without git). Nothing here fails the
//! build.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HEADROOM_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let from_env = std::env::var("HEADROOM_GIT_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()));
    let commit = from_env
        .or_else(|| git_commit(Path::new(&dir)))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HEADROOM_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=HEADROOM_RUSTC_VERSION={}", rustc_version());
}

/// `git`'s answer, trimmed; `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// The commit checked out in `dir`, when `dir` is the top of a git work
/// tree (not a tarball unpacked inside some other repository). Asks cargo
/// to run this again when HEAD moves: HEAD itself, the branch it points to
/// and the packed refs, wherever git keeps them (`--git-path` knows a
/// linked work tree's layout).
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watch.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watch {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    commit.bytes().all(|b| b.is_ascii_hexdigit()).then_some(commit)
}

/// `1.95.0` from `rustc 1.95.0 (59807616e 2026-04-14)`; `unknown` if rustc
/// does not say.
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}
