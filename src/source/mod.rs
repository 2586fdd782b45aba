//! The I/O boundary: readers of cgroupfs and procfs. Each takes a root path
//! so tests point it at fixture trees; each error names the path it failed on.

pub mod cgroup;
pub mod cri;
pub mod events;
mod files;
pub mod go;
pub mod go_binary;
pub mod kubepods;
pub mod proc;
