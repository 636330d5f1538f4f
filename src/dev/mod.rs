//! `glusterfs-csi dev`: the whole driver (Identity, Controller, Node, and a
//! brick agent per server) in one process, against a throwaway Gluster
//! cluster on loopback aliases. The README's "run it" command and the
//! integration tests' harness.

pub mod cluster;

use std::net::SocketAddr;

use clap::Parser;

use crate::AppResult;
use crate::bricks::{AgentToken, BrickRootsSeen};
use crate::cli::{Cli, DevArgs, GlusterdArgs, Mode};
use crate::csi::{
    self, Services, controller::ControllerService, identity::IdentityService, node::NodeService,
};
use crate::wiring;
pub use cluster::{ClusterDescription, DevCluster};

pub async fn run(args: DevArgs) -> AppResult<()> {
    // Bad settings are refused before a cluster is made for nothing.
    wiring::isolation(&args.isolation)?;
    // One process, one registry: dev serves the metrics of both halves.
    let metrics = wiring::serve_metrics(&args.metrics).await?;
    let mut cluster = DevCluster::start(
        &args.state_dir,
        usize::from(args.nodes),
        args.brick_multiplex,
        &args.glusterd,
        &args.gluster_cli,
    )
    .await?;
    let served = serve(&args, &mut cluster, metrics).await;
    tracing::info!("dev cluster: tearing down");
    cluster.teardown().await;
    tracing::info!("dev cluster: gone");
    served
}

async fn serve(args: &DevArgs, cluster: &mut DevCluster, metrics: bool) -> AppResult<()> {
    let description = cluster.description.clone();
    let token = description.brick_agent_token.clone();
    let agent_token = AgentToken::require(Some(&token), "dev")?;
    let (agent_listeners, port) = bind_agents(&description.addresses()).await?;
    cluster.set_brick_agent_port(port)?;

    // The controller and node of a dev cluster take the same flags a user
    // would give them, through the same parser.
    let first = &description.servers[0];
    let endpoint = format!("unix://{}", description.csi_socket.display());
    let common = [
        "--endpoint".to_string(),
        endpoint,
        "--driver-name".to_string(),
        args.driver_name.clone(),
        "--gluster-cli".to_string(),
        args.gluster_cli.to_string_lossy().into_owned(),
        "--glusterd-socket".to_string(),
        first.glusterd_socket.to_string_lossy().into_owned(),
    ];
    let Mode::Controller(controller_args) = parse_mode(
        "controller",
        common
            .iter()
            .cloned()
            .chain([
                "--server-name".to_string(),
                first.address.clone(),
                "--default-brick-root".to_string(),
                description.brick_root.to_string_lossy().into_owned(),
                "--brick-agent-port".to_string(),
                port.to_string(),
                "--brick-agent-token".to_string(),
                token.clone(),
                // Dev bricks live under the state directory, on whatever file system holds it.
                "--allow-root-filesystem-bricks".to_string(),
                // Its servers share the state directory's file system.
                "--test-cluster-brick-layout".to_string(),
                "--volume-metrics-interval-seconds".to_string(),
                args.volume_metrics_interval_seconds.to_string(),
                // Subdirectory mode, with its pools mounted in the state directory.
                "--pool-mount-dir".to_string(),
                description
                    .state_dir
                    .join(crate::dev::cluster::POOL_MOUNTS)
                    .to_string_lossy()
                    .into_owned(),
            ])
            .chain(args.isolation.to_flags())
            .chain(server_zone_flags(args)),
    )?
    else {
        unreachable!("parsed as controller");
    };
    let Mode::Node(node_args) = parse_mode(
        "node",
        common.iter().cloned().chain([
            "--node-id".to_string(),
            args.node_id.clone(),
            "--mount-log-dir".to_string(),
            description.mount_log_dir.to_string_lossy().into_owned(),
            // The FUSE clients of a dev run are meant to end with it.
            "--mounter".to_string(),
            "inline".to_string(),
            "--state-dir".to_string(),
            description
                .state_dir
                .join("node")
                .to_string_lossy()
                .into_owned(),
        ]),
    )?
    else {
        unreachable!("parsed as node");
    };
    let glusterd_args = |socket: &std::path::Path| GlusterdArgs {
        glusterd_socket: socket.to_path_buf(),
        ..node_args.glusterd.clone()
    };
    let provisioner = wiring::provisioner(&controller_args)?;
    let node = wiring::node(&node_args).await?;
    let survey = wiring::survey_volumes(
        metrics,
        provisioner.clone(),
        controller_args.volume_metrics_interval_seconds,
    );
    let volumes = node.volumes.clone();
    let watcher = tokio::spawn(crate::node::watch::run(volumes.clone(), node.watch.clone()));

    let (stop_agents, agents_stopped) = tokio::sync::watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    for (listener, server) in agent_listeners.into_iter().zip(&description.servers) {
        let glusterd = glusterd_args(&server.glusterd_socket);
        let token = agent_token.clone();
        let mut stopped = agents_stopped.clone();
        agents.spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            // The dev agents run on the "servers" themselves, not in containers.
            let roots = BrickRootsSeen::Directly;
            wiring::serve_brick_agent(listener, &glusterd, token, roots, shutdown).await
        });
    }

    let listener = csi::bind_socket(&description.csi_socket)?;
    let isolation = provisioner.isolation().describe();
    tokio::spawn(crate::gluster::version::report(
        Some(provisioner.glusterd()),
        std::path::PathBuf::from("glusterfs"),
    ));
    let controller = ControllerService::new(provisioner.clone());
    let operations = controller.operations();
    let services = Services {
        identity: IdentityService::new(
            args.driver_name.clone(),
            Some(provisioner.clone()),
            Some(volumes.clone()),
        ),
        controller: Some(controller),
        node: Some(NodeService::new(volumes)),
    };
    tracing::info!(
        endpoint = %format!("unix://{}", description.csi_socket.display()),
        servers = %description.addresses().join(","),
        brick_root = %description.brick_root.display(),
        brick_multiplex = description.brick_multiplex,
        %isolation,
        "dev cluster ready"
    );
    let served = csi::serve(listener, services, wiring::shutdown_signal()).await;
    operations.drain(crate::operations::SHUTDOWN_GRACE).await;
    provisioner.release_pools().await;
    watcher.abort();
    // Before the cluster goes, which it would count as failed surveys.
    if let Some(survey) = survey {
        survey.abort();
    }
    let _ = stop_agents.send(true);
    while agents.join_next().await.is_some() {}
    served.map_err(Into::into)
}

/// `dev --server-zone`s, handed to its controller as they came.
pub fn server_zone_flags(args: &DevArgs) -> impl Iterator<Item = String> + '_ {
    args.server_zones
        .iter()
        .map(|e| format!("--server-zone={e}"))
}

/// `glusterfs-csi <mode> <flags>` through the command-line parser.
fn parse_mode(mode: &str, flags: impl Iterator<Item = String>) -> AppResult<Mode> {
    let argv = ["glusterfs-csi".to_string(), mode.to_string()]
        .into_iter()
        .chain(flags);
    Ok(Cli::try_parse_from(argv)?.mode)
}

/// One listener per server address, all on the same free port.
async fn bind_agents(addresses: &[String]) -> AppResult<(Vec<tokio::net::TcpListener>, u16)> {
    for _ in 0..20 {
        let first = tokio::net::TcpListener::bind((addresses[0].as_str(), 0)).await?;
        let port = first.local_addr()?.port();
        let mut listeners = vec![first];
        for address in &addresses[1..] {
            let addr: SocketAddr = format!("{address}:{port}").parse()?;
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => listeners.push(listener),
                Err(_) => break,
            }
        }
        if listeners.len() == addresses.len() {
            return Ok((listeners, port));
        }
    }
    Err("could not find one free port on every dev server address".into())
}
