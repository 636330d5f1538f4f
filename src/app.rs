//! What each mode runs: the controller and node services, or one of the
//! other modes, built from the command line by [`crate::wiring`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::AppResult;
use crate::bricks::{AgentToken, BrickRootsSeen};
use crate::cli::{Cli, ControllerArgs, Mode, NodeArgs};
use crate::csi::{
    self, Services, controller::ControllerService, identity::IdentityService, node::NodeService,
};
use crate::gluster::Glusterd;
use crate::gluster::version;
use crate::wiring::{self, shutdown_signal};

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
        Mode::PurgeBrickTrash(args) => crate::bricks::trash::run_purge(args),
        Mode::PurgePoolDirectory(args) => crate::mount::pool::run_purge_directory(args),
        Mode::Ping(args) => crate::csi::ping::run(args).await,
        Mode::Migrate(args) => crate::migrate::run(args),
        Mode::Doctor(args) => crate::doctor::run(args).await,
    }
}

async fn run_controller(args: ControllerArgs) -> AppResult<()> {
    let provisioner = wiring::provisioner(&args)?;
    if args.test_cluster_brick_layout {
        tracing::warn!(
            "--test-cluster-brick-layout: bricks go to <root>/<server>/<volume>; meant for \
             one-machine test clusters only"
        );
    }
    let metrics = wiring::serve_metrics(&args.metrics).await?;
    wiring::survey_volumes(
        metrics,
        provisioner.clone(),
        args.volume_metrics_interval_seconds,
    );
    let listener = csi::bind_socket(&csi::socket_path(&args.common.endpoint)?)?;
    tracing::info!(
        endpoint = %args.common.endpoint,
        glusterd = ?args.glusterd_access,
        brick_cleanup = ?args.brick_cleanup,
        isolation = %provisioner.isolation().describe(),
        "controller serving"
    );
    tokio::spawn(version::report(
        Some(provisioner.glusterd()),
        PathBuf::from("glusterfs"),
    ));
    let controller = ControllerService::new(provisioner.clone());
    let operations = controller.operations();
    let services = Services {
        identity: IdentityService::new(
            args.common.driver_name.clone(),
            Some(provisioner.clone()),
            None,
        ),
        controller: Some(controller),
        node: None,
    };
    let served = csi::serve(listener, services, shutdown_signal()).await;
    operations.drain(crate::operations::SHUTDOWN_GRACE).await;
    provisioner.release_pools().await;
    served?;
    Ok(())
}

async fn run_node(args: NodeArgs) -> AppResult<()> {
    // Refused before anything starts: an agent anyone on the network could call.
    let agent_token = args
        .brick_agent_listen
        .map(|_| AgentToken::require(args.brick_agent_token.as_deref(), "--brick-agent-listen"))
        .transpose()?;
    let node = wiring::node(&args).await?;
    wiring::serve_metrics(&args.metrics).await?;
    log_fuse_scope(&node);
    let volumes = node.volumes.clone();
    let watcher = tokio::spawn(crate::node::watch::run(volumes.clone(), node.watch.clone()));
    let listener = csi::bind_socket(&csi::socket_path(&args.common.endpoint)?)?;
    let agent = match (args.brick_agent_listen, agent_token) {
        (Some(listen), Some(token)) => {
            let addr = listen.with_default_port(args.brick_agent_port);
            let agent_listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--brick-agent-listen {addr}: {e}"))?;
            let addr = agent_listener.local_addr()?;
            tracing::info!(%addr, "brick agent serving");
            let glusterd = args.glusterd.clone();
            Some(tokio::spawn(async move {
                wiring::serve_brick_agent(
                    agent_listener,
                    &glusterd,
                    token,
                    BrickRootsSeen::ThroughMounts,
                    shutdown_signal(),
                )
                .await
            }))
        }
        _ => None,
    };
    // On a Gluster server (agent), the local glusterd tells the pool's op-version.
    let local_glusterd = agent
        .is_some()
        .then(|| wiring::glusterd_client(&args.glusterd, 1, None, None) as Arc<dyn Glusterd>);
    tokio::spawn(version::report(local_glusterd, PathBuf::from("glusterfs")));
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
    watcher.abort();
    if let Some(agent) = agent {
        agent.await??;
    }
    Ok(())
}

/// Where FUSE clients will run; loudly when they cannot outlive the plugin.
fn log_fuse_scope(node: &wiring::NodeParts) {
    tracing::info!(
        mounter = node.scope.name(),
        clients_in = %node.scope.describe(),
        staged_volumes_adopted = node.volumes.staged_count(),
        "FUSE clients"
    );
    if matches!(node.scope, crate::mount::FuseScope::Inline) {
        tracing::warn!(
            passed_over = ?node.passed_over,
            "FUSE CLIENTS RUN INSIDE THIS NODE PLUGIN'S CONTAINER: every volume mounted on this node \
             breaks (\"Transport endpoint is not connected\") whenever the plugin restarts, is \
             upgraded, OOM-killed or evicted, until the watcher mounts it again; give the plugin \
             hostPID and systemd's socket (--mounter systemd) or the host's cgroup file system \
             (--mounter cgroup)"
        );
    }
}
