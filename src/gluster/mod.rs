//! The glusterd backend: what the controller needs from glusterd, and the
//! real implementation over the gluster CLI.

mod cli;
pub mod error;
mod lookup;
pub mod serial;
pub mod ssh;
pub mod transport;
pub mod version;
pub mod xml;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;

#[cfg(test)]
pub(crate) use cli::volume_set_words;
pub use cli::{GlusterCli, LockRetry};
pub use error::GlusterError;
pub use lookup::RemoteVolumeLookup;
pub use serial::SerialChanges;
pub use ssh::{SshCli, SshConfig};
pub use transport::{CliTransport, GlusterdAddress, OneShotCli, SessionPool};

/// The pool-wide option that lets the bricks of a server share glusterfsd
/// processes (volumes with compatible options attach to one process).
pub const BRICK_MULTIPLEX: &str = "cluster.brick-multiplex";

/// The words gluster takes for a boolean option (`volume get` may append
/// " (DEFAULT)" to the value; only its first word is read).
pub fn boolean_option(value: &str) -> Option<bool> {
    let word = value.split_whitespace().next().unwrap_or_default();
    match word.to_ascii_lowercase().as_str() {
        "on" | "enable" | "yes" | "true" | "1" => Some(true),
        "off" | "disable" | "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// A member of the trusted storage pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uuid: String,
    /// The name bricks on this peer are addressed by.
    pub hostname: String,
    pub connected: bool,
    /// A full member ("Peer in Cluster"); a rejected or half-probed peer
    /// can be connected without being one. The local glusterd always is.
    pub in_cluster: bool,
    /// glusterd's word for the peer's state, for messages.
    pub state: String,
    /// The glusterd we talk to.
    pub is_local: bool,
}

impl Peer {
    /// Can hold bricks and take part in volume operations.
    pub fn usable(&self) -> bool {
        self.connected && self.in_cluster
    }

    /// Why it is not usable, for messages.
    pub fn condition(&self) -> String {
        if !self.connected {
            "disconnected".to_string()
        } else {
            self.state.clone()
        }
    }
}

/// The clients connected to a started volume's bricks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeClients {
    /// How many of each kind (`fuse`, `gfapi`, `glustershd`...).
    pub kinds: BTreeMap<String, u32>,
    /// Addresses the connections come from (gluster's own daemons' too).
    pub hosts: BTreeSet<String>,
}

/// Kinds of client that are gluster's own daemons and tools, not users of
/// the data (`gfapi.glfsheal`: the heal summary the controller itself reads
/// for volume health; seen connected under 11.1 when a delete followed it).
const GLUSTER_DAEMONS: [&str; 8] = [
    "gfapi.glfsheal",
    "glustershd",
    "quotad",
    "snapd",
    "bitd",
    "scrubber",
    "rebalance",
    "tierd",
];

impl VolumeClients {
    /// Mounts and applications: every kind but gluster's own daemons.
    pub fn users(&self) -> BTreeMap<&str, u32> {
        self.kinds
            .iter()
            .filter(|(kind, count)| **count > 0 && !GLUSTER_DAEMONS.contains(&kind.as_str()))
            .map(|(kind, count)| (kind.as_str(), *count))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeStatus {
    Created,
    Started,
    Stopped,
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Brick {
    pub host: String,
    pub path: String,
    pub host_uuid: String,
    pub is_arbiter: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub id: String,
    pub status: VolumeStatus,
    pub replica_count: u32,
    pub arbiter_count: u32,
    pub type_name: String,
    pub bricks: Vec<Brick>,
    /// Options set on the volume (`volume set`), by key.
    pub options: BTreeMap<String, String>,
}

/// `volume set` keys quota turns on (`volume quota V enable`).
pub const OPT_QUOTA: &str = "features.quota";
pub const OPT_QUOTA_DEEM_STATFS: &str = "features.quota-deem-statfs";

impl VolumeInfo {
    /// Quota is enabled: a limit on `/` is enforced and, with
    /// `features.quota-deem-statfs`, is the size `df` shows.
    pub fn quota_enabled(&self) -> bool {
        self.options.get(OPT_QUOTA).map(String::as_str) == Some("on")
    }
}

/// Where one brick of a new volume goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrickAddress {
    pub host: String,
    pub path: String,
}

/// A `volume create` request. With `arbiter`, the last brick is the arbiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVolume {
    pub name: String,
    pub replica: u32,
    pub arbiter: bool,
    pub bricks: Vec<BrickAddress>,
    /// `volume create ... force`: accept bricks on the root file system (and
    /// brick directories glusterd already marked as bricks).
    pub force: bool,
}

// --- Volume health: brick processes and the self-heal backlog -------------

/// A brick as `volume status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrickState {
    pub host: String,
    pub path: String,
    /// Its process runs and listens.
    pub online: bool,
    pub pid: Option<u32>,
}

/// One brick's line of glfsheal's `info-summary`. Counts are `None` when
/// glfsheal could not read that brick (it is down or unreachable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrickHeal {
    pub host: String,
    pub path: String,
    /// glfsheal's word for the brick: `Connected`, or why it could not read it.
    pub status: String,
    /// Entries waiting for self-heal (split-brain ones not included).
    pub pending: Option<u64>,
    pub split_brain: Option<u64>,
    /// Entries a self-heal may be working on right now.
    pub possibly_healing: Option<u64>,
}

impl BrickHeal {
    pub fn connected(&self) -> bool {
        self.status == "Connected"
    }
}

/// What the driver asks of glusterd. Writes are idempotent where glusterd
/// allows it: starting a started volume, stopping a stopped one and deleting
/// a missing one succeed.
#[async_trait]
pub trait Glusterd: Send + Sync {
    /// Every peer of the pool, this one included under its real name.
    async fn peers(&self) -> Result<Vec<Peer>, GlusterError>;
    /// UUID of the glusterd we talk to.
    async fn local_uuid(&self) -> Result<String, GlusterError>;
    async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, GlusterError>;
    async fn volumes(&self) -> Result<Vec<VolumeInfo>, GlusterError>;
    /// Fails with [`GlusterError::VolumeExists`] if the name is taken.
    async fn create_volume(&self, volume: &NewVolume) -> Result<(), GlusterError>;
    async fn set_options(
        &self,
        volume: &str,
        options: &[(String, String)],
    ) -> Result<(), GlusterError>;
    /// `force` also starts bricks that are down on a started volume, and
    /// brings peers that disagree about the volume's state in line.
    async fn start_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError>;
    /// `force` stops the volume on every peer that thinks it is started,
    /// even if others (or this one) do not.
    async fn stop_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError>;
    async fn delete_volume(&self, volume: &str) -> Result<(), GlusterError>;
    /// Who is connected to the bricks of a started volume.
    async fn volume_clients(&self, volume: &VolumeInfo) -> Result<VolumeClients, GlusterError>;
    /// Keys `volume set` accepts (excluding free-form `user.*` keys).
    async fn settable_options(&self) -> Result<Arc<BTreeSet<String>>, GlusterError>;
    // --- Volume health ---------------------------------------------------
    /// `volume status V`: the bricks glusterd reports, online or not. A
    /// server whose glusterd is down is left out (its bricks are unknown);
    /// `None`: the volume is not started.
    async fn brick_states(&self, volume: &str) -> Result<Option<Vec<BrickState>>, GlusterError>;
    /// Self-heal backlog of a started replicated volume, brick by brick
    /// (glfsheal `info-summary`).
    async fn heal_summary(&self, volume: &str) -> Result<Vec<BrickHeal>, GlusterError>;
    // -----------------------------------------------------------------------
    /// The pool's op-versions, for the start-up version report; `None` when
    /// this backend cannot tell.
    async fn op_versions(&self) -> Result<Option<version::OpVersions>, GlusterError> {
        Ok(None)
    }

    /// Whether the pool multiplexes bricks ([`BRICK_MULTIPLEX`]), for the
    /// start-up report; `None` when this backend cannot tell.
    async fn brick_multiplex(&self) -> Result<Option<bool>, GlusterError> {
        Ok(None)
    }

    // --- Quota: the size of a volume, enforced (controller/quota.rs) -------
    /// `volume quota V enable` (glusterd refuses it before the first start);
    /// quota already on is success. Starts quotad on every server.
    async fn enable_quota(&self, volume: &str) -> Result<(), GlusterError>;
    /// `volume quota V limit-usage / BYTES`: the hard limit on the whole
    /// volume, raised or lowered in place (mounts see it at once).
    async fn set_quota_limit(&self, volume: &str, bytes: u64) -> Result<(), GlusterError>;
    /// `volume quota V limit-usage /DIR BYTES`: the hard limit on the
    /// directory `directory` at the top of the volume (subdirectory mode).
    async fn set_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
        bytes: u64,
    ) -> Result<(), GlusterError>;
    /// `volume quota V remove /DIR`; a directory with no limit, or no
    /// longer there, is success.
    async fn remove_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
    ) -> Result<(), GlusterError>;
    // --- end of quota -------------------------------------------------------
}

/// Asks a server's glusterd, read-only, what state a volume is in (the node
/// uses it to tell why a mount failed). `None`: no such volume.
#[async_trait]
pub trait VolumeLookup: Send + Sync {
    async fn status(
        &self,
        server: &str,
        volume: &str,
    ) -> Result<Option<VolumeStatus>, GlusterError>;
}

/// Output captured from the real gluster CLI of one release, kept under
/// `tests/fixtures/gluster/`: the same commands in the same situations, under
/// the same file names, for every release in [`CAPTURES`].
#[cfg(test)]
pub(crate) struct Capture {
    pub release: version::Release,
    /// Directory of its files, under tests/fixtures/gluster.
    dir: &'static str,
    /// `cluster.op-version` and `cluster.max-op-version` of its pool.
    pub op_version: u32,
    /// Address block (`<block>.1` to `.3`) of the cluster most answers come
    /// from, and of those `volume status` and the staging refusal of bricks
    /// on the root file system came from.
    pub block: &'static str,
    pub status_block: &'static str,
    pub staging_block: &'static str,
    /// Address block of the volume health captures (`volume status`,
    /// glfsheal's summary).
    pub health_block: &'static str,
}

/// Debian 12's glusterfs 10.3, and Debian 13's 11.1 (captured in a chroot by
/// `tests/helpers/capture-gluster11.sh`). Parser tests run against each.
#[cfg(test)]
pub(crate) const CAPTURES: [Capture; 2] = [
    Capture {
        release: version::Release {
            major: 10,
            minor: 3,
        },
        dir: "",
        op_version: 100000,
        block: "127.77.1",
        status_block: "127.162.148",
        staging_block: "127.156.67",
        health_block: "127.187.83",
    },
    Capture {
        release: version::Release {
            major: 11,
            minor: 1,
        },
        dir: "11/",
        op_version: 110000,
        block: "127.77.1",
        status_block: "127.77.1",
        staging_block: "127.77.1",
        health_block: "127.77.1",
    },
];

#[cfg(test)]
impl Capture {
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gluster")
            .join(self.dir)
            .join(name)
    }

    pub fn fixture(&self, name: &str) -> String {
        let path = self.path(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A `--xml` answer, which must have the `<cliOutput>` envelope.
    pub fn envelope(&self, name: &str) -> xml::Envelope {
        xml::Envelope::parse("test", &self.fixture(name))
            .unwrap_or_else(|e| panic!("{} {name}: {e}", self.release))
    }
}

#[cfg(test)]
mod client_tests {
    use super::*;

    #[test]
    fn gluster_daemons_and_the_heal_reader_are_not_users() {
        let clients = VolumeClients {
            kinds: BTreeMap::from([
                ("fuse".to_string(), 1),
                ("gfapi.glfsheal".to_string(), 2),
                ("glustershd".to_string(), 3),
                ("quotad".to_string(), 3),
                ("gfapi".to_string(), 0),
            ]),
            hosts: BTreeSet::new(),
        };
        assert_eq!(clients.users(), BTreeMap::from([("fuse", 1)]));
    }
}
