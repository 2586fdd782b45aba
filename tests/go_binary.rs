//! The Go build-info reader on real binaries: the machine's Go builds a
//! small program plain, stripped (`-s -w`), as a PIE, with `-trimpath`, and
//! for 32-bit and big-endian targets; each must give the version and the
//! path `go version -m` prints, from the file and (where it runs) from a
//! running process's `/proc/PID/exe`, under `/proc` or another proc root.
//! Non-Go executables, gone processes and damaged copies are "not Go",
//! never a panic; a process of another user is an error that names
//! CAP_SYS_PTRACE.

use headroom::source::go_binary::{go_build_of, go_build_of_file, go_build_of_pid, GoBinaryError, GoBuildInfo};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

const INSTALL: &str = "`go` not found: install the test dependencies with scripts/install-test-deps.sh";

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

/// How each test binary is built: name, extra `go build` flags, GOARCH
/// (`None`: this machine's), and what it covers.
const BUILDS: &[(&str, &[&str], Option<&str>)] = &[
    ("plain", &[], None),
    ("stripped", &["-ldflags=-s -w"], None),
    ("pie", &["-buildmode=pie"], None),
    ("trimpath", &["-trimpath"], None),
    ("elf32", &[], Some("386")),
    ("big-endian", &[], Some("s390x")),
    ("elf32-big-endian", &[], Some("mips")),
];

/// A Go built binary and what `go version -m` says of it.
struct Built {
    bin: PathBuf,
    want: GoBuildInfo,
    native: bool,
}

struct Builds {
    _dir: tempfile::TempDir,
    by_name: HashMap<&'static str, Built>,
}

/// Every binary of [`BUILDS`], built once for all tests of this file.
fn builds() -> &'static HashMap<&'static str, Built> {
    static BUILDS_ONCE: OnceLock<Builds> = OnceLock::new();
    &BUILDS_ONCE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("src");
            std::fs::create_dir_all(&src).unwrap();
            std::fs::write(src.join("main.go"), MAIN).unwrap();
            let by_name = BUILDS
                .iter()
                .map(|&(name, flags, arch)| {
                    let bin = dir.path().join(name);
                    build(&src, &bin, flags, arch);
                    let want = go_version_m(&bin);
                    (
                        name,
                        Built {
                            bin,
                            want,
                            native: arch.is_none(),
                        },
                    )
                })
                .collect();
            Builds { _dir: dir, by_name }
        })
        .by_name
}

fn go() -> Command {
    let mut c = Command::new("go");
    c.env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-cache"));
    c
}

/// Builds the program in `src` with `flags` into `out`.
fn build(src: &Path, out: &Path, flags: &[&str], arch: Option<&str>) {
    let mut c = go();
    c.arg("build").args(flags).arg("-o").arg(out).arg(".").current_dir(src);
    c.env("GOPATH", src.parent().unwrap().join("gopath"));
    if let Some(arch) = arch {
        c.env("GOARCH", arch);
    }
    let status = c.status().expect(INSTALL);
    assert!(status.success(), "go build {flags:?} GOARCH={arch:?} failed");
}

/// The version and path as `go version -m BINARY` prints them:
///
/// ```text
/// /tmp/x/plain: go1.19.8
///         path    _/tmp/x/src
/// ```
fn go_version_m(bin: &Path) -> GoBuildInfo {
    let out = go().arg("version").arg("-m").arg(bin).output().expect(INSTALL);
    assert!(out.status.success(), "go version -m {}", bin.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let version = lines
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .expect("a version line");
    let path = lines.find_map(|l| l.trim_start().strip_prefix("path\t"));
    GoBuildInfo {
        version: version.to_owned(),
        path: path.map(str::to_owned),
    }
}

/// A running child, killed by its PID and reaped when dropped (also when a
/// test fails).
struct Running(Child);

impl Running {
    fn start(bin: &Path) -> Running {
        let child = Command::new(bin)
            .arg("sleep")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Running(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn real_go_builds_give_what_go_version_prints_from_the_file() {
    for (name, b) in builds() {
        assert!(
            b.want.version.starts_with("go1."),
            "{name}: go version -m said {:?}",
            b.want
        );
        assert!(b.want.path.is_some(), "{name}: go version -m printed no path");
        let got = go_build_of_file(&b.bin)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: not seen as Go"));
        assert_eq!(got, b.want, "{name}");
    }
}

#[test]
fn running_go_programs_from_proc_and_from_another_proc_root() {
    let root = tempfile::tempdir().unwrap();
    for (name, b) in builds().iter().filter(|(_, b)| b.native) {
        let child = Running::start(&b.bin);
        let got = go_build_of_pid(Path::new("/proc"), child.pid());
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{name}: {e}")),
            Some(b.want.clone()),
            "{name}"
        );
        // A proc root of our own, as a container's mounted host /proc is:
        // ROOT/PID/exe.
        let dir = root.path().join(child.pid().to_string());
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&b.bin, dir.join("exe")).unwrap();
        let got = go_build_of_pid(root.path(), child.pid());
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{name}: {e}")),
            Some(b.want.clone()),
            "{name}"
        );
        // A PID that ROOT does not hold, though /proc does.
        let got = go_build_of_pid(root.path(), std::process::id());
        assert_eq!(got.unwrap_or_else(|e| panic!("{name}: {e}")), None, "{name}");
    }
}

#[test]
fn gone_processes_are_not_go() {
    // A process that exited and was reaped: no /proc/PID.
    let mut exited = Command::new("/bin/true").spawn().unwrap();
    let pid = exited.id();
    exited.wait().unwrap();
    assert_eq!(go_build_of_pid(Path::new("/proc"), pid).unwrap(), None);
    // A zombie: /proc/PID is there, its exe link is not.
    let plain = &builds()["plain"];
    let mut zombie = Command::new(&plain.bin)
        .arg("sleep")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = zombie.id();
    zombie.kill().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(") ").next().map(|r| r.chars().next()))
            .flatten()
    };
    while state() != Some('Z') {
        assert!(std::time::Instant::now() < deadline, "PID {pid} never became a zombie");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let got = go_build_of_pid(Path::new("/proc"), pid);
    zombie.wait().unwrap();
    assert_eq!(got.unwrap(), None);
    // No such PID ever (above pid_max), and a kernel thread (kthreadd).
    assert_eq!(go_build_of_pid(Path::new("/proc"), u32::MAX).unwrap(), None);
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        assert_eq!(go_build_of_pid(Path::new("/proc"), 2).unwrap(), None);
    }
}

/// Set in the copy of this test that runs as another user: the PID of a
/// process of root's to read.
const AS_NOBODY: &str = "HEADROOM_TEST_GO_BINARY_PID_OF_ROOT";

#[test]
fn another_users_process_is_an_error_naming_cap_sys_ptrace() {
    if let Ok(pid) = std::env::var(AS_NOBODY) {
        let pid: u32 = pid.parse().unwrap();
        let e = go_build_of_pid(Path::new("/proc"), pid).unwrap_err();
        assert!(
            matches!(e, GoBinaryError::PtraceDenied { pid: p, .. } if p == pid),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("/proc/{pid}/exe")) && msg.contains("CAP_SYS_PTRACE"),
            "{msg}"
        );
        return;
    }
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(
        uid, 0,
        "this test runs itself as another user (nobody) to be refused a root process's /proc/PID/exe: run the tests as root"
    );
    // This very test, again, as nobody, reading this process of root's.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "another_users_process_is_an_error_naming_cap_sys_ptrace",
            "--nocapture",
        ])
        .env(AS_NOBODY, std::process::id().to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("1 passed"), "as nobody:\n{text}");
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
    assert_eq!(go_build_of_file(&gohog).unwrap(), Some(go_version_m(&gohog)));
    assert_eq!(go_build_of_pid(Path::new("/proc"), std::process::id()).unwrap(), None);
}

#[test]
fn other_files_are_not_go() {
    for p in ["/bin/true", "/bin/sh", "/usr/bin/env"] {
        assert_eq!(go_build_of_file(Path::new(p)).unwrap(), None, "{p}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    assert_eq!(go_build_of_file(&script).unwrap(), None);
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(go_build_of_file(&empty).unwrap(), None);
    assert_eq!(go_build_of_file(&dir.path().join("missing")).unwrap(), None);
    // A directory and a FIFO (not waited on): errors naming them.
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for p in [dir.path(), &fifo] {
        let e = go_build_of_file(p).unwrap_err();
        assert!(matches!(e, GoBinaryError::NotAFile { .. }), "{e:?}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
    }
}

#[test]
fn damaged_copies_never_panic() {
    for name in ["plain", "elf32-big-endian"] {
        let b = &builds()[name];
        let bytes = std::fs::read(&b.bin).unwrap();
        // Cut at many points: each is Go (when the build info and section
        // table survive) or not, never a panic or a wrong version.
        let (mut go, mut not) = (0, 0);
        for cut in (0..bytes.len()).step_by(bytes.len() / 97 + 1).chain([bytes.len() - 1]) {
            match go_build_of(&bytes[..cut]).unwrap() {
                Some(info) => {
                    assert_eq!(info.version, b.want.version, "{name} cut at {cut}");
                    go += 1;
                }
                None => not += 1,
            }
        }
        // The first cuts lose the header or the build info; the last keep both.
        assert!(go > 0 && not > 0, "{name}: {go} cut copies seen as Go, {not} not");
        // Corrupt every byte of the ELF header in turn, and the section table.
        // One copy, each byte changed and put back in turn.
        let mut c = bytes.clone();
        for i in 0..64 {
            c[i] ^= 0xff;
            if let Some(info) = go_build_of(&c[..]).unwrap() {
                assert_eq!(info.version, b.want.version, "{name} header byte {i}");
            }
            c[i] ^= 0xff;
        }
        // The section table: a Go binary's has a few dozen entries.
        let shoff = shoff(&bytes);
        for i in (shoff..bytes.len().min(shoff + 64 * 64)).step_by(3) {
            c[i] = c[i].wrapping_add(0x5a);
            let _ = go_build_of(&c[..]).unwrap();
            c[i] = c[i].wrapping_sub(0x5a);
        }
    }
}

/// `e_shoff` of an ELF file of either class and byte order.
fn shoff(elf: &[u8]) -> usize {
    let (at, n) = if elf[4] == 2 { (0x28, 8) } else { (0x20, 4) };
    let mut b = [0u8; 8];
    if elf[5] == 2 {
        b[8 - n..].copy_from_slice(&elf[at..at + n]);
        u64::from_be_bytes(b) as usize
    } else {
        b[..n].copy_from_slice(&elf[at..at + n]);
        u64::from_le_bytes(b) as usize
    }
}

#[test]
fn damaged_files_on_disk_are_not_go_and_not_errors() {
    let plain = &builds()["plain"];
    let bytes = std::fs::read(&plain.bin).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("damaged");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("cut in the ELF header", bytes[..40].to_vec()),
        ("cut before the section table", bytes[..shoff(&bytes)].to_vec()),
        ("a section table at 2^64-1", with(&bytes, 0x28, &u64::MAX.to_le_bytes())),
        (
            "a section table at 2^63",
            with(&bytes, 0x28, &(1u64 << 63).to_le_bytes()),
        ),
        ("a section table at 0", with(&bytes, 0x28, &0u64.to_le_bytes())),
        // 4096 entries of 64 KiB: not read.
        (
            "huge section headers",
            with(&with(&bytes, 0x3a, &[0xff, 0xff]), 0x3c, &4096u16.to_le_bytes()),
        ),
        ("no section names", with(&bytes, 0x3e, &0xfffeu16.to_le_bytes())),
    ];
    for (what, b) in cases {
        std::fs::write(&file, b).unwrap();
        assert_eq!(
            go_build_of_file(&file).unwrap_or_else(|e| panic!("{what}: {e}")),
            None,
            "{what}"
        );
    }
}

/// `bytes` with `patch` written at `at`.
fn with(bytes: &[u8], at: usize, patch: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + patch.len()].copy_from_slice(patch);
    b
}
