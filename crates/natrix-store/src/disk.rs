//! How much disk the store uses and how much its file system has left, so the node can refuse a
//! write with JetStream's "insufficient resources" before the disk fills.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

// 32-bit glibc's `statvfs` fails with EOVERFLOW when a count does not fit in 32 bits (a file
// system over 16 TiB with 4 KiB blocks, or one reporting over 4 G inodes): the armv7 build uses
// the large-file call. 64-bit glibc's `statvfs` is already the 64-bit one.
#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "32")))]
use libc::statvfs;
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "32"))]
use libc::statvfs64 as statvfs;

/// Disk use of a store and free space of the file system it lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskUsage {
    /// Live SST files of all column families (RocksDB's `live-sst-files-size`).
    pub sst_bytes: u64,
    /// Memtables of all column families (not yet on disk as SSTs; already in the WAL).
    pub memtable_bytes: u64,
    /// Every file in the store directory: SSTs, write-ahead logs, manifests, info logs.
    pub dir_bytes: u64,
    /// Bytes an unprivileged writer may still use on the file system (`f_bavail * f_frsize`).
    pub fs_available_bytes: u64,
    /// Size of the file system (`f_blocks * f_frsize`).
    pub fs_total_bytes: u64,
}

/// Sum of the sizes of the files directly inside `dir` (RocksDB keeps a flat directory).
pub(crate) fn dir_bytes(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // A file RocksDB deleted between listing and stat no longer counts.
        match entry.metadata() {
            Ok(meta) if meta.is_file() => total = total.saturating_add(meta.len()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// `(available, total)` bytes of the file system holding `path`.
pub(crate) fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `statvfs` is plain old data; all-zero is a valid value that the call overwrites.
    let mut st: statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `st` a valid, writable statvfs.
    let rc = unsafe { statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = widen(st.f_frsize);
    Ok((
        widen(st.f_bavail).saturating_mul(frsize),
        widen(st.f_blocks).saturating_mul(frsize),
    ))
}

/// statvfs field types are `u32` or `u64` depending on the platform.
#[allow(clippy::useless_conversion)]
fn widen<T: Into<u64>>(v: T) -> u64 {
    v.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_a_real_directory_is_plausible() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("f"), [0u8; 1000])?;
        let (available, total) = fs_space(dir.path())?;
        assert!(total > 0 && available <= total);
        assert_eq!(dir_bytes(dir.path())?, 1000);
        assert!(fs_space(&dir.path().join("missing")).is_err());
        Ok(())
    }
}
