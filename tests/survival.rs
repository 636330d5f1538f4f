//! Mounts that survive: FUSE clients that outlive the node plugin, dead
//! mounts healed inside running pods, and a node plugin that reaps what it
//! starts. Needs root, glusterfs-server, /dev/fuse, unshare and python3.

mod common;

use std::time::{Duration, Instant};

use common::pods::{Pod, fuse_client_of};
use common::*;

/// A FUSE client SIGKILLed under a running pod: the pod's own view of the
/// volume (a private bind in its own mount namespace) works again within
/// 5 s, with no NodeStage or NodePublish call, and what it writes then is
/// on all three bricks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fuse_client_is_healed_inside_running_pods() {
    let driver = DevDriver::start().await;
    let (mut controller, mut node) = (driver.controller(), driver.node());
    let name = pvc_name();
    let volume = create_volume(&driver, &name).await;
    let id = volume.volume_id.clone();
    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-a", &name);
    stage_and_publish(&mut node, &volume, &staging, &target).await;

    let views = driver.kubelet.path().join("views");
    let mut pod = Pod::start(&target, &views, "app");
    wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(staging.join("app.log")).is_ok_and(|t| t.lines().count() >= 20)
    });
    let node_calls = |log: &str| {
        log.lines()
            .filter(|l| l.contains("NodeStageVolume") || l.contains("NodePublishVolume"))
            .count()
    };
    let calls_before = node_calls(&driver.log());

    let client = fuse_client_of(&staging).expect("the FUSE client");
    sigkill(client);
    let killed = Instant::now();
    pod.expect("error", Duration::from_secs(10));
    let recovered = pod.expect("recovered", Duration::from_secs(5));
    let healed_after = killed.elapsed();
    assert!(
        healed_after <= Duration::from_secs(5),
        "the pod wrote again {healed_after:?} after the kill ({recovered})"
    );
    assert_ne!(fuse_client_of(&staging), Some(client), "a new client");

    let answer = pod.write("after-heal.txt", "written through the healed view");
    assert_eq!(answer["event"], "written", "{answer}");
    for server in driver.cluster.addresses() {
        let on_brick = driver.brick_dir(&server, &id).join("after-heal.txt");
        assert_eq!(
            std::fs::read_to_string(&on_brick).unwrap(),
            "written through the healed view",
            "on {server}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(target.join("after-heal.txt")).unwrap(),
        "written through the healed view",
        "the kubelet's target path was put back too"
    );
    wait_until(Duration::from_secs(10), || {
        driver.log().contains("dead FUSE mount healed")
    });
    let log = driver.log();
    assert_eq!(node_calls(&log), calls_before, "healed with no node RPC");
    let healed = log
        .lines()
        .find(|l| l.contains("dead FUSE mount healed"))
        .expect("the heal is logged");
    let view = format!("pid {} (1 processes): {}", pod.pid(), pod.view.display());
    assert!(healed.contains(&view), "the pod's own mount: {healed}");

    let report = pod.stop();
    assert!(report["written"].as_u64().unwrap() > 20, "{report}");
    unpublish_and_unstage(&mut node, &volume, &staging, &target).await;
    assert!(mounts_at(&staging).is_empty());
    controller
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_clients_in_their_own_cgroup_survive_20_plugin_restarts() {
    let figures = common::drills::survive_restarts("cgroup").await;
    assert_eq!(figures.write_errors, 0);
    eprintln!("cgroup mounter: {figures:?}");
}

/// systemd is not on this machine: a shim stands in for `systemd-run
/// --scope` (tests/helpers/systemd-run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuse_clients_in_systemd_scopes_survive_20_plugin_restarts() {
    let figures = common::drills::survive_restarts("systemd").await;
    assert_eq!(figures.write_errors, 0);
    eprintln!("systemd mounter: {figures:?}");
}

/// The control for the drills above: with the FUSE clients inside the
/// plugin's container (inline, its own PID namespace), the same kill takes
/// them down and the pod sees the error. The restarted plugin's watcher
/// then mounts the volume again on the node (the kubelet's paths work);
/// without hostPID it cannot see the pod's processes to repair them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_fuse_clients_die_with_the_plugin_and_the_node_heals() {
    let stage = common::drills::Stage::new().await;
    let setup = stage.setup("inline", true);
    let plugin = stage.plugin(&setup, 0).await;
    assert!(
        plugin
            .log_text()
            .contains("FUSE CLIENTS RUN INSIDE THIS NODE PLUGIN'S CONTAINER"),
        "the warning is loud: {}",
        plugin.log_text()
    );
    let volume = stage.create(1).await.remove(0);
    stage.mount(&plugin, &volume).await;
    let (staging, target) = (stage.staging(&volume), stage.target(&volume));
    let client = fuse_client_of(&staging).expect("a FUSE client");
    let mut pod = Pod::start(&target, &stage.views, "app");
    plugin.kill();
    wait_until(Duration::from_secs(10), || {
        fuse_client_of(&staging) != Some(client)
    });
    pod.expect("error", Duration::from_secs(10));

    let plugin = stage.plugin(&setup, 1).await;
    wait_until(Duration::from_secs(10), || {
        fuse_client_of(&staging).is_some() && std::fs::read_dir(&target).is_ok()
    });
    // The heal's line is written after the repair has looked at every
    // namespace, which can be after the target works again.
    wait_until(Duration::from_secs(10), || {
        plugin.log_text().contains("dead FUSE mount healed")
    });
    drop(pod);
    stage.unmount_and_delete(&plugin, &[volume]).await;
    plugin.kill();
}

/// The node plugin as PID 1 of its own PID namespace (a container without
/// hostPID): every daemonised FUSE client is left to it, and after 50
/// stage/unstage cycles not one zombie remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_zombies_after_50_stage_unstage_cycles_as_pid_1() {
    let stage = common::drills::Stage::new().await;
    let setup = stage.setup("inline", true);
    let plugin = stage.plugin(&setup, 0).await;
    let init = plugin.namespace_init();
    let volume = stage.create(1).await.remove(0);
    let staging = stage.staging(&volume);
    let mut node = plugin.node();
    let mut clients = std::collections::BTreeSet::new();
    for cycle in 0..50 {
        node.node_stage_volume(stage_request(&volume, &staging))
            .await
            .unwrap();
        let client = fuse_client_of(&staging).expect("a FUSE client");
        if cycle == 0 {
            // The daemonised client was left to the namespace's init.
            assert_eq!(common::runtime::parent_of(client), Some(init));
        }
        clients.insert(client);
        node.node_unstage_volume(unstage_request(&volume, &staging))
            .await
            .unwrap();
    }
    assert_eq!(clients.len(), 50, "a client per stage");
    // Zombies of a PID 1 that does not reap stay for good; ours go at once.
    wait_until(Duration::from_secs(5), || {
        clients
            .iter()
            .all(|c| !std::path::Path::new(&format!("/proc/{c}")).exists())
    });
    assert!(common::runtime::zombies_of(init, &[]).is_empty());
    stage
        .driver
        .controller()
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
    plugin.kill();
}
