//! Names that cross into gluster: volume names the driver makes from CSI
//! names, and server host names.

use sha2::{Digest, Sha256};

/// Longest CSI volume name accepted (the CSI spec's own limit).
pub const MAX_CSI_NAME: usize = 128;

const DIRECT_PREFIX: &str = "csi-";
const HASHED_PREFIX: &str = "csi_";
/// Longest CSI name kept verbatim (`csi-` + 59 = 63 characters).
const MAX_DIRECT: usize = 59;
/// How much of an unusual CSI name stays readable in its hashed form.
const HASHED_STEM: usize = 32;
const HASH_HEX: usize = 16;

/// A gluster volume name in the driver's namespace. It doubles as the CSI
/// volume id and as the last component of every brick directory.
///
/// Two forms, never confused with each other (only the second has `_`):
/// - `csi-<name>` for lowercase DNS-label-like CSI names such as `pvc-<uuid>`;
/// - `csi_<stem>_<hash>` for any other name: a readable stem plus 64 bits of
///   SHA-256 of the full CSI name, so distinct names get distinct volumes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsiNameError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} characters long; at most {MAX_CSI_NAME} are allowed")]
    TooLong(usize),
    #[error(
        "may only hold ASCII letters, digits, '.', '_' and '-', and must start with a letter or digit"
    )]
    BadCharacters,
}

impl VolumeName {
    /// Maps a CSI volume name (CreateVolume `name`) to its gluster volume.
    pub fn for_csi_name(csi_name: &str) -> Result<VolumeName, CsiNameError> {
        validate_csi_name(csi_name)?;
        if is_direct_stem(csi_name) {
            return Ok(VolumeName(format!("{DIRECT_PREFIX}{csi_name}")));
        }
        let stem: String = csi_name
            .chars()
            .take(HASHED_STEM)
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_alphanumeric() { c } else { '-' }
            })
            .collect();
        let digest = Sha256::digest(csi_name.as_bytes());
        let hash: String = digest
            .iter()
            .take(HASH_HEX / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(VolumeName(format!("{HASHED_PREFIX}{stem}_{hash}")))
    }

    /// Accepts only names this driver could have made (a CSI volume id).
    pub fn parse(id: &str) -> Option<VolumeName> {
        if let Some(stem) = id.strip_prefix(DIRECT_PREFIX) {
            return is_direct_stem(stem).then(|| VolumeName(id.to_string()));
        }
        let rest = id.strip_prefix(HASHED_PREFIX)?;
        let (stem, hash) = rest.rsplit_once('_')?;
        let stem_ok = stem.len() <= HASHED_STEM
            && stem
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let hash_ok = hash.len() == HASH_HEX
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (stem_ok && hash_ok).then(|| VolumeName(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VolumeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn validate_csi_name(name: &str) -> Result<(), CsiNameError> {
    if name.is_empty() {
        return Err(CsiNameError::Empty);
    }
    if name.len() > MAX_CSI_NAME {
        return Err(CsiNameError::TooLong(name.len()));
    }
    let first_ok = name.as_bytes()[0].is_ascii_alphanumeric();
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !(first_ok && rest_ok) {
        return Err(CsiNameError::BadCharacters);
    }
    Ok(())
}

fn is_direct_stem(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DIRECT
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A gluster volume name as glusterd accepts it (letters, digits, `-`, `_`;
/// not starting with `-`). Used for volumes named in a static PV's context.
pub fn is_gluster_volume_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A pool of subdirectory mode: a gluster volume holding one directory per
/// CSI volume. Never in the driver's own volume namespace (`csi-`, `csi_`),
/// so no volume-mode call can ever take a pool for one of its volumes.
pub fn is_pool_name(name: &str) -> bool {
    is_gluster_volume_name(name)
        && name.len() <= 64
        && !name.starts_with(DIRECT_PREFIX)
        && !name.starts_with(HASHED_PREFIX)
}

/// The CSI volume id of a subdirectory-mode volume, `<pool>/<directory>`:
/// the directory (named as a volume-mode volume would be) at the top of
/// the pool. It is also what a node mounts (`server:/<pool>/<directory>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolDirectory {
    pool: String,
    directory: VolumeName,
}

impl PoolDirectory {
    pub fn new(pool: &str, directory: VolumeName) -> Option<PoolDirectory> {
        is_pool_name(pool).then(|| PoolDirectory {
            pool: pool.to_string(),
            directory,
        })
    }

    /// Accepts only ids this driver could have handed out.
    pub fn parse(id: &str) -> Option<PoolDirectory> {
        let (pool, directory) = id.split_once('/')?;
        PoolDirectory::new(pool, VolumeName::parse(directory)?)
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }

    pub fn directory(&self) -> &VolumeName {
        &self.directory
    }

    /// The directory's path inside the pool, as gluster's quota commands take it.
    pub fn path_in_pool(&self) -> String {
        format!("/{}", self.directory)
    }
}

impl std::fmt::Display for PoolDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.directory)
    }
}

/// A directory name a static PersistentVolume may mount below a volume
/// (`volume_context.volume` = `<volume>/<directory>`): one plain path
/// component that mount.glusterfs passes on unchanged.
pub fn is_subdirectory_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A DNS name or IPv4 address, as bricks and mount sources use them.
pub fn is_host_name(host: &str) -> bool {
    let bytes = host.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'.' || *b == b'-')
        && !host.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names_map_directly_and_readably() {
        let name = VolumeName::for_csi_name("pvc-3f2a0c9e-5b1d-4c8e-9f7a-0123456789ab").unwrap();
        assert_eq!(
            name.as_str(),
            "csi-pvc-3f2a0c9e-5b1d-4c8e-9f7a-0123456789ab"
        );
        assert_eq!(VolumeName::parse(name.as_str()), Some(name));
    }

    #[test]
    fn other_names_are_hashed_and_stay_distinct() {
        let upper = VolumeName::for_csi_name("Sanity-Vol").unwrap();
        let lower = VolumeName::for_csi_name("sanity-vol").unwrap();
        assert_ne!(upper, lower);
        assert!(upper.as_str().starts_with("csi_sanity-vol_"), "{upper}");
        let dotted = VolumeName::for_csi_name("a.b").unwrap();
        let dashed = VolumeName::for_csi_name("a-b").unwrap();
        assert_ne!(dotted, dashed);
        let long = "a".repeat(MAX_CSI_NAME);
        let longer_but_same_prefix = format!("{}b", "a".repeat(MAX_CSI_NAME - 1));
        assert_ne!(
            VolumeName::for_csi_name(&long).unwrap(),
            VolumeName::for_csi_name(&longer_but_same_prefix).unwrap()
        );
        for name in [upper, dotted, VolumeName::for_csi_name(&long).unwrap()] {
            assert!(name.as_str().len() <= 64);
            assert_eq!(VolumeName::parse(name.as_str()), Some(name.clone()));
        }
    }

    #[test]
    fn mapping_is_stable() {
        // Volumes made by earlier versions must still be found.
        assert_eq!(
            VolumeName::for_csi_name("Sanity-Vol").unwrap().as_str(),
            "csi_sanity-vol_3703aaca8e5266ff"
        );
    }

    #[test]
    fn bad_csi_names() {
        assert_eq!(VolumeName::for_csi_name(""), Err(CsiNameError::Empty));
        assert_eq!(
            VolumeName::for_csi_name(&"a".repeat(129)),
            Err(CsiNameError::TooLong(129))
        );
        for bad in [
            "-rf", ".hidden", "a b", "a/b", "a;b", "vol\n", "é", "$(id)", "_x",
        ] {
            assert_eq!(
                VolumeName::for_csi_name(bad),
                Err(CsiNameError::BadCharacters),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parse_rejects_foreign_names() {
        for id in [
            "",
            "myvol",
            "csi-",
            "csi-UPPER",
            "csi_x_123",
            "csi_x_zzzzzzzzzzzzzzzz",
            "csi-a b",
            "some-vol-id",
            "csi-../../etc",
        ] {
            assert_eq!(VolumeName::parse(id), None, "{id:?}");
        }
    }

    #[test]
    fn pool_directories_are_told_from_volumes() {
        let dir = VolumeName::for_csi_name("pvc-1").unwrap();
        let id = PoolDirectory::new("pool-a", dir.clone()).unwrap();
        assert_eq!(id.to_string(), "pool-a/csi-pvc-1");
        assert_eq!(id.path_in_pool(), "/csi-pvc-1");
        assert_eq!(PoolDirectory::parse("pool-a/csi-pvc-1"), Some(id));
        assert_eq!(VolumeName::parse("pool-a/csi-pvc-1"), None);
        for bad in [
            "csi-pvc-1",
            "pool-a/",
            "/csi-pvc-1",
            "pool-a/csi-pvc-1/x",
            "pool-a/../csi-pvc-1",
            "pool-a/data",
            "csi-pool/csi-pvc-1",
            "csi_pool/csi-pvc-1",
            "-pool/csi-pvc-1",
            "po ol/csi-pvc-1",
        ] {
            assert_eq!(PoolDirectory::parse(bad), None, "{bad:?}");
        }
        assert!(is_pool_name("shared_1"));
        assert!(!is_pool_name("csi-pvc-1"));
        assert!(!is_pool_name(&"p".repeat(65)));
        for ok in ["data", "pvc-1", "a.b_c"] {
            assert!(is_subdirectory_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "-o", "a,b", "$x"] {
            assert!(!is_subdirectory_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn hosts_and_static_volume_names() {
        for ok in ["node1", "127.1.1.1", "gluster-1.example.com"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in ["", "-x", "a..b", "a:b", "a b", "a/b", "x.", "[::1]"] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
        assert!(is_gluster_volume_name("gv0"));
        assert!(!is_gluster_volume_name("-gv0"));
        assert!(!is_gluster_volume_name("gv 0"));
    }
}
