//! How each volume on this node was staged, kept on the host so that a
//! restarted plugin can mount a dead staging mount again exactly as it was
//! (servers, volume, options). One small JSON file per staging path, written
//! before the mount and removed after the unmount. Nothing secret is in
//! them: the same values are in the PersistentVolume and the FUSE client's
//! command line.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{MountOptions, NodeError, StageRequest};
use crate::mount::{DeadFileSystem, MountError};
use crate::volume_context::{KEY_POOL_MOUNT, POOL_MOUNT_SHARED, VolumeContext};

const FORMAT: u32 = 1;
/// Larger files are not ours.
const RECORD_LIMIT: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedRecord {
    pub format: u32,
    pub volume_id: String,
    pub staging_path: PathBuf,
    pub volume: String,
    /// Primary first, then the backups.
    pub servers: Vec<String>,
    /// Validated mount options, `ro` included when read-only.
    pub options: Vec<String>,
    /// Dead file systems whose mounts still wait to be replaced: a heal
    /// that could not mount the volume again (servers down) goes on from
    /// here, also after a restart of the plugin.
    #[serde(default)]
    pub dead: Vec<DeadFileSystem>,
    /// Bound from the node's shared mount of the pool (`poolMount: shared`).
    #[serde(default)]
    pub shared_pool_mount: bool,
}

impl StagedRecord {
    pub fn of(request: &StageRequest) -> StagedRecord {
        StagedRecord {
            format: FORMAT,
            volume_id: request.volume_id.clone(),
            staging_path: request.staging_path.clone(),
            volume: request.context.volume.clone(),
            servers: request.context.servers(),
            options: request.options.as_slice().to_vec(),
            dead: Vec::new(),
            shared_pool_mount: request.context.shared_pool_mount,
        }
    }

    pub fn with_dead(mut self, dead: Vec<DeadFileSystem>) -> StagedRecord {
        self.dead = dead;
        self
    }

    /// The stage request again, validated as a new one would be.
    pub fn request(&self) -> Result<StageRequest, String> {
        let (server, backups) = self
            .servers
            .split_first()
            .ok_or_else(|| "no servers".to_string())?;
        let map = HashMap::from([
            ("volume".to_string(), self.volume.clone()),
            ("server".to_string(), server.clone()),
            ("backupServers".to_string(), backups.join(",")),
        ]);
        let mut map = map;
        if self.shared_pool_mount {
            map.insert(KEY_POOL_MOUNT.to_string(), POOL_MOUNT_SHARED.to_string());
        }
        let context = VolumeContext::from_map(&map).map_err(|e| e.to_string())?;
        let options = MountOptions::parse(self.options.iter().map(String::as_str))?;
        Ok(StageRequest {
            volume_id: self.volume_id.clone(),
            staging_path: self.staging_path.clone(),
            context,
            options,
        })
    }
}

/// The records, on disk and cached in memory.
pub struct StagedVolumes {
    dir: PathBuf,
    records: Mutex<BTreeMap<PathBuf, StagedRecord>>,
}

impl StagedVolumes {
    /// Opens (creating, root-only) the directory and reads what is there;
    /// unreadable or foreign files are skipped.
    pub fn open(dir: &Path) -> Result<StagedVolumes, NodeError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(MountError::io("creating", dir))?;
        let mut records = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(MountError::io("reading", dir))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match read_record(&path) {
                Ok(record) if file_for(dir, &record.staging_path) == path => {
                    records.insert(record.staging_path.clone(), record);
                }
                Ok(_) => {
                    tracing::warn!(file = %path.display(), "staging record under the wrong name; ignored")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable staging record; ignored")
                }
            }
        }
        Ok(StagedVolumes {
            dir: dir.to_path_buf(),
            records: Mutex::new(records),
        })
    }

    pub fn get(&self, staging: &Path) -> Option<StagedRecord> {
        self.lock().get(staging).cloned()
    }

    pub fn all(&self) -> Vec<StagedRecord> {
        self.lock().values().cloned().collect()
    }

    /// Writes the record (atomically: a file in full or not at all).
    pub fn save(&self, record: StagedRecord) -> Result<(), NodeError> {
        let file = file_for(&self.dir, &record.staging_path);
        let temporary = file.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&record)
            .map_err(|e| MountError::io("encoding", &file)(std::io::Error::other(e)))?;
        let write = || -> std::io::Result<()> {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temporary)?;
            out.write_all(&text)?;
            out.sync_all()?;
            std::fs::rename(&temporary, &file)
        };
        write().map_err(MountError::io("writing", &file))?;
        self.lock().insert(record.staging_path.clone(), record);
        Ok(())
    }

    pub fn remove(&self, staging: &Path) -> Result<(), NodeError> {
        let file = file_for(&self.dir, staging);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(MountError::io("removing", &file)(e).into()),
        }
        self.lock().remove(staging);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, StagedRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn read_record(path: &Path) -> Result<StagedRecord, String> {
    let mut text = Vec::new();
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|f| f.take(RECORD_LIMIT).read_to_end(&mut text))
        .map_err(|e| e.to_string())?;
    let record: StagedRecord = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
    if record.format != FORMAT {
        return Err(format!(
            "format {} (this version reads {FORMAT})",
            record.format
        ));
    }
    Ok(record)
}

/// `<dir>/<first 16 bytes of sha256(staging path) in hex>.json`.
fn file_for(dir: &Path, staging: &Path) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(staging.as_os_str().as_encoded_bytes());
    let name: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{name}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(staging: &Path) -> StageRequest {
        StageRequest {
            volume_id: "csi-pvc-1".into(),
            staging_path: staging.to_path_buf(),
            context: VolumeContext::new("csi-pvc-1", &["a".into(), "b".into()], vec![]).unwrap(),
            options: MountOptions::parse(["acl"]).unwrap().with_read_only(),
        }
    }

    #[test]
    fn records_survive_a_reopen_and_give_back_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let staging = dir.path().join("globalmount");
        let volumes = StagedVolumes::open(&state).unwrap();
        volumes.save(StagedRecord::of(&request(&staging))).unwrap();
        let again = StagedVolumes::open(&state).unwrap();
        let record = again.get(&staging).unwrap();
        let back = record.request().unwrap();
        assert_eq!(back.context.servers(), ["a", "b"]);
        assert!(back.options.read_only());
        assert_eq!(back.volume_id, "csi-pvc-1");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        again.remove(&staging).unwrap();
        assert!(StagedVolumes::open(&state).unwrap().all().is_empty());
    }

    #[test]
    fn tampered_or_foreign_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("globalmount");
        let volumes = StagedVolumes::open(dir.path()).unwrap();
        volumes.save(StagedRecord::of(&request(&staging))).unwrap();
        let file = file_for(dir.path(), &staging);
        // Renamed to another staging path's name: not trusted.
        let moved = file_for(dir.path(), Path::new("/elsewhere"));
        std::fs::rename(&file, &moved).unwrap();
        std::fs::write(dir.path().join("junk.json"), b"{not json").unwrap();
        assert!(StagedVolumes::open(dir.path()).unwrap().all().is_empty());
        // A record with options a new request would refuse is refused too.
        let mut bad = StagedRecord::of(&request(&staging));
        bad.options.push("log-file=/etc/passwd".into());
        assert!(bad.request().is_err());
    }
}
