//! This node's own gluster view: what its FUSE client says about each brick,
//! read from the client's meta translator, which every gluster mount shows
//! at `<mount>/.meta/graphs/active/<volume>-client-<N>/` (`private` holds
//! `connected = 1` or `0`; `options/remote-host` and
//! `options/remote-subvolume` name the brick).

use std::io::Read;
use std::path::Path;

use super::MountError;

/// At most this many client translators are read (one per brick).
const MAX_CLIENTS: usize = 64;
/// At most this many graph entries are looked at to find them.
const MAX_ENTRIES: usize = 4096;
/// At most this many bytes of each file are read.
const MAX_FILE: u64 = 64 * 1024;

/// One brick as this node's client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrickLink {
    /// N in `<volume>-client-<N>`: the brick's place in the volume.
    pub index: u32,
    pub host: String,
    pub path: String,
    pub connected: bool,
}

/// The bricks of `volume` as the client mounted at `mount` sees them, in
/// brick order. Blocks as long as the FUSE client does: call it off the
/// async runtime, with a timeout.
pub fn brick_links(mount: &Path, volume: &str) -> Result<Vec<BrickLink>, MountError> {
    let graph = mount.join(".meta/graphs/active");
    let mut clients = Vec::new();
    let entries = std::fs::read_dir(&graph).map_err(MountError::io("listing", &graph))?;
    for entry in entries.take(MAX_ENTRIES) {
        let entry = entry.map_err(MountError::io("listing", &graph))?;
        if let Some(index) = entry
            .file_name()
            .to_str()
            .and_then(|n| client_index(n, volume))
        {
            clients.push((index, entry.path()));
            if clients.len() == MAX_CLIENTS {
                break;
            }
        }
    }
    clients.sort_by_key(|(index, _)| *index);
    clients
        .into_iter()
        .map(|(index, dir)| {
            let private = dir.join("private");
            let connected = connected(&read_capped(&private)?).ok_or_else(|| {
                MountError::io("reading", &private)(std::io::Error::other("no `connected = ` line"))
            })?;
            Ok(BrickLink {
                index,
                host: option(&dir, "remote-host")?,
                path: option(&dir, "remote-subvolume")?,
                connected,
            })
        })
        .collect()
}

/// N when `name` is exactly `<volume>-client-<N>`.
pub fn client_index(name: &str, volume: &str) -> Option<u32> {
    let digits = name.strip_prefix(volume)?.strip_prefix("-client-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The `connected` value of a client translator's `private` dump.
pub fn connected(private: &str) -> Option<bool> {
    private.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "connected" {
            return None;
        }
        match value.trim() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        }
    })
}

fn option(client: &Path, key: &str) -> Result<String, MountError> {
    let file = client.join("options").join(key);
    let value = read_capped(&file)?.trim().to_string();
    if value.is_empty() {
        return Err(MountError::io("reading", &file)(std::io::Error::other(
            "empty",
        )));
    }
    Ok(value)
}

fn read_capped(file: &Path) -> Result<String, MountError> {
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_FILE).read_to_string(&mut text))
        .map_err(MountError::io("reading", file))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOLUME: &str = "csi-pvc-6be6c8b7-4765-4517-b738-ae22711e0767";

    fn fixture(state: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/meta")
            .join(state)
    }

    #[test]
    fn only_the_volumes_client_translators_count() {
        let listing = std::fs::read_to_string(fixture("listing.txt")).expect("captured listing");
        let mut clients: Vec<u32> = listing
            .lines()
            .filter_map(|name| client_index(name, VOLUME))
            .collect();
        clients.sort();
        assert_eq!(clients, [0, 1, 2], "{listing}");
        for name in [
            "csi-pvc-6be6c8b7-4765-4517-b738-ae22711e0767-client-",
            "csi-pvc-6be6c8b7-4765-4517-b738-ae22711e0767-client-1x",
            "csi-pvc-6be6c8b7-4765-4517-b738-ae22711e0767-client--1",
            "csi-pvc-6be6c8b7-4765-4517-b738-ae22711e0767-client-+1",
            "other-csi-pvc-6be6c8b7-4765-4517-b738-ae22711e0767-client-1",
            "csi-pvc-6be6c8b7-4765-4517-b738-ae22711e0767-x-client-1",
        ] {
            assert_eq!(client_index(name, VOLUME), None, "{name}");
        }
        assert_eq!(client_index("v-client-0", "v-client"), None);
    }

    #[test]
    fn connected_from_the_private_dump() {
        assert_eq!(connected("[x.priv]\nconnected = 1\n"), Some(true));
        assert_eq!(connected("connected = 0"), Some(false));
        assert_eq!(connected("connecting = 1\nconnected = 2\n"), None);
        assert_eq!(connected("total_bytes_read = 3\n"), None);
    }

    #[test]
    fn all_bricks_connected() {
        let links = brick_links(&fixture("up"), VOLUME).unwrap();
        assert_eq!(links.len(), 3);
        assert!(links.iter().all(|l| l.connected), "{links:?}");
        assert_eq!(links.iter().map(|l| l.index).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_killed_brick_is_not_connected_and_named() {
        let links = brick_links(&fixture("down"), VOLUME).unwrap();
        let down: Vec<&BrickLink> = links.iter().filter(|l| !l.connected).collect();
        assert_eq!(
            down,
            [&BrickLink {
                index: 1,
                host: "127.159.217.1".into(),
                path: format!("/tmp/glusterfs-csi-dev-wtqYfe/state/bricks/127.159.217.1/{VOLUME}"),
                connected: false,
            }]
        );
    }

    #[test]
    fn no_meta_translator_is_an_error_not_a_verdict() {
        let empty = tempfile::tempdir().unwrap();
        assert!(brick_links(empty.path(), VOLUME).is_err());
        assert!(
            brick_links(&fixture("up"), "another-volume")
                .unwrap()
                .is_empty()
        );
    }
}
