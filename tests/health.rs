//! Volume health and capacity against a real 3-server glusterd cluster:
//! ControllerGetVolume's condition when a brick dies, while entries wait for
//! self-heal, and with a real split-brain; GetCapacity as a brick root fills.

mod common;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use glusterfs_csi::gluster::BrickState;
use glusterfs_csi::gluster::xml::Envelope;
use glusterfs_csi::proto::csi::controller_service_capability::{Type, rpc};
use glusterfs_csi::proto::csi::*;
use tonic::Code;

/// Polls an async condition every 100 ms until it holds; panics after `limit`.
async fn await_true<F: Future<Output = bool>>(limit: Duration, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn condition(driver: &DevDriver, volume: &Volume) -> VolumeCondition {
    driver
        .controller()
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: volume.volume_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .volume_condition
        .unwrap()
}

fn bricks(driver: &DevDriver, volume: &str) -> Vec<BrickState> {
    Envelope::parse(
        "volume status",
        &driver.gluster(&["volume", "status", volume]),
    )
    .unwrap()
    .brick_states()
    .unwrap()
}

/// Kills brick `n` (0-based, brick order) of `volume`; returns it.
fn kill_brick(driver: &DevDriver, volume: &str, n: usize) -> BrickState {
    let brick = bricks(driver, volume).remove(n);
    sigkill(brick.pid.expect("the brick runs") as i32);
    wait_until(Duration::from_secs(20), || {
        !bricks(driver, volume)[n].online
    });
    brick
}

/// Whether the FUSE client behind `mount` is connected to brick `n`.
fn client_connected(mount: &Path, volume: &str, n: usize) -> bool {
    let private = mount.join(format!(".meta/graphs/active/{volume}-client-{n}/private"));
    std::fs::read_to_string(private).is_ok_and(|text| text.contains("connected = 1"))
}

/// `volume start V force`, then until the bricks run and the client is back.
fn restart_bricks(driver: &DevDriver, volume: &str, mount: &Path, n: &[usize]) {
    driver.gluster(&["volume", "start", volume, "force"]);
    for &n in n {
        wait_until(Duration::from_secs(30), || bricks(driver, volume)[n].online);
        wait_until(Duration::from_secs(30), || {
            client_connected(mount, volume, n)
        });
    }
}

fn write_file(path: &Path, data: &[u8]) {
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
}

/// A volume made through the driver, staged and published.
async fn mounted_volume(driver: &DevDriver) -> (Volume, String, PathBuf, PathBuf) {
    mounted_volume_with(driver, &[]).await
}

async fn mounted_volume_with(
    driver: &DevDriver,
    parameters: &[(&str, &str)],
) -> (Volume, String, PathBuf, PathBuf) {
    let pv = pvc_name();
    let volume = driver
        .controller()
        .create_volume(create_request(&pv, parameters))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let name = volume.volume_context["volume"].clone();
    let staging = driver.staging_path(&pv);
    let target = driver.target_path("pod", &pv);
    stage_and_publish(&mut driver.node(), &volume, &staging, &target).await;
    (volume, name, staging, target)
}

/// Keeps replicas apart: no self-heal, neither by the daemon nor by clients.
fn no_healing(driver: &DevDriver, volume: &str) {
    driver.gluster(&[
        "volume",
        "set",
        volume,
        "cluster.self-heal-daemon",
        "off",
        "cluster.data-self-heal",
        "off",
        "cluster.metadata-self-heal",
        "off",
        "cluster.entry-self-heal",
        "off",
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_brick_then_its_heal_backlog_show_in_the_volume_condition() {
    let driver = DevDriver::start().await;
    let (volume, name, staging, target) = mounted_volume(&driver).await;
    let healthy = condition(&driver, &volume).await;
    assert!(!healthy.abnormal, "{}", healthy.message);

    no_healing(&driver, &name);
    let brick = kill_brick(&driver, &name, 2);
    let down = condition(&driver, &volume).await;
    assert!(down.abnormal);
    let named = format!(
        "brick {}:{} on server {} is down",
        brick.host, brick.path, brick.host
    );
    assert!(down.message.contains(&named), "{}", down.message);
    // The external-health-monitor reads ListVolumes when a driver lists.
    let listed = driver
        .controller()
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .find(|e| e.volume.as_ref().unwrap().volume_id == volume.volume_id)
        .unwrap();
    assert_eq!(listed.status.unwrap().volume_condition.unwrap(), down);

    for i in 0..5 {
        write_file(
            &target.join(format!("f{i}")),
            b"written while a brick was down",
        );
    }
    restart_bricks(&driver, &name, &target, &[2]);
    let started = Instant::now();
    let pending = condition(&driver, &volume).await;
    let rpc_ms = started.elapsed().as_millis();
    assert!(pending.abnormal, "{}", pending.message);
    assert!(!pending.message.contains("is down"), "{}", pending.message);
    let count: u64 = pending
        .message
        .split(" entries pending heal")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {}", pending.message));
    // Five files and the directory that holds them.
    assert!(count >= 5, "{}", pending.message);
    eprintln!("pending heal: {count} entries; ControllerGetVolume {rpc_ms} ms");

    driver.gluster(&["volume", "set", &name, "cluster.self-heal-daemon", "on"]);
    // `volume heal` answers in text even with --xml.
    let heal = std::process::Command::new("gluster")
        .arg("--mode=script")
        .arg(format!(
            "--glusterd-sock={}",
            driver.cluster.servers[0].glusterd_socket.display()
        ))
        .args(["volume", "heal", &name])
        .output()
        .unwrap();
    assert!(heal.status.success(), "{heal:?}");
    let healed = Instant::now();
    await_true(Duration::from_secs(120), || async {
        !condition(&driver, &volume).await.abnormal
    })
    .await;
    eprintln!("healed in {} ms", healed.elapsed().as_millis());
    unpublish_and_unstage(&mut driver.node(), &volume, &staging, &target).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_brain_is_abnormal_with_its_count() {
    let driver = DevDriver::start().await;
    // Without quota: with two bricks of three down, the quota enforcer
    // refuses writes (EINVAL), and the split-brain below needs them. The
    // condition is read the same way with quota on.
    let (volume, name, staging, target) =
        mounted_volume_with(&driver, &[("enforceCapacity", "false")]).await;
    // Writes with one brick of three up need client quorum off.
    driver.gluster(&["volume", "set", &name, "cluster.quorum-type", "none"]);
    no_healing(&driver, &name);
    let file = target.join("f");
    write_file(&file, b"base");

    // The documented way: write with brick 1 down, then with only brick 1
    // up; each side then blames the other.
    kill_brick(&driver, &name, 0);
    wait_until(Duration::from_secs(30), || {
        !client_connected(&target, &name, 0)
    });
    write_file(&file, b"written without brick 1");
    restart_bricks(&driver, &name, &target, &[0]);
    kill_brick(&driver, &name, 1);
    kill_brick(&driver, &name, 2);
    wait_until(Duration::from_secs(30), || {
        !client_connected(&target, &name, 1) && !client_connected(&target, &name, 2)
    });
    write_file(&file, b"written with brick 1 alone");
    restart_bricks(&driver, &name, &target, &[1, 2]);

    let split = condition(&driver, &volume).await;
    assert!(split.abnormal);
    assert!(
        split
            .message
            .contains(&format!("gluster volume heal {name} info split-brain")),
        "{}",
        split.message
    );
    // The file, and sometimes its directory as well (gluster's timing):
    // the count is gluster's own, from the most affected brick.
    let count: u64 = split
        .message
        .split_once(" file")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count first: {}", split.message));
    // What `gluster volume heal V info split-brain` runs; the CLI would
    // ask the default glusterd socket, not this cluster's.
    let listed = std::process::Command::new(glusterfs_csi::gluster::transport::glfsheal_program())
        .args([name.as_str(), "split-brain-info", "glusterd-sock"])
        .arg(&driver.cluster.servers[0].glusterd_socket)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let by_gluster = listed
        .lines()
        .filter_map(|l| l.strip_prefix("Number of entries in split-brain: "))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .max()
        .unwrap_or_else(|| panic!("no counts from gluster:\n{listed}"));
    assert!(count >= 1, "{}", split.message);
    assert_eq!(count, by_gluster, "{}\n{listed}", split.message);
    unpublish_and_unstage(&mut driver.node(), &volume, &staging, &target).await;
}

/// A small file system of its own, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(mib: u32) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("brick-root-")
            .tempdir()
            .unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

async fn capacity(driver: &DevDriver, params: &[(&str, &str)]) -> Result<i64, tonic::Status> {
    driver
        .controller()
        .get_capacity(GetCapacityRequest {
            volume_capabilities: vec![mount_capability(
                volume_capability::access_mode::Mode::MultiNodeMultiWriter,
            )],
            parameters: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            accessible_topology: None,
        })
        .await
        .map(|r| r.into_inner().available_capacity)
}

#[tokio::test(flavor = "multi_thread")]
async fn capacity_follows_the_brick_roots_and_get_volume_knows_missing_volumes() {
    // Mounted before the cluster starts, as a server's disk is before its
    // glusterd (each dev server's mount namespace is a copy made then).
    let root = Tmpfs::new(64);
    let driver = DevDriver::start().await;
    let capabilities: Vec<i32> = driver
        .controller()
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .into_iter()
        .filter_map(|c| match c.r#type {
            Some(Type::Rpc(rpc)) => Some(rpc.r#type),
            _ => None,
        })
        .collect();
    for wanted in [
        rpc::Type::GetCapacity,
        rpc::Type::GetVolume,
        rpc::Type::VolumeCondition,
    ] {
        assert!(capabilities.contains(&(wanted as i32)), "{wanted:?}");
    }

    let root_path = root.path().to_str().unwrap().to_string();
    let params = [("brickRoot", root_path.as_str())];
    let empty = capacity(&driver, &params).await.unwrap();
    assert_eq!(empty, 64 << 20, "all three servers share the 64 MiB root");
    write_file(&root.path().join("filler"), &vec![7u8; 16 << 20]);
    let filled = capacity(&driver, &params).await.unwrap();
    assert_eq!(filled, empty - (16 << 20));
    let default_root = capacity(&driver, &[]).await.unwrap();
    assert!(default_root > 0 && default_root != filled);

    for (key, value) in [
        ("replica", "x"),
        ("servers", "192.0.2.1"),
        ("brickRoot", "relative/dir"),
        ("noSuchParameter", "1"),
    ] {
        let err = capacity(&driver, &[(key, value)]).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{key}: {err:?}");
        assert!(
            err.message().contains(&format!("parameters.{key}")),
            "{key}: {}",
            err.message()
        );
    }
    assert_eq!(
        capacity(&driver, &[("servers", &driver.cluster.servers[0].address)])
            .await
            .unwrap(),
        0,
        "replica 3 on one allowed server: nothing fits"
    );

    let missing = driver
        .controller()
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: "csi-pvc-00000000-0000-0000-0000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
}

async fn node_condition(
    driver: &DevDriver,
    volume: &Volume,
    path: &Path,
) -> (VolumeCondition, usize) {
    let stats = volume_stats(&mut driver.node(), volume, path).await;
    (stats.volume_condition.unwrap(), stats.usage.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn node_stats_name_the_bricks_this_nodes_client_misses() {
    let driver = DevDriver::start().await;
    let (volume, name, staging, target) = mounted_volume(&driver).await;
    for path in [&target, &staging] {
        let (healthy, usage) = node_condition(&driver, &volume, path).await;
        assert!(!healthy.abnormal, "{}", healthy.message);
        assert_eq!(usage, 2, "bytes and inodes");
    }

    let brick = kill_brick(&driver, &name, 1);
    wait_until(Duration::from_secs(30), || {
        !client_connected(&target, &name, 1)
    });
    let named = format!(
        "this node's gluster client is not connected to brick {}:{} (1 of 3)",
        brick.host, brick.path
    );
    for path in [&target, &staging] {
        let started = Instant::now();
        let (down, usage) = node_condition(&driver, &volume, path).await;
        eprintln!(
            "NodeGetVolumeStats with a brick down: {} ms",
            started.elapsed().as_millis()
        );
        assert!(down.abnormal);
        assert!(down.message.contains(&named), "{}", down.message);
        assert_eq!(usage, 2, "usage is still reported");
    }

    restart_bricks(&driver, &name, &target, &[1]);
    await_true(Duration::from_secs(30), || async {
        !node_condition(&driver, &volume, &target).await.0.abnormal
    })
    .await;
    unpublish_and_unstage(&mut driver.node(), &volume, &staging, &target).await;
}
