//! FUSE client logs: one file per mount in the mount log directory, which
//! gluster only ever appends to. A file over its limit is cut: its newest
//! part is kept as `<file>.1` and the file is emptied in place (the client
//! writes with O_APPEND, so it carries on at the start).

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Files cut; only `<name>.log` files of this directory that the node
/// plugin names (see `mount_log_file`) are looked at.
pub fn cut_oversized(dir: &Path, limit: u64) -> io::Result<Vec<PathBuf>> {
    let mut cut = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_client_log_name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if ours && meta.is_file() && meta.len() > limit {
            cut_one(&path, limit / 4)?;
            cut.push(path);
        }
    }
    if !cut.is_empty() {
        tracing::info!(files = ?cut, limit, "FUSE client logs cut");
    }
    Ok(cut)
}

/// `<volume>-<8 hex digits>.log`.
fn is_client_log_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".log") else {
        return false;
    };
    let Some((volume, tag)) = stem.rsplit_once('-') else {
        return false;
    };
    crate::names::is_gluster_volume_name(volume)
        && tag.len() == 8
        && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

fn cut_one(path: &Path, keep: u64) -> io::Result<()> {
    let mut log = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let length = log.metadata()?.len();
    log.seek(SeekFrom::Start(length.saturating_sub(keep)))?;
    let mut tail = Vec::new();
    Read::by_ref(&mut log).take(keep).read_to_end(&mut tail)?;
    let mut kept_name = path.as_os_str().to_owned();
    kept_name.push(".1");
    let kept = PathBuf::from(kept_name);
    let mut temporary = kept.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)?;
    out.write_all(&tail)?;
    std::fs::rename(&temporary, &kept)?;
    log.set_len(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_oversized_client_logs_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("csi-pvc-1-0a1b2c3d.log");
        let small = dir.path().join("csi-pvc-2-0a1b2c3d.log");
        let foreign = dir.path().join("notes.log");
        let body: Vec<u8> = (0..4000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for file in [&big, &foreign] {
            std::fs::write(file, &body).unwrap();
        }
        std::fs::write(&small, b"short\n").unwrap();
        let cut = cut_oversized(dir.path(), 4000).unwrap();
        assert_eq!(cut, std::slice::from_ref(&big));
        assert_eq!(std::fs::metadata(&big).unwrap().len(), 0);
        let kept = std::fs::read(dir.path().join("csi-pvc-1-0a1b2c3d.log.1")).unwrap();
        assert_eq!(kept.len(), 1000);
        assert!(body.ends_with(&kept), "the newest part is kept");
        assert_eq!(std::fs::read(&foreign).unwrap(), body, "not ours");
        assert_eq!(std::fs::read(&small).unwrap(), b"short\n");
    }

    #[test]
    fn client_log_names() {
        assert!(is_client_log_name("csi-pvc-1-0a1b2c3d.log"));
        for bad in [
            "x.log",
            "csi-pvc-1-0a1b2c3d.log.1",
            "csi-pvc-1-xyz.log",
            "../a-0a1b2c3d.log",
        ] {
            assert!(!is_client_log_name(bad), "{bad}");
        }
    }
}
