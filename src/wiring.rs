//! Builds the driver's parts from command-line arguments: the glusterd
//! client, the provisioner, the node's volumes and mounter, the brick
//! agent. Used by `app` (controller and node modes) and by `dev`.

use std::sync::Arc;
use std::time::Duration;

use crate::AppResult;
use crate::bricks::ssh::SshBrickServers;
use crate::bricks::{AgentBrickServers, AgentToken, BrickAgentService, BrickRootsSeen};
use crate::cli::{
    BrickCleanup, ControllerArgs, GlusterdAccess, GlusterdArgs, IsolationArgs, MetricsArgs,
    MounterChoice, NodeArgs, SshArgs,
};
use crate::controller::isolation::IsolationFlags;
use crate::controller::{BrickServers, Isolation, Provisioner, ProvisionerConfig, ServerZones};
use crate::gluster::ssh::parse_remote_command;
use crate::gluster::{GlusterCli, GlusterdAddress, LockRetry, RemoteVolumeLookup, SessionPool};
use crate::gluster::{Glusterd, SerialChanges, SshCli, SshConfig};
use crate::mount::pool::PoolMounts;
use crate::mount::{FuseScope, PathPolicy, ScopeChoice, ScopeSettings, SystemMounter};
use crate::node::watch::WatchConfig;
use crate::node::{NodeConfig, NodeVolumes};
use crate::proto::brick_agent::brick_agent_server::BrickAgentServer;

/// The ssh settings; `servers` only matter for gluster commands (brick
/// removal goes to each brick's own server).
fn ssh_config(args: &SshArgs) -> Result<SshConfig, String> {
    let config = SshConfig {
        servers: args.ssh_servers.clone(),
        port: args.ssh_port,
        user: args.ssh_user.clone(),
        identity: args.ssh_identity.clone(),
        known_hosts: args.ssh_known_hosts.clone(),
        connect_timeout: Duration::from_secs(5),
    };
    config
        .validate()
        .map_err(|e| format!("ssh settings: {e}"))?;
    Ok(config)
}

/// The tenant isolation settings, checked before anything starts.
pub fn isolation(args: &IsolationArgs) -> Result<Isolation, String> {
    Isolation::from_flags(IsolationFlags {
        client_addresses: &args.client_addresses,
        tls: args.tls,
        tls_dir: &args.tls_dir,
        tls_server_names: &args.tls_server_names,
        tls_client_names: &args.tls_client_names,
    })
    .map_err(|e| e.to_string())
}

/// A glusterd client over a pool of CLI sessions on a local socket.
pub fn glusterd_client(
    args: &GlusterdArgs,
    sessions: usize,
    server_name: Option<String>,
    node_address: Option<String>,
) -> Arc<GlusterCli> {
    let transport = SessionPool::new(
        args.gluster_cli.clone(),
        GlusterdAddress::Socket(args.glusterd_socket.clone()),
        Duration::from_secs(args.gluster_timeout_seconds),
        sessions,
    );
    Arc::new(
        GlusterCli::new(
            Arc::new(transport),
            args.gluster_cli.clone(),
            server_name,
            LockRetry::default(),
        )
        .with_lone_name(node_address),
    )
}

pub fn provisioner(args: &ControllerArgs) -> AppResult<Arc<Provisioner>> {
    crate::controller::params::validate_brick_root(&args.default_brick_root)
        .map_err(|e| format!("--default-brick-root: {e}"))?;
    crate::node::MountOptions::parse(args.mount_options.iter().map(String::as_str))
        .map_err(|e| format!("--mount-options: {e}"))?;
    if let Some(dir) = &args.pool_mount_dir {
        if !dir.is_absolute() {
            return Err(format!(
                "--pool-mount-dir: {} is not an absolute path",
                dir.display()
            )
            .into());
        }
        if matches!(args.glusterd_access, GlusterdAccess::Ssh) {
            return Err(
                "--pool-mount-dir: subdirectory mode needs --glusterd-access socket (the ssh \
                        forced command allows no pool or directory quota commands)"
                    .into(),
            );
        }
    }
    let isolation = isolation(&args.isolation)?;
    let server_zones = ServerZones::parse(&args.server_zones)
        .map_err(|e| format!("{}: {e}", crate::controller::zones::FLAG))?;
    if server_zones.is_empty() {
        tracing::info!("no --server-zone: each server counts as a zone of its own");
    } else {
        tracing::info!(zones = %server_zones, "bricks spread over the servers' zones");
    }
    for (flag, name) in [
        ("--server-name", &args.server_name),
        ("--node-address", &args.node_address),
    ] {
        if let Some(name) = name.as_deref().filter(|n| !crate::names::is_host_name(n)) {
            return Err(format!("{flag}: {name:?} is not a host name or IP address").into());
        }
    }
    let timeout = Duration::from_secs(args.glusterd.gluster_timeout_seconds);
    let glusterd: Arc<dyn Glusterd> = match args.glusterd_access {
        GlusterdAccess::Socket => glusterd_client(
            &args.glusterd,
            args.gluster_sessions,
            args.server_name.clone(),
            args.node_address.clone(),
        ),
        GlusterdAccess::Ssh => {
            if args.ssh.ssh_servers.is_empty() {
                return Err("--glusterd-access ssh needs --ssh-servers".into());
            }
            let command = parse_remote_command(&args.ssh.ssh_gluster_command)
                .map_err(|e| format!("--ssh-gluster-command: {e}"))?;
            let transport = SshCli::new(ssh_config(&args.ssh)?, command, timeout);
            Arc::new(GlusterCli::new(
                Arc::new(transport),
                args.glusterd.gluster_cli.clone(),
                None,
                LockRetry::default(),
            ))
        }
    };
    // Changes go one at a time while the pool multiplexes bricks.
    let glusterd: Arc<dyn Glusterd> = Arc::new(SerialChanges::new(glusterd));
    let bricks: Arc<dyn BrickServers> = match args.brick_cleanup {
        BrickCleanup::Agent => {
            let token =
                AgentToken::require(args.brick_agent_token.as_deref(), "--brick-cleanup agent")?;
            Arc::new(AgentBrickServers::new(args.brick_agent_port, token))
        }
        BrickCleanup::Ssh => {
            let remove = parse_remote_command(&args.ssh.ssh_brick_command)
                .map_err(|e| format!("--ssh-brick-command: {e}"))?;
            let root = parse_remote_command(&args.ssh.ssh_brick_root_command)
                .map_err(|e| format!("--ssh-brick-root-command: {e}"))?;
            Arc::new(SshBrickServers::new(
                ssh_config(&args.ssh)?,
                remove,
                root,
                timeout,
            ))
        }
    };
    let provisioner = Provisioner::new(
        glusterd,
        bricks,
        ProvisionerConfig {
            default_brick_root: args.default_brick_root.clone(),
            brick_dir_per_server: args.test_cluster_brick_layout,
            mount_options: args.mount_options.clone(),
            allow_root_filesystem_bricks: args.allow_root_filesystem_bricks,
            in_use_patience: crate::controller::IN_USE_PATIENCE,
            stop_settle: crate::controller::STOP_SETTLE,
            isolation,
            server_zones,
        },
    );
    let Some(dir) = &args.pool_mount_dir else {
        return Ok(Arc::new(provisioner));
    };
    // The controller's own FUSE clients, in its own cgroup: they go with it.
    let mounter = SystemMounter::new(
        FuseScope::Inline,
        PathPolicy {
            beneath: Some(dir.clone()),
        },
    );
    let pools = PoolMounts::new(dir.clone(), Arc::new(mounter), args.mount_options.clone())
        .map_err(|e| format!("--pool-mount-dir {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "subdirectory mode offered: pools are mounted here");
    Ok(Arc::new(provisioner.with_directories(Arc::new(pools))))
}

/// The node's parts: its volumes over a mounter whose FUSE clients run
/// where `--mounter` says, and the watcher's settings.
pub struct NodeParts {
    pub volumes: Arc<NodeVolumes>,
    pub scope: FuseScope,
    /// Why the better scopes were not chosen (`--mounter auto`).
    pub passed_over: Vec<String>,
    pub watch: WatchConfig,
}

pub async fn node(args: &NodeArgs) -> AppResult<NodeParts> {
    let choice = match args.mounter {
        MounterChoice::Auto => ScopeChoice::Auto,
        MounterChoice::Systemd => ScopeChoice::Systemd,
        MounterChoice::Cgroup => ScopeChoice::Cgroup,
        MounterChoice::Inline => ScopeChoice::Inline,
    };
    let settings = ScopeSettings {
        systemd_run: args.systemd_run.clone(),
        cgroup_root: args.cgroup_root.clone(),
        fuse_cgroup: args.fuse_cgroup.clone(),
        own_pid_namespace: crate::reaper::own_pid_namespace(),
    };
    let chosen = FuseScope::choose(choice, &settings).await?;
    let volumes = NodeVolumes::new(
        Arc::new(SystemMounter::new(
            chosen.scope.clone(),
            PathPolicy {
                beneath: args.kubelet_dir.clone(),
            },
        )),
        Arc::new(RemoteVolumeLookup::new(args.glusterd.gluster_cli.clone())),
        NodeConfig {
            node_id: args.node_id.clone(),
            mount_log_dir: args.mount_log_dir.clone(),
            state_dir: args.state_dir.clone(),
            shared_pool_dir: shared_pool_dir(args),
        },
    )
    .map_err(|e| format!("--state-dir {}: {e}", args.state_dir.display()))?;
    Ok(NodeParts {
        volumes: Arc::new(volumes),
        scope: chosen.scope,
        passed_over: chosen.passed_over,
        watch: WatchConfig {
            interval: Duration::from_millis(args.watch_interval_ms),
            log_limit: args.mount_log_max_mib << 20,
        },
    })
}

/// Where the node mounts pools for `poolMount: shared`: under the
/// kubelet's directory (mounted Bidirectional into the plugin, so the host
/// sees the mounts and they outlive the plugin, as staging mounts do), or
/// in the state directory when there is none (dev). Beside the plugin's
/// socket directory, not in it: the sidecars bind that directory with
/// private propagation, and a sidecar started while a pool is mounted
/// would keep a copy that holds the pool's FUSE client after the node
/// unmounts it.
fn shared_pool_dir(args: &NodeArgs) -> std::path::PathBuf {
    match &args.kubelet_dir {
        Some(kubelet) => kubelet
            .join("plugins")
            .join(format!("{}-pool-mounts", args.common.driver_name)),
        None => args.state_dir.join("pool-mounts"),
    }
}

/// Serves a brick agent backed by the glusterd at `glusterd` until shutdown.
pub async fn serve_brick_agent(
    listener: tokio::net::TcpListener,
    glusterd: &GlusterdArgs,
    token: AgentToken,
    roots: BrickRootsSeen,
    shutdown: impl std::future::Future<Output = ()>,
) -> AppResult<()> {
    let service = BrickAgentService::new(glusterd_client(glusterd, 2, None, None), token, roots);
    tonic::transport::Server::builder()
        .add_service(BrickAgentServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
/// Serves `--metrics-listen`, if set, for as long as the process runs; an
/// address that cannot be bound is an error. True when served.
pub async fn serve_metrics(args: &MetricsArgs) -> AppResult<bool> {
    let Some(addr) = args.metrics_listen else {
        return Ok(false);
    };
    let listener = crate::metrics::http::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics serving");
    tokio::spawn(crate::metrics::http::serve(
        listener,
        std::future::pending(),
    ));
    Ok(true)
}

/// With metrics served, the controller's periodic volume survey.
pub fn survey_volumes(
    served: bool,
    provisioner: Arc<Provisioner>,
    interval_seconds: u64,
) -> Option<tokio::task::JoinHandle<()>> {
    served.then(|| {
        let interval = Duration::from_secs(interval_seconds);
        tokio::spawn(crate::controller::survey::run(provisioner, interval))
    })
}

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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Mode};

    fn start(flags: &[&str]) -> Result<(), String> {
        let argv = ["glusterfs-csi", "controller", "--brick-agent-token=t"]
            .iter()
            .chain(flags);
        let Mode::Controller(args) = Cli::try_parse_from(argv).unwrap().mode else {
            unreachable!()
        };
        super::provisioner(&args)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bad_server_zones_stop_the_controller_naming_the_flag() {
        assert_eq!(
            start(&["--server-zone=s1=a", "--server-zone=s1=b"]).unwrap_err(),
            "--server-zone: server s1 is given two zones, a and b"
        );
        let e = start(&["--server-zone=s1"]).unwrap_err();
        assert!(
            e.starts_with("--server-zone: \"s1\" is not <server>=<zone>"),
            "{e}"
        );
        let e = start(&["--server-zone=s1=eu central"]).unwrap_err();
        assert!(
            e.starts_with("--server-zone: \"s1=eu central\": zone"),
            "{e}"
        );
    }

    #[test]
    fn pool_mounts_need_an_absolute_directory_and_the_socket() {
        assert_eq!(
            start(&["--pool-mount-dir=pools"]).unwrap_err(),
            "--pool-mount-dir: pools is not an absolute path"
        );
        let e = start(&[
            "--pool-mount-dir=/tmp/glusterfs-csi-unit-pools",
            "--glusterd-access=ssh",
            "--ssh-servers=s1",
        ])
        .unwrap_err();
        assert!(
            e.starts_with("--pool-mount-dir: subdirectory mode needs"),
            "{e}"
        );
    }
}
