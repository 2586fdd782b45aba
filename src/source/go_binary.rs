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
//! Reads are bounded whatever the file: the ELF header, the section header
//! table (at most [`MAX_SECTIONS`]), the section names, and at most
//! [`MAX_READ`] bytes of the build info; never the whole binary. A binary
//! that is no ELF file, has no such section (stripped of its section
//! headers, or not Go) or holds a malformed one is "not Go": `Ok(None)`.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Sections read from a section header table at most.
pub const MAX_SECTIONS: usize = 4096;
/// Bytes read for one string table, build info or string at most.
pub const MAX_READ: usize = 64 * 1024;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const SHT_NOBITS: u32 = 8;

/// What the Go linker recorded of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// `go1.22.4`, as `go version` prints it.
    pub version: String,
    /// The main module's or package's path (`path` line of the module
    /// info), when recorded.
    pub path: Option<String>,
}

/// A binary that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    #[error("reading {}: {source}{}", path.display(), hint(source))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        ErrorKind::PermissionDenied => {
            " (another user's /proc/PID/exe needs CAP_SYS_PTRACE, or the same user and a ptrace-able process)"
        }
        _ => "",
    }
}

/// The Go build of the process `pid`, read through `<proc_root>/<pid>/exe`
/// (which reaches the executable in any mount namespace, even deleted).
/// `Ok(None)`: not a Go program, or the process is gone (no
/// `/proc/PID/exe`, as for a kernel thread).
pub fn go_build_of_pid(proc_root: &Path, pid: u32) -> Result<Option<GoBuildInfo>, GoBinaryError> {
    go_build_of_file(&proc_root.join(pid.to_string()).join("exe"))
}

/// The Go build of the executable at `path`; `Ok(None)` when it is not a
/// Go program or does not exist.
pub fn go_build_of_file(path: &Path) -> Result<Option<GoBuildInfo>, GoBinaryError> {
    let io = |source| GoBinaryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    go_build_of(&file).map_err(io)
}

/// Something read at offsets: a file (`pread`) or bytes in memory.
pub trait ReadAt {
    /// Up to `len` bytes at `offset`; fewer at the end.
    fn read_at_most(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
}

impl ReadAt for File {
    fn read_at_most(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        let mut got = 0;
        while got < len {
            match self.read_at(&mut buf[got..], offset.saturating_add(got as u64)) {
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

impl ReadAt for [u8] {
    fn read_at_most(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.len());
        let end = start.saturating_add(len).min(self.len());
        Ok(self[start..end].to_vec())
    }
}

/// The Go build recorded in an ELF image; `Ok(None)` when there is none.
/// Errors are I/O errors only.
pub fn go_build_of<R: ReadAt + ?Sized>(r: &R) -> std::io::Result<Option<GoBuildInfo>> {
    let Some(elf) = Elf::read(r)? else {
        return Ok(None);
    };
    let Some(info) = elf.section(".go.buildinfo") else {
        return Ok(None);
    };
    let data = r.read_at_most(info.offset, (info.size.min(MAX_READ as u64)) as usize)?;
    let resolve = |addr: u64, len: usize| -> Option<Vec<u8>> {
        let s = elf
            .sections
            .iter()
            .find(|s| s.kind != SHT_NOBITS && s.addr != 0 && addr >= s.addr && addr - s.addr < s.size)?;
        let avail = (s.size - (addr - s.addr)).min(len as u64) as usize;
        let bytes = r.read_at_most(s.offset.checked_add(addr - s.addr)?, avail).ok()?;
        (bytes.len() == len).then_some(bytes)
    };
    Ok(parse_buildinfo(&data, &resolve))
}

/// Decodes a `.go.buildinfo` section's bytes. `resolve(addr, len)` reads
/// `len` bytes at a virtual address of the binary (for the pointer format
/// of Go 1.13-1.17), `None` when it cannot. `None`: no build info there.
pub fn parse_buildinfo(data: &[u8], resolve: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<GoBuildInfo> {
    if data.len() < HEADER_LEN || &data[..MAGIC.len()] != MAGIC {
        return None;
    }
    let ptr_size = data[14] as usize;
    let flags = data[15];
    let big_endian = flags & 1 != 0;
    let (version, modinfo) = if flags & 2 != 0 {
        let (version, rest) = uvarint_string(&data[HEADER_LEN..])?;
        let modinfo = uvarint_string(rest).map_or(&[][..], |(m, _)| m);
        (version.to_vec(), modinfo.to_vec())
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return None;
        }
        let word = |b: &[u8]| -> Option<u64> {
            let b = b.get(..ptr_size)?;
            let mut v = 0u64;
            for i in 0..ptr_size {
                let byte = if big_endian { b[i] } else { b[ptr_size - 1 - i] };
                v = (v << 8) | u64::from(byte);
            }
            Some(v)
        };
        let string_at = |addr: u64| -> Option<Vec<u8>> {
            let header = resolve(addr, 2 * ptr_size)?;
            let (ptr, len) = (word(&header)?, word(header.get(ptr_size..)?)?);
            let len = usize::try_from(len).ok().filter(|&l| l <= MAX_READ)?;
            if len == 0 {
                return Some(Vec::new());
            }
            resolve(ptr, len)
        };
        let version = string_at(word(&data[16..])?)?;
        let modinfo = word(&data[16 + ptr_size..]).and_then(string_at).unwrap_or_default();
        (version, modinfo)
    };
    let version = String::from_utf8(version).ok()?;
    if !version.starts_with("go") || version.len() > 256 {
        return None;
    }
    Some(GoBuildInfo {
        version,
        path: module_path(&modinfo),
    })
}

/// One uvarint-length-prefixed string, and what follows it.
fn uvarint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            let start = i + 1;
            let len = usize::try_from(len).ok()?;
            let end = start.checked_add(len)?;
            return Some((b.get(start..end)?, &b[end..]));
        }
    }
    None
}

/// The `path` line of the module info, its sentinels stripped.
fn module_path(modinfo: &[u8]) -> Option<String> {
    let m = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let text = std::str::from_utf8(m).ok()?;
    text.lines().find_map(|l| l.strip_prefix("path\t")).map(str::to_owned)
}

struct Section {
    name: u32,
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
}

struct Elf {
    sections: Vec<Section>,
    names: Vec<u8>,
}

impl Elf {
    /// The section table and its names; `None` for no ELF file or one
    /// without (readable) section headers.
    fn read<R: ReadAt + ?Sized>(r: &R) -> std::io::Result<Option<Elf>> {
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
        let (shoff, shentsize, shnum, shstrndx) = if wide {
            (rd.u64(&h, 0x28), rd.u16(&h, 0x3a), rd.u16(&h, 0x3c), rd.u16(&h, 0x3e))
        } else {
            (rd.u32(&h, 0x20), rd.u16(&h, 0x2e), rd.u16(&h, 0x30), rd.u16(&h, 0x32))
        };
        let entry = if wide { 64 } else { 40 };
        let (shnum, shentsize) = (shnum as usize, shentsize as usize);
        if shoff == 0 || shnum == 0 || shnum > MAX_SECTIONS || shentsize < entry {
            return Ok(None);
        }
        let table = r.read_at_most(shoff, shnum * shentsize)?;
        // sh_name, sh_type, then sh_addr, sh_offset, sh_size: words of 8
        // bytes from offset 16 (ELF64) or of 4 from offset 12 (ELF32).
        let (at, word) = if wide { (16, 8) } else { (12, 4) };
        let sections: Vec<Section> = table
            .chunks_exact(shentsize)
            .map(|s| Section {
                name: rd.u32(s, 0) as u32,
                kind: rd.u32(s, 4) as u32,
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

struct Reader {
    big: bool,
}

impl Reader {
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
    fn u16(&self, b: &[u8], at: usize) -> u64 {
        self.uint(b, at, 2)
    }
    fn u32(&self, b: &[u8], at: usize) -> u64 {
        self.uint(b, at, 4)
    }
    fn u64(&self, b: &[u8], at: usize) -> u64 {
        self.uint(b, at, 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn modinfo(path: &str) -> Vec<u8> {
        let mut m = vec![b'0'; 16];
        m.extend_from_slice(format!("path\t{path}\nmod\t{path}\t(devel)\t\n").as_bytes());
        m.extend_from_slice(&[b'1'; 16]);
        m
    }

    #[test]
    fn inline_strings_of_go_1_18_and_later() {
        let mut d = header(8, 2);
        d.push(9);
        d.extend_from_slice(b"go1.22.4x");
        let m = modinfo("example.com/app");
        d.push(m.len() as u8);
        d.extend_from_slice(&m);
        let got = parse_buildinfo(&d, &none).expect("build info");
        assert_eq!(got.version, "go1.22.4x");
        assert_eq!(got.path.as_deref(), Some("example.com/app"));
        // No module info (GOPATH builds): a version alone.
        let mut d = header(8, 2);
        d.push(8);
        d.extend_from_slice(b"go1.19.8");
        d.push(0);
        assert_eq!(
            parse_buildinfo(&d, &none),
            Some(GoBuildInfo {
                version: "go1.19.8".into(),
                path: None
            })
        );
    }

    #[test]
    fn pointer_format_of_go_1_13_to_1_17_both_endians() {
        for (ptr, big) in [(8u8, false), (4, false), (8, true), (4, true)] {
            let n = ptr as usize;
            let word = |v: u64| -> Vec<u8> {
                let b = v.to_be_bytes()[8 - n..].to_vec();
                if big {
                    b
                } else {
                    b.into_iter().rev().collect()
                }
            };
            // Memory: 0x1000 version header, 0x1100 modinfo header,
            // 0x2000 version bytes, 0x3000 modinfo bytes.
            let m = modinfo("example.com/old");
            let mem: Vec<(u64, Vec<u8>)> = vec![
                (0x1000, [word(0x2000), word(8)].concat()),
                (0x1100, [word(0x3000), word(m.len() as u64)].concat()),
                (0x2000, b"go1.16.5".to_vec()),
                (0x3000, m),
            ];
            let resolve = move |addr: u64, len: usize| -> Option<Vec<u8>> {
                mem.iter()
                    .find(|(a, b)| addr >= *a && addr + len as u64 <= a + b.len() as u64)
                    .map(|(a, b)| b[(addr - a) as usize..][..len].to_vec())
            };
            let mut d = header(ptr, u8::from(big));
            d[16..16 + n].copy_from_slice(&word(0x1000));
            d[16 + n..16 + 2 * n].copy_from_slice(&word(0x1100));
            let got = parse_buildinfo(&d, &resolve).unwrap_or_else(|| panic!("ptr {ptr} big {big}"));
            assert_eq!(got.version, "go1.16.5");
            assert_eq!(got.path.as_deref(), Some("example.com/old"));
        }
    }

    #[test]
    fn malformed_build_info_is_not_go() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            MAGIC.to_vec(),
            [header(8, 2), vec![0x80; 12]].concat(), // a varint that never ends
            [header(8, 2), vec![0xff, 0xff, 0x03, b'g']].concat(), // a length past the end
            [header(8, 2), vec![3], b"abc".to_vec()].concat(), // not a Go version
            [header(8, 2), vec![2], vec![0xc3, 0x28]].concat(), // not UTF-8
            header(3, 0),                            // a pointer size of 3
            header(8, 0),                            // pointers that resolve nowhere
            [b"\xff Go buildinX".to_vec(), vec![0; 18]].concat(),
        ];
        for c in cases {
            assert_eq!(parse_buildinfo(&c, &none), None, "{c:?}");
        }
    }

    #[test]
    fn a_string_header_with_a_huge_length_is_not_read() {
        let resolve = |addr: u64, len: usize| -> Option<Vec<u8>> {
            assert!(len <= MAX_READ, "asked for {len} bytes");
            (addr == 0x1000).then(|| [0x2000u64.to_le_bytes(), u64::MAX.to_le_bytes()].concat())
        };
        let mut d = header(8, 0);
        d[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
        assert_eq!(parse_buildinfo(&d, &resolve), None);
    }

    #[test]
    fn not_elf_and_truncated_elf_are_not_go() {
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
    }

    #[test]
    fn a_missing_process_is_not_go() {
        assert_eq!(go_build_of_pid(Path::new("/proc"), u32::MAX).unwrap(), None);
    }
}
