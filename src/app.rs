//! Command line and wiring: which services a mode runs, built from flags.
//! Every flag is also an environment variable (`GLUSTERFS_CSI_*`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bricks::ssh::SshBrickRemover;
use crate::bricks::{AgentBrickRemover, BrickAgentService};
use crate::controller::BrickRemover;
use crate::controller::{Provisioner, ProvisionerConfig};
use crate::csi::{
    self, Services, controller::ControllerService, identity::IdentityService, node::NodeService,
};
use crate::gluster::ssh::parse_remote_command;
use crate::gluster::{GlusterCli, GlusterdAddress, LockRetry, RemoteVolumeLookup, SessionPool};
use crate::gluster::{Glusterd, SshCli, SshConfig};
use crate::mount::SystemMounter;
use crate::node::{NodeConfig, NodeVolumes};
use crate::proto::brick_agent::brick_agent_server::BrickAgentServer;

pub type AppResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub const DEFAULT_DRIVER_NAME: &str = "glusterfs.csi.io";
pub const DEFAULT_BRICK_AGENT_PORT: u16 = 24017;

#[derive(Parser, Debug)]
#[command(
    name = "glusterfs-csi",
    version,
    about = "CSI driver for replicated GlusterFS volumes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub mode: Mode,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `glusterfs_csi=debug`.
    #[arg(long, env = "GLUSTERFS_CSI_LOG", default_value = "info", global = true)]
    pub log: String,
}

#[derive(Subcommand, Debug)]
pub enum Mode {
    /// CSI controller: creates and deletes gluster volumes through glusterd.
    Controller(ControllerArgs),
    /// CSI node plugin: mounts volumes; on Gluster servers also the brick agent.
    Node(NodeArgs),
    /// Everything in one process against a throwaway local Gluster cluster.
    Dev(crate::dev::DevArgs),
    /// On a Gluster server: what the controller's ssh key may run (set it as
    /// the key's forced command).
    SshCommand(crate::ssh_command::SshCommandArgs),
}

/// How the controller reaches glusterd.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlusterdAccess {
    /// glusterd's unix socket, mounted from the host (hyperconverged).
    Socket,
    /// ssh to the Gluster servers, failing over between them (external).
    Ssh,
}

/// How brick directories of deleted volumes are removed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrickCleanup {
    /// The brick agent of the node plugin on each server (hyperconverged).
    Agent,
    /// `glusterfs-csi ssh-command remove-brick` over ssh (external).
    Ssh,
}

#[derive(Args, Debug, Clone)]
pub struct SshArgs {
    /// Gluster servers to run gluster commands on, in order of preference.
    #[arg(long, env = "GLUSTERFS_CSI_SSH_SERVERS", value_delimiter = ',')]
    pub ssh_servers: Vec<String>,
    #[arg(long, env = "GLUSTERFS_CSI_SSH_PORT", default_value_t = 22)]
    pub ssh_port: u16,
    #[arg(long, env = "GLUSTERFS_CSI_SSH_USER", default_value = "root")]
    pub ssh_user: String,
    /// Private key (from a Secret).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_IDENTITY",
        default_value = "/etc/glusterfs-csi/ssh/identity"
    )]
    pub ssh_identity: PathBuf,
    /// The servers' host keys, in known_hosts format (from a Secret).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_KNOWN_HOSTS",
        default_value = "/etc/glusterfs-csi/ssh/known_hosts"
    )]
    pub ssh_known_hosts: PathBuf,
    /// Remote command giving a gluster CLI that reads commands on stdin.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_GLUSTER_COMMAND",
        default_value = "glusterfs-csi ssh-command gluster"
    )]
    pub ssh_gluster_command: String,
    /// Remote command that removes a brick directory (JSON on stdin).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_SSH_BRICK_COMMAND",
        default_value = "glusterfs-csi ssh-command remove-brick"
    )]
    pub ssh_brick_command: String,
}

impl SshArgs {
    /// The ssh settings; `servers` only matter for gluster commands (brick
    /// removal goes to each brick's own server).
    fn config(&self) -> Result<SshConfig, String> {
        let config = SshConfig {
            servers: self.ssh_servers.clone(),
            port: self.ssh_port,
            user: self.ssh_user.clone(),
            identity: self.ssh_identity.clone(),
            known_hosts: self.ssh_known_hosts.clone(),
            connect_timeout: Duration::from_secs(5),
        };
        config
            .validate()
            .map_err(|e| format!("ssh settings: {e}"))?;
        Ok(config)
    }
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// CSI endpoint to serve.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_ENDPOINT",
        default_value = "unix:///csi/csi.sock"
    )]
    pub endpoint: String,
    /// Driver name reported to the CO (the CSIDriver object's name).
    #[arg(long, env = "GLUSTERFS_CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME)]
    pub driver_name: String,
}

#[derive(Args, Debug, Clone)]
pub struct GlusterdArgs {
    /// glusterd's unix socket (write access to the pool).
    #[arg(
        long,
        env = "GLUSTERFS_CSI_GLUSTERD_SOCKET",
        default_value = "/run/glusterd.socket"
    )]
    pub glusterd_socket: PathBuf,
    /// The gluster CLI binary.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTER_CLI", default_value = "gluster")]
    pub gluster_cli: PathBuf,
    /// How long one gluster command may take.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_GLUSTER_TIMEOUT_SECONDS",
        default_value_t = 120
    )]
    pub gluster_timeout_seconds: u64,
}

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub glusterd: GlusterdArgs,
    /// Name the other peers use for the local glusterd; asked of them if unset.
    #[arg(long, env = "GLUSTERFS_CSI_SERVER_NAME")]
    pub server_name: Option<String>,
    /// Brick root for StorageClasses that set no `brickRoot`.
    #[arg(
        long,
        env = "GLUSTERFS_CSI_DEFAULT_BRICK_ROOT",
        default_value = "/data/glusterfs"
    )]
    pub default_brick_root: String,
    /// Long-lived gluster CLI sessions kept for concurrent commands.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTER_SESSIONS", default_value_t = 8)]
    pub gluster_sessions: usize,
    /// How to reach glusterd.
    #[arg(long, env = "GLUSTERFS_CSI_GLUSTERD_ACCESS", value_enum, default_value_t = GlusterdAccess::Socket)]
    pub glusterd_access: GlusterdAccess,
    /// How brick directories of deleted volumes are removed.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_CLEANUP", value_enum, default_value_t = BrickCleanup::Agent)]
    pub brick_cleanup: BrickCleanup,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// Port of the brick agents run by the node plugin on every server.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_PORT", default_value_t = DEFAULT_BRICK_AGENT_PORT)]
    pub brick_agent_port: u16,
    /// Shared secret for the brick agents.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_TOKEN", hide_env_values = true)]
    pub brick_agent_token: Option<String>,
    /// FUSE mount options every node adds for volumes of this controller.
    #[arg(long, env = "GLUSTERFS_CSI_MOUNT_OPTIONS", value_delimiter = ',')]
    pub mount_options: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// This node's id (the Kubernetes node name).
    #[arg(long, env = "GLUSTERFS_CSI_NODE_ID")]
    pub node_id: String,
    /// Directory for FUSE client logs (default: gluster's /var/log/glusterfs).
    #[arg(long, env = "GLUSTERFS_CSI_MOUNT_LOG_DIR")]
    pub mount_log_dir: Option<PathBuf>,
    /// Serve the brick agent here (only on Gluster servers), e.g. 0.0.0.0:24017.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_LISTEN")]
    pub brick_agent_listen: Option<SocketAddr>,
    /// Shared secret the controller must present to the brick agent.
    #[arg(long, env = "GLUSTERFS_CSI_BRICK_AGENT_TOKEN", hide_env_values = true)]
    pub brick_agent_token: Option<String>,
    #[command(flatten)]
    pub glusterd: GlusterdArgs,
}

pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

pub async fn run(cli: Cli) -> AppResult<()> {
    match cli.mode {
        Mode::Controller(args) => run_controller(args).await,
        Mode::Node(args) => run_node(args).await,
        Mode::Dev(args) => crate::dev::run(args).await,
        Mode::SshCommand(args) => crate::ssh_command::run(args).await,
    }
}

/// A glusterd client over a pool of CLI sessions on a local socket.
pub fn glusterd_client(
    args: &GlusterdArgs,
    sessions: usize,
    server_name: Option<String>,
) -> Arc<GlusterCli> {
    let transport = SessionPool::new(
        args.gluster_cli.clone(),
        GlusterdAddress::Socket(args.glusterd_socket.clone()),
        Duration::from_secs(args.gluster_timeout_seconds),
        sessions,
    );
    Arc::new(GlusterCli::new(
        Arc::new(transport),
        args.gluster_cli.clone(),
        server_name,
        LockRetry::default(),
    ))
}

pub fn provisioner(
    args: &ControllerArgs,
    brick_dir_per_server: bool,
) -> AppResult<Arc<Provisioner>> {
    crate::controller::params::validate_brick_root(&args.default_brick_root)
        .map_err(|e| format!("--default-brick-root: {e}"))?;
    crate::node::MountOptions::parse(args.mount_options.iter().map(String::as_str))
        .map_err(|e| format!("--mount-options: {e}"))?;
    let timeout = Duration::from_secs(args.glusterd.gluster_timeout_seconds);
    let glusterd: Arc<dyn Glusterd> = match args.glusterd_access {
        GlusterdAccess::Socket => glusterd_client(
            &args.glusterd,
            args.gluster_sessions,
            args.server_name.clone(),
        ),
        GlusterdAccess::Ssh => {
            if args.ssh.ssh_servers.is_empty() {
                return Err("--glusterd-access ssh needs --ssh-servers".into());
            }
            let command = parse_remote_command(&args.ssh.ssh_gluster_command)
                .map_err(|e| format!("--ssh-gluster-command: {e}"))?;
            let transport = SshCli::new(args.ssh.config()?, command, timeout);
            Arc::new(GlusterCli::new(
                Arc::new(transport),
                args.glusterd.gluster_cli.clone(),
                None,
                LockRetry::default(),
            ))
        }
    };
    let bricks: Arc<dyn BrickRemover> = match args.brick_cleanup {
        BrickCleanup::Agent => Arc::new(AgentBrickRemover::new(
            args.brick_agent_port,
            args.brick_agent_token.clone(),
        )),
        BrickCleanup::Ssh => {
            let command = parse_remote_command(&args.ssh.ssh_brick_command)
                .map_err(|e| format!("--ssh-brick-command: {e}"))?;
            Arc::new(SshBrickRemover::new(args.ssh.config()?, command, timeout))
        }
    };
    Ok(Arc::new(Provisioner::new(
        glusterd,
        bricks,
        ProvisionerConfig {
            default_brick_root: args.default_brick_root.clone(),
            brick_dir_per_server,
            mount_options: args.mount_options.clone(),
        },
    )))
}

pub fn node_volumes(args: &NodeArgs) -> Arc<NodeVolumes> {
    Arc::new(NodeVolumes::new(
        Arc::new(SystemMounter::new()),
        Arc::new(RemoteVolumeLookup::new(args.glusterd.gluster_cli.clone())),
        NodeConfig {
            node_id: args.node_id.clone(),
            mount_log_dir: args.mount_log_dir.clone(),
        },
    ))
}

/// Serves a brick agent backed by the glusterd at `glusterd` until shutdown.
pub async fn serve_brick_agent(
    listener: tokio::net::TcpListener,
    glusterd: &GlusterdArgs,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> AppResult<()> {
    let service = BrickAgentService::new(glusterd_client(glusterd, 2, None), token);
    tonic::transport::Server::builder()
        .add_service(BrickAgentServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

async fn run_controller(args: ControllerArgs) -> AppResult<()> {
    let provisioner = provisioner(&args, false)?;
    let listener = csi::bind_socket(&csi::socket_path(&args.common.endpoint)?)?;
    tracing::info!(
        endpoint = %args.common.endpoint,
        glusterd = ?args.glusterd_access,
        brick_cleanup = ?args.brick_cleanup,
        "controller serving"
    );
    let services = Services {
        identity: IdentityService::new(
            args.common.driver_name.clone(),
            Some(provisioner.clone()),
            None,
        ),
        controller: Some(ControllerService::new(provisioner)),
        node: None,
    };
    csi::serve(listener, services, shutdown_signal()).await?;
    Ok(())
}

async fn run_node(args: NodeArgs) -> AppResult<()> {
    let volumes = node_volumes(&args);
    let listener = csi::bind_socket(&csi::socket_path(&args.common.endpoint)?)?;
    let agent = match args.brick_agent_listen {
        Some(addr) => {
            let agent_listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "brick agent serving");
            let glusterd = args.glusterd.clone();
            let token = args.brick_agent_token.clone();
            Some(tokio::spawn(async move {
                serve_brick_agent(agent_listener, &glusterd, token, shutdown_signal()).await
            }))
        }
        None => None,
    };
    tracing::info!(endpoint = %args.common.endpoint, node_id = %args.node_id, "node serving");
    let services = Services {
        identity: IdentityService::new(
            args.common.driver_name.clone(),
            None,
            Some(volumes.clone()),
        ),
        controller: None,
        node: Some(NodeService::new(volumes)),
    };
    csi::serve(listener, services, shutdown_signal()).await?;
    if let Some(agent) = agent {
        agent.await??;
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
