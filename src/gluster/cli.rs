//! [`Glusterd`] over the gluster CLI (`--mode=script --xml`).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::error::{self, GlusterError};
use super::transport::{
    CliArg, CliCommand, CliTransport, GlusterdAddress, OneShotCli, RecordedTransport,
};
use super::version::OpVersions;
use super::xml::{self, Envelope};
use super::{BrickHeal, BrickState, Glusterd, NewVolume, Peer, VolumeClients, VolumeInfo};

/// How long to keep retrying when glusterd's lock on a volume is held by
/// another transaction (opErrno 30802, "Locking failed on ...").
#[derive(Clone, Copy, Debug)]
pub struct LockRetry {
    pub first_wait: Duration,
    pub max_wait: Duration,
    pub deadline: Duration,
}

impl Default for LockRetry {
    fn default() -> Self {
        LockRetry {
            first_wait: Duration::from_millis(20),
            max_wait: Duration::from_millis(500),
            deadline: Duration::from_secs(30),
        }
    }
}

pub struct GlusterCli {
    transport: Arc<dyn CliTransport>,
    /// The CLI binary, for read-only `--remote-host` questions to peers.
    program: PathBuf,
    /// Name the other peers know the local glusterd by, when configured
    /// (`--server-name`; only for a transport that never fails over).
    server_name: Option<String>,
    /// The name to use when glusterd has no other peer that could say
    /// (a single-server pool): this node's address (`--node-address`).
    lone_name: Option<String>,
    /// Peer names by uuid, as peers report each other. glusterd calls itself
    /// "localhost"; its real name is what the others call it.
    names: Mutex<HashMap<String, String>>,
    settable: OnceCell<Arc<BTreeSet<String>>>,
    retry: LockRetry,
}

impl GlusterCli {
    /// Clients of a volume whose bricks have no daemon connected, one brick
    /// at a time; a brick whose query fails on its own server has none.
    async fn clients_brick_by_brick(
        &self,
        volume: &VolumeInfo,
    ) -> Result<VolumeClients, GlusterError> {
        let mut clients = VolumeClients::default();
        let mut count = 0;
        for brick in &volume.bricks {
            let address = format!("{}:{}", brick.host, brick.path);
            let envelope = self
                .exec(&["volume", "status", &volume.name, &address, "clients"])
                .await?;
            if envelope.failed() && envelope.op_errstr.contains("Commit failed on") {
                continue;
            }
            if envelope.failed() {
                return Err(failure(
                    &["volume", "status"],
                    Some(&volume.name),
                    &envelope,
                ));
            }
            let hosts = envelope.client_connections()?;
            count += hosts.len() as u32;
            clients.hosts.extend(hosts);
        }
        if count > 0 {
            clients.kinds.insert("client".to_string(), count);
        }
        Ok(clients)
    }

    pub fn new(
        transport: Arc<dyn CliTransport>,
        program: impl Into<PathBuf>,
        server_name: Option<String>,
        retry: LockRetry,
    ) -> Self {
        GlusterCli {
            transport: Arc::new(RecordedTransport::new(transport)),
            program: program.into(),
            server_name,
            lone_name: None,
            names: Mutex::new(HashMap::new()),
            settable: OnceCell::new(),
            retry,
        }
    }

    /// The name of this server in a pool of one, where no other peer can
    /// tell it (brick host names of new volumes).
    pub fn with_lone_name(mut self, name: Option<String>) -> Self {
        self.lone_name = name;
        self
    }

    /// A client running one `gluster` process per command against `address`.
    pub fn one_shot(
        program: impl Into<PathBuf>,
        address: GlusterdAddress,
        timeout: Duration,
    ) -> Self {
        let program = program.into();
        let transport = OneShotCli::new(program.clone(), address, timeout);
        GlusterCli::new(Arc::new(transport), program, None, LockRetry::default())
    }

    /// Runs a command and parses its envelope; retries lock contention with
    /// exponential backoff until the deadline. A failed answer other than
    /// contention is returned as is, for the caller to judge.
    async fn exec(&self, words: &[&str]) -> Result<Envelope, GlusterError> {
        let command = CliCommand::new(
            words
                .iter()
                .map(|w| CliArg::new(*w))
                .collect::<Result<_, _>>()?,
        );
        let started = Instant::now();
        let mut wait = self.retry.first_wait;
        loop {
            let envelope = Envelope::parse(&command.name, &self.transport.run(&command).await?)?;
            if !envelope.failed() {
                return Ok(envelope);
            }
            let err = error::classify(&command.name, None, envelope.op_errno, &envelope.op_errstr);
            if !err.is_lock_contention() || started.elapsed() + wait > self.retry.deadline {
                return Ok(envelope);
            }
            tracing::debug!(command = %command.name, ?wait, "glusterd lock busy, retrying");
            tokio::time::sleep(jittered(wait)).await;
            wait = (wait * 2).min(self.retry.max_wait);
        }
    }

    /// Runs a command that must succeed.
    async fn exec_ok(
        &self,
        words: &[&str],
        volume: Option<&str>,
    ) -> Result<Envelope, GlusterError> {
        let envelope = self.exec(words).await?;
        if envelope.failed() {
            return Err(failure(words, volume, &envelope));
        }
        Ok(envelope)
    }

    /// Learns peer names from `pool list` answers: ours, then, for the
    /// glusterd we talk to, from the other peers' (read-only `--remote-host`).
    async fn name_of_local(&self, peers: &[Peer]) -> Result<Option<String>, GlusterError> {
        let Some(local) = peers.iter().find(|p| p.is_local) else {
            return Ok(None);
        };
        if let Some(name) = &self.server_name {
            return Ok(Some(name.clone()));
        }
        self.remember(peers);
        if let Some(name) = self.known_name(&local.uuid) {
            return Ok(Some(name));
        }
        if peers.iter().all(|p| p.is_local) {
            // Nobody else to ask, and nobody else who must reach the bricks.
            return match &self.lone_name {
                Some(name) => Ok(Some(name.clone())),
                None => Err(GlusterError::Unreachable {
                    target: self.transport.describe(),
                    detail: "glusterd has no other peer to say this server's name (a \
                             single-server pool); configure it with --server-name, or give \
                             --node-address"
                        .into(),
                }),
            };
        }
        let mut last_error = None;
        for peer in peers.iter().filter(|p| !p.is_local && p.connected) {
            let remote = RecordedTransport::new(Arc::new(OneShotCli::new(
                self.program.clone(),
                GlusterdAddress::RemoteHost(peer.hostname.clone()),
                Duration::from_secs(10),
            )));
            let command = CliCommand::new(vec![CliArg::new("pool")?, CliArg::new("list")?]);
            match remote
                .run(&command)
                .await
                .and_then(|xml| Envelope::parse(&command.name, &xml)?.peers())
            {
                Ok(their_view) => self.remember(&their_view),
                Err(e) => last_error = Some(e),
            }
            if let Some(name) = self.known_name(&local.uuid) {
                return Ok(Some(name));
            }
        }
        Err(GlusterError::Unreachable {
            target: self.transport.describe(),
            detail: format!(
                "cannot learn the name other peers use for this server (no connected peer \
                 answered{}); configure it with --server-name",
                last_error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
        })
    }

    /// `pool list` as glusterd answers it: the local peer as `localhost`,
    /// no other peer asked (unlike [`Glusterd::peers`]).
    pub async fn pool_list(&self) -> Result<Vec<Peer>, GlusterError> {
        self.exec_ok(&["pool", "list"], None).await?.peers()
    }

    /// `volume get all <option>`: a pool-wide option's value.
    pub async fn global_option(&self, option: &str) -> Result<String, GlusterError> {
        self.exec_ok(&["volume", "get", "all", option], None)
            .await?
            .global_option(option)
    }

    fn remember(&self, peers: &[Peer]) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for peer in peers.iter().filter(|p| !p.is_local) {
            names.insert(peer.uuid.clone(), peer.hostname.clone());
        }
    }

    fn known_name(&self, uuid: &str) -> Option<String> {
        self.names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uuid)
            .cloned()
    }
}

#[async_trait]
impl Glusterd for GlusterCli {
    async fn peers(&self) -> Result<Vec<Peer>, GlusterError> {
        let mut peers = self.pool_list().await?;
        if let Some(name) = self.name_of_local(&peers).await? {
            for peer in peers.iter_mut().filter(|p| p.is_local) {
                peer.hostname = name.clone();
            }
        }
        Ok(peers)
    }

    async fn local_uuid(&self) -> Result<String, GlusterError> {
        self.exec_ok(&["system::", "uuid", "get"], None)
            .await?
            .uuid()
    }

    async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, GlusterError> {
        let envelope = self.exec(&["volume", "info", name]).await?;
        if envelope.failed() {
            return match failure(&["volume", "info"], Some(name), &envelope) {
                GlusterError::NoSuchVolume(_) => Ok(None),
                other => Err(other),
            };
        }
        Ok(envelope.volumes()?.into_iter().find(|v| v.name == name))
    }

    async fn volumes(&self) -> Result<Vec<VolumeInfo>, GlusterError> {
        self.exec_ok(&["volume", "info"], None).await?.volumes()
    }

    async fn create_volume(&self, volume: &NewVolume) -> Result<(), GlusterError> {
        let replica = volume.replica.to_string();
        let bricks: Vec<String> = volume
            .bricks
            .iter()
            .map(|b| format!("{}:{}", b.host, b.path))
            .collect();
        let mut words = vec!["volume", "create", volume.name.as_str()];
        if volume.replica > 1 {
            words.extend(["replica", replica.as_str()]);
            if volume.arbiter {
                words.extend(["arbiter", "1"]);
            }
        }
        words.extend(bricks.iter().map(String::as_str));
        // Without it glusterd refuses bricks on the root file system and brick
        // directories an earlier failed create left (the caller removes those).
        if volume.force {
            words.push("force");
        }
        self.exec_ok(&words, Some(&volume.name)).await.map(drop)
    }

    async fn set_options(
        &self,
        volume: &str,
        options: &[(String, String)],
    ) -> Result<(), GlusterError> {
        self.exec_ok(&volume_set_words(volume, options), Some(volume))
            .await
            .map(drop)
    }

    async fn start_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError> {
        let envelope = if force {
            self.exec(&["volume", "start", volume, "force"]).await?
        } else {
            self.exec(&["volume", "start", volume]).await?
        };
        if envelope.failed() && !error::is_already_started(&envelope.op_errstr) {
            return Err(failure(&["volume", "start"], Some(volume), &envelope));
        }
        Ok(())
    }

    async fn stop_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError> {
        let envelope = if force {
            self.exec(&["volume", "stop", volume, "force"]).await?
        } else {
            self.exec(&["volume", "stop", volume]).await?
        };
        if envelope.failed() && !error::is_not_started(&envelope.op_errstr) {
            return Err(failure(&["volume", "stop"], Some(volume), &envelope));
        }
        Ok(())
    }

    async fn delete_volume(&self, volume: &str) -> Result<(), GlusterError> {
        let envelope = self.exec(&["volume", "delete", volume]).await?;
        if envelope.failed() {
            return match failure(&["volume", "delete"], Some(volume), &envelope) {
                GlusterError::NoSuchVolume(_) => Ok(()),
                other => Err(other),
            };
        }
        Ok(())
    }

    async fn volume_clients(&self, volume: &VolumeInfo) -> Result<VolumeClients, GlusterError> {
        let name = volume.name.as_str();
        let words = ["volume", "status", name, "client-list"]
            .into_iter()
            .map(CliArg::new)
            .collect::<Result<Vec<_>, _>>()?;
        let listed = self
            .transport
            .run(&CliCommand::text(words, xml::CLIENT_LIST_END))
            .await
            .and_then(|text| xml::client_kinds(&text));
        match listed {
            Ok(kinds) => {
                let hosts = self
                    .exec_ok(&["volume", "status", name, "clients"], Some(name))
                    .await?
                    .client_hosts()?;
                Ok(VolumeClients { kinds, hosts })
            }
            // glusterd 10.3 fails both queries when a brick has no client at
            // all, which only a volume without a self-heal daemon (one brick
            // per file) can show: ask brick by brick.
            Err(GlusterError::Busy { .. }) if volume.replica_count <= 1 => {
                self.clients_brick_by_brick(volume).await
            }
            Err(e) => Err(e),
        }
    }

    async fn settable_options(&self) -> Result<Arc<BTreeSet<String>>, GlusterError> {
        self.settable
            .get_or_try_init(|| async {
                let command = CliCommand::new(vec![
                    CliArg::new("volume")?,
                    CliArg::new("set")?,
                    CliArg::new("help-xml")?,
                ])
                .standalone("</options>");
                let text = self.transport.run(&command).await?;
                Ok(Arc::new(xml::settable_options(&text)?))
            })
            .await
            .cloned()
    }

    // --- Volume health -------------------------------------------------------
    async fn brick_states(&self, volume: &str) -> Result<Option<Vec<BrickState>>, GlusterError> {
        let envelope = self.exec(&["volume", "status", volume]).await?;
        if envelope.failed() {
            if error::is_not_started_status(&envelope.op_errstr) {
                return Ok(None);
            }
            return Err(failure(&["volume", "status"], Some(volume), &envelope));
        }
        envelope.brick_states().map(Some)
    }

    async fn heal_summary(&self, volume: &str) -> Result<Vec<BrickHeal>, GlusterError> {
        let text = self.transport.heal_summary(&CliArg::new(volume)?).await?;
        let envelope = Envelope::parse("volume heal", &text)?;
        if envelope.failed() {
            return Err(failure(&["volume", "heal"], Some(volume), &envelope));
        }
        envelope.heal_summary()
    }
    // -------------------------------------------------------------------------

    async fn op_versions(&self) -> Result<Option<OpVersions>, GlusterError> {
        let mut values = Vec::new();
        for option in ["cluster.op-version", "cluster.max-op-version"] {
            let text = self.global_option(option).await?;
            let value = text
                .trim()
                .parse::<u32>()
                .map_err(|_| GlusterError::BadOutput {
                    command: format!("volume get all {option}"),
                    detail: format!("{text:?} is not a number"),
                })?;
            values.push(value);
        }
        Ok(Some(OpVersions {
            current: values[0],
            max: values[1],
        }))
    }

    async fn brick_multiplex(&self) -> Result<Option<bool>, GlusterError> {
        let text = self.global_option(super::BRICK_MULTIPLEX).await?;
        super::boolean_option(&text)
            .map(Some)
            .ok_or_else(|| GlusterError::BadOutput {
                command: format!("volume get all {}", super::BRICK_MULTIPLEX),
                detail: format!("{text:?} is neither on nor off"),
            })
    }

    // --- quota --------------------------------------------------------------
    async fn enable_quota(&self, volume: &str) -> Result<(), GlusterError> {
        let envelope = self.exec(&["volume", "quota", volume, "enable"]).await?;
        if envelope.failed() && !error::is_quota_already_enabled(&envelope.op_errstr) {
            return Err(failure(&["volume", "quota"], Some(volume), &envelope));
        }
        Ok(())
    }

    async fn set_quota_limit(&self, volume: &str, bytes: u64) -> Result<(), GlusterError> {
        let bytes = bytes.to_string();
        self.exec_ok(
            &["volume", "quota", volume, "limit-usage", "/", &bytes],
            Some(volume),
        )
        .await
        .map(drop)
    }

    async fn set_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
        bytes: u64,
    ) -> Result<(), GlusterError> {
        let bytes = bytes.to_string();
        let path = format!("/{directory}");
        self.exec_ok(
            &["volume", "quota", volume, "limit-usage", &path, &bytes],
            Some(volume),
        )
        .await
        .map(drop)
    }

    async fn remove_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
    ) -> Result<(), GlusterError> {
        let path = format!("/{directory}");
        let words = ["volume", "quota", volume, "remove", &path];
        let envelope = self.exec(&words).await?;
        if envelope.failed() && !error::is_quota_limit_absent(&envelope.op_errstr) {
            return Err(failure(&words, Some(volume), &envelope));
        }
        Ok(())
    }
}

/// `volume set V k1 v1 k2 v2 ...`: several options in one transaction.
pub(crate) fn volume_set_words<'a>(
    volume: &'a str,
    options: &'a [(String, String)],
) -> Vec<&'a str> {
    let mut words = vec!["volume", "set", volume];
    for (key, value) in options {
        words.extend([key.as_str(), value.as_str()]);
    }
    words
}

fn failure(words: &[&str], volume: Option<&str>, envelope: &Envelope) -> GlusterError {
    let command = words.iter().take(2).copied().collect::<Vec<_>>().join(" ");
    error::classify(&command, volume, envelope.op_errno, &envelope.op_errstr)
}

/// Spreads retries of parallel requests apart (0.5x to 1.5x of `wait`).
fn jittered(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    wait / 2 + wait.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every command with one captured output.
    struct Canned(String);

    #[async_trait]
    impl CliTransport for Canned {
        async fn run(&self, _: &CliCommand) -> Result<String, GlusterError> {
            Ok(self.0.clone())
        }
        fn describe(&self) -> String {
            "canned".into()
        }
        async fn heal_summary(&self, _: &CliArg) -> Result<String, GlusterError> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn a_pool_of_one_names_its_server_by_the_node_address() {
        for c in &crate::gluster::CAPTURES {
            let single = || Arc::new(Canned(c.fixture("pool_list_single.xml")));
            let cli = GlusterCli::new(single(), "gluster", None, LockRetry::default())
                .with_lone_name(Some("192.168.1.31".into()));
            let peers = cli.peers().await.unwrap();
            assert_eq!(peers.len(), 1, "{}", c.release);
            assert_eq!(peers[0].hostname, "192.168.1.31");
            assert!(peers[0].is_local && peers[0].connected);

            let configured = GlusterCli::new(
                single(),
                "gluster",
                Some("gluster-1".into()),
                LockRetry::default(),
            )
            .with_lone_name(Some("192.168.1.31".into()));
            assert_eq!(configured.peers().await.unwrap()[0].hostname, "gluster-1");

            let unnamed = GlusterCli::new(single(), "gluster", None, LockRetry::default());
            let err = unnamed.peers().await.unwrap_err();
            assert!(
                err.to_string().contains("single-server pool")
                    && err.to_string().contains("--node-address"),
                "{}: {err}",
                c.release
            );
        }
    }
}
