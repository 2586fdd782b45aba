//! Tells whether a process is a Go program, and which Go built it, from the
//! build info the Go linker writes into every executable (Go 1.13+): the
//! ELF section `.go.buildinfo`, as `go version BINARY` reads it.
//!
//! ```text
//! offset 0   "\xff Go buildinf:"   14 bytes of magic
//!        14  pointer size (4 or 8)
//!        15  flags: bit 0 big-endian, bit 1 strings inline (Go 1.18+)
//!        16  Go 1.13-1.17: two pointers to Go string headers {ptr, len}
//!            (the version, the module info), at virtual addresses
//!        32  Go 1.18+: the version and the module info inline, each a
//!            uvarint length and its bytes
//! ```
//!
//! The module info is text framed by two 16-byte sentinels, lines of
//! tab-separated fields; its first line names the main package or module:
//!
//! ```text
//! path    example.com/app
//! mod     example.com/app (devel)
//! build   -compiler=gc
//! ```
//!
//! Reads are bounded whatever the file: the ELF header, the section header
//! table (at most [`MAX_SECTIONS`] entries), the section names, and at most
//! [`MAX_READ`] bytes of the build info or of any string it points to;
//! never the whole binary. A file that is no ELF file, has no such section
//! (not Go, or stripped of its section headers) or holds a malformed one is
//! "not Go": `Ok(None)`. So is a path that does not exist: for
//! `/proc/PID/exe`, a process that has exited or is a zombie or a kernel
//! thread. Errors are reserved for files that exist but cannot be read.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Entries read from a section header table at most.
pub const MAX_SECTIONS: usize = 4096;
/// Bytes read for the section names, the build info, or one string at most.
pub const MAX_READ: usize = 64 * 1024;
/// Bytes of a Go version string at most (`go1.22.4`, or a development
/// toolchain's `devel go1.23-1a2b3c4 Tue Jun 4 12:00:00 2024 +0000`).
pub const MAX_VERSION: usize = 256;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
/// `cmd/go` frames the module info with sentinels of this length.
const SENTINEL_LEN: usize = 16;
const SHT_NOBITS: u32 = 8;
const ELF32_SHDR_LEN: usize = 40;
const ELF64_SHDR_LEN: usize = 64;
/// Bytes of a section header table read at most.
const MAX_TABLE: usize = MAX_SECTIONS * ELF64_SHDR_LEN;

/// What the Go linker recorded of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// `go1.22.4`, as `go version` prints it.
    pub version: String,
    /// The main module's or package's path (the `path` line of the module
    /// info), when recorded.
    pub path: Option<String>,
}

/// An executable that exists but could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    /// The kernel refused `/proc/PID/exe`: the process belongs to another
    /// user or is not dumpable, and this process lacks `CAP_SYS_PTRACE`.
    #[error(
        "permission denied reading {}: the executable of another user's (or a non-dumpable) process \
         can be read only with CAP_SYS_PTRACE",
        path.display()
    )]
    PtraceDenied {
        /// `<proc_root>/<pid>/exe`.
        path: PathBuf,
        /// The process.
        pid: u32,
    },
    /// Opening or reading the file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What failed: `opening` or `reading`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error from the kernel.
        #[source]
        source: io::Error,
    },
    /// The path names a directory, a FIFO or a device: no executable.
    #[error("reading {}: not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
}

/// The Go build of the process `pid`, read through `<proc_root>/<pid>/exe`
/// (which reaches the executable in any mount namespace, even deleted).
/// `Ok(None)`: not a Go program, or no such process any more (it exited,
/// is a zombie, or is a kernel thread: `exe` is missing). Reading another
/// user's process without `CAP_SYS_PTRACE` is [`GoBinaryError::PtraceDenied`].
pub fn go_build_of_pid(proc_root: &Path, pid: u32) -> Result<Option<GoBuildInfo>, GoBinaryError> {
    let path = proc_root.join(pid.to_string()).join("exe");
    match go_build_of_file(&path) {
        Err(GoBinaryError::Io { source, .. }) if source.kind() == ErrorKind::PermissionDenied => {
            Err(GoBinaryError::PtraceDenied { path, pid })
        }
        r => r,
    }
}

/// The Go build of the executable at `path`; `Ok(None)` when it is not a
/// Go program or does not exist.
pub fn go_build_of_file(path: &Path) -> Result<Option<GoBuildInfo>, GoBinaryError> {
    let err = |what, source| GoBinaryError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking, so that a FIFO is reported rather than waited on; no
    // effect on a regular file.
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err("opening", e)),
    };
    let meta = file.metadata().map_err(|e| err("reading", e))?;
    if !meta.is_file() {
        return Err(GoBinaryError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    go_build_of(&SizedFile { file, size: meta.len() }).map_err(|e| err("reading", e))
}

/// Something read at offsets: a file (`pread`) or bytes in memory.
pub trait ReadAt {
    /// Up to `len` bytes at `offset`; fewer (or none) at or past the end.
    fn read_at_most(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

impl ReadAt for [u8] {
    fn read_at_most(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.len());
        let end = start.saturating_add(len).min(self.len());
        Ok(self[start..end].to_vec())
    }
}

/// A file and its size: reads past the end (however far, as a corrupt
/// offset asks) return nothing and allocate nothing.
struct SizedFile {
    file: File,
    size: u64,
}

impl ReadAt for SizedFile {
    fn read_at_most(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let left = self.size.saturating_sub(offset);
        let len = usize::try_from(left).map_or(len, |left| left.min(len));
        let mut buf = vec![0; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
}

/// The Go build recorded in an ELF image; `Ok(None)` when there is none.
/// Errors are I/O errors only.
pub fn go_build_of<R: ReadAt + ?Sized>(r: &R) -> io::Result<Option<GoBuildInfo>> {
    let Some(elf) = Elf::read(r)? else {
        return Ok(None);
    };
    let Some(info) = elf.section(".go.buildinfo") else {
        return Ok(None);
    };
    let data = r.read_at_most(info.offset, info.size.min(MAX_READ as u64) as usize)?;
    // Go 1.13-1.17 builds point into other sections: find the one holding
    // the address and read from the same place in the file.
    let resolve = |addr: u64, len: usize| -> Option<Vec<u8>> {
        let s = elf
            .sections
            .iter()
            .find(|s| s.kind != SHT_NOBITS && s.addr != 0 && addr >= s.addr && addr - s.addr < s.size)?;
        let within = addr - s.addr;
        if s.size - within < len as u64 {
            return None;
        }
        let bytes = r.read_at_most(s.offset.checked_add(within)?, len).ok()?;
        (bytes.len() == len).then_some(bytes)
    };
    Ok(parse_buildinfo(&data, &resolve))
}

/// Decodes a `.go.buildinfo` section's bytes (all of them, or the first
/// [`MAX_READ`]). `resolve(addr, len)` reads `len` bytes at a virtual
/// address of the binary, `None` when it cannot; only the pointer format
/// of Go 1.13-1.17 calls it, never for more than [`MAX_READ`] bytes.
/// `None`: no build info there.
///
/// A version must be valid UTF-8, without control characters, and at most
/// [`MAX_VERSION`] bytes. Module info cut short (longer than the bytes at
/// hand) still gives its `path` line when that line is whole.
pub fn parse_buildinfo(data: &[u8], resolve: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<GoBuildInfo> {
    if data.len() < HEADER_LEN || &data[..MAGIC.len()] != MAGIC {
        return None;
    }
    let flags = data[15];
    let (version, modinfo) = if flags & 2 != 0 {
        let (version, rest) = uvarint_string(&data[HEADER_LEN..])?;
        let Prefix { bytes: version, whole } = version;
        if !whole {
            return None;
        }
        let modinfo = uvarint_string(rest).map_or(Prefix::EMPTY, |(m, _)| m);
        (version.to_vec(), Prefix::owned(modinfo))
    } else {
        pointer_strings(data, resolve)?
    };
    let version = String::from_utf8(version).ok()?;
    if version.is_empty() || version.len() > MAX_VERSION || version.chars().any(char::is_control) {
        return None;
    }
    Some(GoBuildInfo {
        version,
        path: module_path(&modinfo.bytes, modinfo.whole),
    })
}

/// The leading bytes of a string, and whether they are all of it.
struct Prefix<T> {
    bytes: T,
    whole: bool,
}

impl Prefix<&[u8]> {
    const EMPTY: Self = Prefix {
        bytes: &[],
        whole: true,
    };

    fn owned(self) -> Prefix<Vec<u8>> {
        Prefix {
            bytes: self.bytes.to_vec(),
            whole: self.whole,
        }
    }
}

/// The version and the module info of the Go 1.13-1.17 format: two
/// pointers to string headers `{ptr, len}`, words of the pointer size in
/// the byte order of flag bit 0.
fn pointer_strings(data: &[u8], resolve: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<(Vec<u8>, Prefix<Vec<u8>>)> {
    let ptr_size = usize::from(data[14]);
    if ptr_size != 4 && ptr_size != 8 {
        return None;
    }
    let big_endian = data[15] & 1 != 0;
    let word = |b: &[u8]| -> Option<u64> {
        let b = b.get(..ptr_size)?;
        let mut v = 0u64;
        for i in 0..ptr_size {
            let byte = if big_endian { b[i] } else { b[ptr_size - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    // At most `cap` bytes of the string whose header is at `addr`.
    let string_at = |addr: u64, cap: usize| -> Option<Prefix<Vec<u8>>> {
        let header = resolve(addr, 2 * ptr_size)?;
        let (ptr, len) = (word(&header)?, word(header.get(ptr_size..)?)?);
        let take = usize::try_from(len).unwrap_or(usize::MAX).min(cap);
        let bytes = if take == 0 { Vec::new() } else { resolve(ptr, take)? };
        Some(Prefix {
            bytes,
            whole: take as u64 == len,
        })
    };
    let version = string_at(word(&data[16..])?, MAX_VERSION)?;
    if !version.whole {
        return None;
    }
    let modinfo = word(&data[16 + ptr_size..])
        .and_then(|addr| string_at(addr, MAX_READ))
        .unwrap_or(Prefix {
            bytes: Vec::new(),
            whole: true,
        });
    Some((version.bytes, modinfo))
}

/// An unsigned LEB128 number (Go's `binary.Uvarint`) and its length in
/// bytes; `None` when it does not end within 10 bytes or overflows 64 bits.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        let shift = 7 * i as u32;
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None;
            }
            return Some((x | (u64::from(byte) << shift), i + 1));
        }
        x |= u64::from(byte & 0x7f) << shift;
    }
    None
}

/// One uvarint-length-prefixed string, and what follows it. A length past
/// the end gives the bytes there are, not whole.
fn uvarint_string(b: &[u8]) -> Option<(Prefix<&[u8]>, &[u8])> {
    let (len, n) = uvarint(b)?;
    let rest = &b[n..];
    let take = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
    let (bytes, rest) = rest.split_at(take);
    Some((
        Prefix {
            bytes,
            whole: take as u64 == len,
        },
        rest,
    ))
}

/// The `path` line of the module info. Whole module info must be framed
/// by the sentinels (the last preceded by a newline), as `go version`
/// requires; of a prefix, the leading sentinel is dropped and only
/// complete lines count.
fn module_path(modinfo: &[u8], whole: bool) -> Option<String> {
    let body = if whole {
        let n = modinfo.len();
        if n <= 2 * SENTINEL_LEN || modinfo[n - SENTINEL_LEN - 1] != b'\n' {
            return None;
        }
        &modinfo[SENTINEL_LEN..n - SENTINEL_LEN]
    } else {
        modinfo.get(SENTINEL_LEN..)?
    };
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&body[..e.valid_up_to()]).ok()?,
    };
    text.split_inclusive('\n')
        .filter_map(|line| line.strip_suffix('\n')?.strip_prefix("path\t"))
        .find(|p| !p.is_empty())
        .map(str::to_owned)
}

/// The fields of a section header that matter here.
struct Section {
    name: u32,
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
}

/// An ELF file's section table and section names.
struct Elf {
    sections: Vec<Section>,
    names: Vec<u8>,
}

impl Elf {
    /// The section table and its names; `None` for no ELF file or one
    /// without (readable) section headers.
    fn read<R: ReadAt + ?Sized>(r: &R) -> io::Result<Option<Elf>> {
        let h = r.read_at_most(0, 64)?;
        if h.len() < 52 || &h[..4] != b"\x7fELF" {
            return Ok(None);
        }
        let wide = match h[4] {
            1 => false,
            2 if h.len() >= 64 => true,
            _ => return Ok(None),
        };
        let big = match h[5] {
            1 => false,
            2 => true,
            _ => return Ok(None),
        };
        let rd = Reader { big };
        // e_shoff, e_shentsize, e_shnum, e_shstrndx.
        let (shoff, shentsize, shnum, shstrndx) = if wide {
            (
                rd.uint(&h, 0x28, 8),
                rd.uint(&h, 0x3a, 2),
                rd.uint(&h, 0x3c, 2),
                rd.uint(&h, 0x3e, 2),
            )
        } else {
            (
                rd.uint(&h, 0x20, 4),
                rd.uint(&h, 0x2e, 2),
                rd.uint(&h, 0x30, 2),
                rd.uint(&h, 0x32, 2),
            )
        };
        let entry = if wide { ELF64_SHDR_LEN } else { ELF32_SHDR_LEN };
        let (shnum, shentsize) = (shnum as usize, shentsize as usize);
        if shoff == 0 || shnum == 0 || shnum > MAX_SECTIONS || shentsize < entry || shnum * shentsize > MAX_TABLE {
            return Ok(None);
        }
        let table = r.read_at_most(shoff, shnum * shentsize)?;
        // sh_name, sh_type, then sh_addr, sh_offset, sh_size: words of 8
        // bytes from offset 16 (ELF64) or of 4 from offset 12 (ELF32).
        let (at, word) = if wide { (16, 8) } else { (12, 4) };
        let sections: Vec<Section> = table
            .chunks_exact(shentsize)
            .map(|s| Section {
                name: rd.uint(s, 0, 4) as u32,
                kind: rd.uint(s, 4, 4) as u32,
                addr: rd.uint(s, at, word),
                offset: rd.uint(s, at + word, word),
                size: rd.uint(s, at + 2 * word, word),
            })
            .collect();
        let Some(strtab) = sections.get(shstrndx as usize) else {
            return Ok(None);
        };
        let names = r.read_at_most(strtab.offset, strtab.size.min(MAX_READ as u64) as usize)?;
        Ok(Some(Elf { sections, names }))
    }

    /// The section named `name`, with contents in the file.
    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| {
            s.kind != SHT_NOBITS
                && self
                    .names
                    .get(s.name as usize..)
                    .and_then(|n| n.split(|&b| b == 0).next())
                    == Some(name.as_bytes())
        })
    }
}

/// Reads unsigned integers of the file's byte order.
struct Reader {
    big: bool,
}

impl Reader {
    /// The `n`-byte integer at `at`; 0 when `b` is too short.
    fn uint(&self, b: &[u8], at: usize, n: usize) -> u64 {
        let Some(b) = b.get(at..at + n) else {
            return 0;
        };
        let mut v = 0u64;
        for i in 0..n {
            let byte = if self.big { b[i] } else { b[n - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn header(ptr: u8, flags: u8) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.push(ptr);
        h.push(flags);
        h.resize(HEADER_LEN, 0);
        h
    }

    fn none(_: u64, _: usize) -> Option<Vec<u8>> {
        None
    }

    /// Module info as `cmd/go` frames it.
    fn modinfo(path: &str) -> Vec<u8> {
        let mut m = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6".to_vec();
        m.extend_from_slice(format!("path\t{path}\nmod\t{path}\t(devel)\t\nbuild\t-compiler=gc\n").as_bytes());
        m.extend_from_slice(b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2");
        m
    }

    fn uvarint_bytes(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    /// The Go 1.18+ format with `version` and `modinfo` inline.
    fn inline(version: &[u8], modinfo: &[u8]) -> Vec<u8> {
        let mut d = header(8, 2);
        d.extend(uvarint_bytes(version.len() as u64));
        d.extend_from_slice(version);
        d.extend(uvarint_bytes(modinfo.len() as u64));
        d.extend_from_slice(modinfo);
        d
    }

    fn info(version: &str, path: Option<&str>) -> Option<GoBuildInfo> {
        Some(GoBuildInfo {
            version: version.into(),
            path: path.map(Into::into),
        })
    }

    #[test]
    fn inline_strings_of_go_1_18_and_later() {
        let m = modinfo("example.com/app");
        let long = "example.com/".to_owned() + &"x".repeat(300); // a two-byte length
        let devel = "devel go1.23-1a2b3c4 Tue Jun 4 12:00:00 2024 +0000";
        let cases: Vec<(Vec<u8>, Option<GoBuildInfo>)> = vec![
            (inline(b"go1.22.4", &m), info("go1.22.4", Some("example.com/app"))),
            (inline(b"go1.22.4", &modinfo(&long)), info("go1.22.4", Some(&long))),
            // GOPATH builds of Go 1.18+ record a path; older ones nothing.
            (inline(b"go1.19.8", b""), info("go1.19.8", None)),
            (
                inline(b"go1.19.8", &[]).into_iter().take(HEADER_LEN + 9).collect(),
                info("go1.19.8", None),
            ),
            // A development toolchain's version.
            (inline(devel.as_bytes(), &m), info(devel, Some("example.com/app"))),
            // Module info without its sentinels: no path, as `go version`.
            (inline(b"go1.20", b"path\texample.com/app\n"), info("go1.20", None)),
            // Module info cut short by the read limit: the whole lines of it.
            (
                inline(b"go1.21.0", &m)[..HEADER_LEN + 9 + 2 + 40].to_vec(),
                info("go1.21.0", Some("example.com/app")),
            ),
            (
                inline(b"go1.21.0", &m)[..HEADER_LEN + 9 + 2 + 30].to_vec(),
                info("go1.21.0", None),
            ),
        ];
        for (i, (data, want)) in cases.into_iter().enumerate() {
            assert_eq!(parse_buildinfo(&data, &none), want, "case {i}");
        }
    }

    #[test]
    fn malformed_build_info_is_not_go() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("magic alone", MAGIC.to_vec()),
            ("other magic", [b"\xff Go buildinX".to_vec(), vec![0; 18]].concat()),
            ("a varint that never ends", [header(8, 2), vec![0x80; 12]].concat()),
            (
                "a varint over 64 bits",
                [header(8, 2), vec![0xff; 9], vec![0x02], b"go".to_vec()].concat(),
            ),
            (
                "a version past the end",
                [header(8, 2), vec![0xff, 0xff, 0x03], b"go1".to_vec()].concat(),
            ),
            (
                "a version one byte short",
                [header(8, 2), vec![4], b"go1".to_vec()].concat(),
            ),
            ("an empty version", inline(b"", &modinfo("a"))),
            ("a version with a newline", inline(b"go1.2\n", b"")),
            ("a version not UTF-8", inline(b"go\xc3\x28", b"")),
            ("a version too long", inline(&[b'g'; MAX_VERSION + 1], b"")),
            ("a pointer size of 3", header(3, 0)),
            ("pointers that resolve nowhere", header(8, 0)),
        ];
        for (what, c) in cases {
            assert_eq!(parse_buildinfo(&c, &none), None, "{what}");
        }
    }

    /// A word of `ptr` bytes in either byte order.
    fn word(ptr: usize, big: bool, v: u64) -> Vec<u8> {
        let b = v.to_be_bytes()[8 - ptr..].to_vec();
        if big {
            b
        } else {
            b.into_iter().rev().collect()
        }
    }

    /// The Go 1.13-1.17 format: pointers to the version's and the module
    /// info's string headers.
    fn pointer_section(ptr: usize, big: bool, version_at: u64, modinfo_at: u64) -> Vec<u8> {
        let mut d = header(ptr as u8, u8::from(big));
        d[16..16 + ptr].copy_from_slice(&word(ptr, big, version_at));
        d[16 + ptr..16 + 2 * ptr].copy_from_slice(&word(ptr, big, modinfo_at));
        d
    }

    /// Memory of a Go 1.13-1.17 binary from `at`: the version's string
    /// header, the module info's, then their bytes.
    fn old_memory(ptr: usize, big: bool, at: u64, version: &[u8], modinfo: &[u8]) -> Vec<u8> {
        let w = |v: u64| word(ptr, big, v);
        let bytes = at + 4 * ptr as u64;
        [
            w(bytes),
            w(version.len() as u64),
            w(bytes + version.len() as u64),
            w(modinfo.len() as u64),
            version.to_vec(),
            modinfo.to_vec(),
        ]
        .concat()
    }

    /// A Go 1.13-1.17 binary's memory at 0x1000, read through `resolve`,
    /// remembering the longest read asked.
    struct OldBinary {
        ptr: usize,
        big: bool,
        mem: Vec<u8>,
        asked: Cell<usize>,
    }

    impl OldBinary {
        const AT: u64 = 0x1000;

        fn new(ptr: usize, big: bool, version: &[u8], modinfo: &[u8]) -> Self {
            OldBinary {
                ptr,
                big,
                mem: old_memory(ptr, big, Self::AT, version, modinfo),
                asked: Cell::new(0),
            }
        }

        fn resolve(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
            self.asked.set(self.asked.get().max(len));
            let start = usize::try_from(addr.checked_sub(Self::AT)?).ok()?;
            self.mem.get(start..start.checked_add(len)?).map(<[u8]>::to_vec)
        }

        fn parse(&self) -> Option<GoBuildInfo> {
            let section = pointer_section(self.ptr, self.big, Self::AT, Self::AT + 2 * self.ptr as u64);
            parse_buildinfo(&section, &|a, l| self.resolve(a, l))
        }
    }

    #[test]
    fn pointer_format_of_go_1_13_to_1_17_both_endians() {
        for (ptr, big) in [(8, false), (4, false), (8, true), (4, true)] {
            let b = OldBinary::new(ptr, big, b"go1.16.5", &modinfo("example.com/old"));
            assert_eq!(
                b.parse(),
                info("go1.16.5", Some("example.com/old")),
                "ptr {ptr} big {big}"
            );
            // No module info (GOPATH builds): a zero-length string.
            let b = OldBinary::new(ptr, big, b"go1.13", b"");
            assert_eq!(b.parse(), info("go1.13", None), "ptr {ptr} big {big}");
        }
    }

    #[test]
    fn pointer_format_reads_are_bounded() {
        // Module info longer than the read limit: its first MAX_READ bytes.
        let mut huge = modinfo("example.com/big");
        huge.splice(huge.len() - 16..huge.len() - 16, vec![b'x'; 2 * MAX_READ]);
        let b = OldBinary::new(8, false, b"go1.17", &huge);
        assert_eq!(b.parse(), info("go1.17", Some("example.com/big")));
        assert!(b.asked.get() <= MAX_READ, "asked for {} bytes", b.asked.get());
        // A version too long is not read at all; nor is a length of 2^64-1.
        let b = OldBinary::new(8, false, &[b'g'; 4096], b"");
        assert_eq!(b.parse(), None);
        assert!(b.asked.get() <= MAX_VERSION);
        let mut b = OldBinary::new(8, false, b"go1.17", b"");
        b.mem[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(b.parse(), None);
        assert!(b.asked.get() <= MAX_VERSION);
        // A version header that resolves to too few bytes.
        let mut b = OldBinary::new(4, true, b"go1.17", b"");
        b.mem.truncate(6);
        assert_eq!(b.parse(), None);
    }

    /// A minimal ELF image: the header, `sections` (name, type, address,
    /// contents) after it, the section names, then the section table.
    fn elf(wide: bool, big: bool, sections: &[(&str, u32, u64, Vec<u8>)]) -> Vec<u8> {
        let put = |out: &mut Vec<u8>, at: usize, n: usize, v: u64| {
            let b = v.to_be_bytes()[8 - n..].to_vec();
            let b: Vec<u8> = if big { b } else { b.into_iter().rev().collect() };
            out[at..at + n].copy_from_slice(&b);
        };
        let (ehdr, shdr, word) = if wide { (64, 64, 8) } else { (52, 40, 4) };
        let mut out = vec![0u8; ehdr];
        out[..6].copy_from_slice(&[
            0x7f,
            b'E',
            b'L',
            b'F',
            if wide { 2 } else { 1 },
            if big { 2 } else { 1 },
        ]);
        let mut names = vec![0u8];
        let mut table = vec![(0u32, 0u32, 0u64, 0u64, 0u64)]; // the null section
        for (name, kind, addr, bytes) in sections {
            table.push((names.len() as u32, *kind, *addr, out.len() as u64, bytes.len() as u64));
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            out.extend_from_slice(bytes);
        }
        let strtab = table.len();
        table.push((names.len() as u32, 3, 0, out.len() as u64, 0));
        names.extend_from_slice(b".shstrtab\0");
        table[strtab].4 = names.len() as u64;
        out.extend_from_slice(&names);
        let shoff = out.len();
        for (name, kind, addr, offset, size) in &table {
            let at = out.len();
            out.resize(at + shdr, 0);
            put(&mut out, at, 4, u64::from(*name));
            put(&mut out, at + 4, 4, u64::from(*kind));
            let w = if wide { at + 16 } else { at + 12 };
            put(&mut out, w, word, *addr);
            put(&mut out, w + word, word, *offset);
            put(&mut out, w + 2 * word, word, *size);
        }
        if wide {
            put(&mut out, 0x28, 8, shoff as u64);
            put(&mut out, 0x3a, 2, shdr as u64);
            put(&mut out, 0x3c, 2, table.len() as u64);
            put(&mut out, 0x3e, 2, strtab as u64);
        } else {
            put(&mut out, 0x20, 4, shoff as u64);
            put(&mut out, 0x2e, 2, shdr as u64);
            put(&mut out, 0x30, 2, table.len() as u64);
            put(&mut out, 0x32, 2, strtab as u64);
        }
        out
    }

    #[test]
    fn elf_images_of_both_classes_and_byte_orders() {
        const PROGBITS: u32 = 1;
        for (wide, big) in [(true, false), (false, false), (true, true), (false, true)] {
            // Go 1.18+: inline, after a section without contents.
            let image = elf(
                wide,
                big,
                &[
                    (".go.buildinfo", SHT_NOBITS, 0x5000, vec![]),
                    (".text", PROGBITS, 0x1000, vec![0x90; 8]),
                    (
                        ".go.buildinfo",
                        PROGBITS,
                        0x5000,
                        inline(b"go1.22.4", &modinfo("example.com/new")),
                    ),
                ],
            );
            let got = go_build_of(&image[..]).unwrap();
            assert_eq!(got, info("go1.22.4", Some("example.com/new")), "wide {wide} big {big}");
            // Go 1.13-1.17: pointers into another section.
            let ptr = if wide { 8 } else { 4 };
            let rodata = old_memory(ptr, big, 0x8000, b"go1.15.2", &modinfo("example.com/old"));
            let section = pointer_section(ptr, big, 0x8000, 0x8000 + 2 * ptr as u64);
            let image = elf(
                wide,
                big,
                &[
                    (".rodata", PROGBITS, 0x8000, rodata),
                    (".go.buildinfo", PROGBITS, 0x9000, section),
                ],
            );
            let got = go_build_of(&image[..]).unwrap();
            assert_eq!(
                got,
                info("go1.15.2", Some("example.com/old")),
                "old, wide {wide} big {big}"
            );
        }
    }

    /// Bytes that remember the longest read asked of them.
    struct Counting<'a> {
        bytes: &'a [u8],
        asked: Cell<usize>,
    }

    impl ReadAt for Counting<'_> {
        fn read_at_most(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            self.asked.set(self.asked.get().max(len));
            self.bytes.read_at_most(offset, len)
        }
    }

    #[test]
    fn not_elf_and_damaged_elf_are_not_go() {
        let bytes: &[u8] = b"#!/bin/sh\necho hi\n";
        assert_eq!(go_build_of(bytes).unwrap(), None);
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(64, 0);
        assert_eq!(go_build_of(&elf[..]).unwrap(), None);
        // A section table far past the end.
        elf[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(go_build_of(&elf[..]).unwrap(), None);
        // Entries of 64 KiB each: the table is not read.
        elf[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&u16::MAX.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&(MAX_SECTIONS as u16).to_le_bytes());
        let r = Counting {
            bytes: &elf,
            asked: Cell::new(0),
        };
        assert_eq!(go_build_of(&r).unwrap(), None);
        assert!(r.asked.get() <= MAX_TABLE, "asked for {} bytes", r.asked.get());
    }

    #[test]
    fn uvarints_as_go_reads_them() {
        assert_eq!(uvarint(&[0]), Some((0, 1)));
        assert_eq!(uvarint(&[0x7f, 0xff]), Some((127, 1)));
        assert_eq!(uvarint(&[0xac, 0x02]), Some((300, 2)));
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Some((u64::MAX, 10))
        );
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
        assert_eq!(uvarint(&[0x80; 11]), None);
        assert_eq!(uvarint(&[0x80]), None);
        assert_eq!(uvarint(&[]), None);
    }

    #[test]
    fn a_missing_process_is_not_go() {
        assert_eq!(go_build_of_pid(Path::new("/proc"), u32::MAX).unwrap(), None);
    }
}
