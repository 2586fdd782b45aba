//! The Go build-info reader on real binaries: Debian's Go builds a small
//! program plain, stripped (`-s -w`) and as a PIE; each must give the
//! version `go version` prints, from the file and from a running process's
//! `/proc/PID/exe`. Non-Go executables and damaged copies are "not Go",
//! never a panic.

use headroom::source::go_binary::{go_build_of, go_build_of_file, go_build_of_pid};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn go_version() -> String {
    let out = Command::new("go")
        .arg("version")
        .output()
        .expect("`go` not found: install the test dependencies with scripts/install-test-deps.sh");
    // "go version go1.19.8 linux/amd64"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .expect("go version output")
        .to_owned()
}

const MAIN: &str = r#"package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		time.Sleep(time.Minute)
	}
	fmt.Println("hello")
}
"#;

/// Builds the program with `flags` into `dir/name`.
fn build(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("main.go"), MAIN).unwrap();
    let out = dir.join(name);
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-cache");
    let status = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", cache)
        .env("GOPATH", dir.join("gopath"))
        .status()
        .expect("`go` not found: install the test dependencies with scripts/install-test-deps.sh");
    assert!(status.success(), "go build {flags:?} failed");
    out
}

#[test]
fn real_go_builds_give_their_version_from_the_file_and_the_process() {
    let want = go_version();
    let dir = tempfile::tempdir().unwrap();
    for (name, flags) in [
        ("plain", &[][..]),
        ("stripped", &["-ldflags=-s -w"][..]),
        ("pie", &["-buildmode=pie"][..]),
        ("trimpath", &["-trimpath"][..]),
    ] {
        let bin = build(dir.path(), name, flags);
        let info = go_build_of_file(&bin)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: not seen as Go"));
        assert_eq!(info.version, want, "{name}");

        let mut child = Command::new(&bin)
            .arg("sleep")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the Go program");
        let got = go_build_of_pid(Path::new("/proc"), child.id());
        let _ = child.kill();
        let _ = child.wait();
        let got = got.unwrap_or_else(|e| panic!("{name} process: {e}"));
        assert_eq!(got.map(|i| i.version), Some(want.clone()), "{name} process");
    }
}

#[test]
fn the_test_programs_and_this_test_itself() {
    // The gohog the end-to-end tests run is Go; this Rust test binary is not.
    let gohog = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-programs/gohog");
    if !gohog.exists() {
        let st = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-test-programs.sh"))
            .arg("gohog")
            .status()
            .expect("scripts/build-test-programs.sh");
        assert!(st.success());
    }
    assert_eq!(go_build_of_file(&gohog).unwrap().map(|i| i.version), Some(go_version()));
    assert_eq!(go_build_of_pid(Path::new("/proc"), std::process::id()).unwrap(), None);
}

#[test]
fn other_executables_are_not_go() {
    for p in ["/bin/true", "/bin/sh", "/usr/bin/env"] {
        assert_eq!(go_build_of_file(Path::new(p)).unwrap(), None, "{p}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    assert_eq!(go_build_of_file(&script).unwrap(), None);
    assert_eq!(go_build_of_file(&dir.path().join("missing")).unwrap(), None);
    // A directory cannot be read as a file: an error naming it.
    let e = go_build_of_file(dir.path()).unwrap_err().to_string();
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
}

#[test]
fn damaged_copies_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let bin = build(dir.path(), "plain", &[]);
    let bytes = std::fs::read(&bin).unwrap();
    let want = go_version();
    // Cut at many points: each is Go (when the build info and section
    // table survive) or not, never a panic or a wrong version.
    let (mut go, mut not) = (0, 0);
    for cut in (0..bytes.len()).step_by(bytes.len() / 97 + 1).chain([bytes.len() - 1]) {
        match go_build_of(&bytes[..cut]).unwrap() {
            Some(info) => {
                assert_eq!(info.version, want, "cut at {cut}");
                go += 1;
            }
            None => not += 1,
        }
    }
    // The first cuts lose the header or the build info; the last keep both.
    assert!(go > 0 && not > 0, "{go} cut copies seen as Go, {not} not");
    // Corrupt every byte of the ELF header in turn, and the section table.
    for i in 0..64 {
        let mut b = bytes.clone();
        b[i] ^= 0xff;
        if let Some(info) = go_build_of(&b[..]).unwrap() {
            assert_eq!(info.version, want, "header byte {i}");
        }
    }
    let shoff = u64::from_le_bytes(bytes[0x28..0x30].try_into().unwrap()) as usize;
    for i in (shoff..bytes.len()).step_by(7) {
        let mut b = bytes.clone();
        b[i] = b[i].wrapping_add(0x5a);
        let _ = go_build_of(&b[..]).unwrap();
    }
}
