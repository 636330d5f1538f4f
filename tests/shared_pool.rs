//! `poolMount: shared` against a real 3-server glusterd cluster (`glusterfs-csi
//! dev`, bricks multiplexed): the node mounts the pool once and stages each
//! volume as a bind of its directory from that mount.
//!
//! A binary of its own, so that no other test runs beside it: the "pods"
//! here are processes that unshared their mount namespace on a host whose
//! `/` is private, so each keeps copies of every mount that existed when it
//! started, another test's pool mount included, and such a copy keeps that
//! FUSE client alive after the node unmounts it. A real container pivots
//! away from the host's mounts and keeps no such copies; this emulation
//! cannot, so the check that the pool's client ends with the last unstage
//! runs with only this test's own pods, stopped first.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pods::{Pod, fuse_client_of};
use common::*;
use glusterfs_csi::proto::csi::*;

const POOL: &str = "pool-s";
const MIB: i64 = 1 << 20;

async fn create_shared(driver: &DevDriver, name: &str, bytes: i64) -> Volume {
    let mut request = create_request(name, &[("pool", POOL), ("poolMount", "shared")]);
    request.capacity_range = Some(CapacityRange {
        required_bytes: bytes,
        limit_bytes: 0,
    });
    driver
        .controller()
        .create_volume(request)
        .await
        .unwrap_or_else(|e| panic!("CreateVolume {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
}

fn total_bytes(stats: &NodeGetVolumeStatsResponse) -> i64 {
    stats
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .unwrap()
        .total
}

/// Processes whose mount namespace (not ours) still holds a mount of
/// `device`: what keeps a FUSE client alive after we unmounted it.
fn holders_of(device: &str) -> Vec<String> {
    let own = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let namespace = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            continue;
        };
        let held: Vec<PathBuf> = glusterfs_csi::mount::mountinfo::parse(&text)
            .into_iter()
            .filter(|m| m.device == device)
            .map(|m| m.mount_point)
            .collect();
        if !held.is_empty() {
            let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            let whose = if namespace == own { "ours" } else { "other" };
            found.push(format!("pid {pid} ({whose} ns, {command}): {held:?}"));
        }
    }
    found
}

/// Two PVCs of a `poolMount: shared` class on one node: one FUSE client
/// for both, each PVC's df and files its own, a killed client healed
/// inside both running pods with each pod's own directory, and the client
/// gone with the last unstage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pool_mount_serves_every_volume_and_heals_each_with_its_own_directory() {
    let driver = DevDriver::start_with(&["--brick-multiplex=true".to_string()]).await;
    let mut node = driver.node();
    let names = [pvc_name(), pvc_name()];
    let sizes = [16 * MIB, 32 * MIB];
    let mut volumes = Vec::new();
    for (name, size) in names.iter().zip(sizes) {
        let volume = create_shared(&driver, name, size).await;
        assert_eq!(volume.volume_context["poolMount"], "shared");
        assert_eq!(volume.volume_id, format!("{POOL}/csi-{name}"));
        volumes.push(volume);
    }
    let staging: Vec<PathBuf> = names.iter().map(|n| driver.staging_path(n)).collect();
    let targets: Vec<PathBuf> = names
        .iter()
        .map(|n| driver.target_path(&format!("pod-{n}"), n))
        .collect();
    for _ in 0..2 {
        for i in 0..2 {
            stage_and_publish(&mut node, &volumes[i], &staging[i], &targets[i]).await;
        }
    }

    // One client: both staging paths are binds of their directory from
    // one mount of the pool, in the node's pool mount directory.
    let staged: Vec<_> = staging.iter().map(|s| mounts_at(s).remove(0)).collect();
    assert_eq!(staged[0].device, staged[1].device);
    for (mount, name) in staged.iter().zip(&names) {
        assert_eq!(mount.root, Path::new(&format!("/csi-{name}")));
        assert!(fuse_client_of(&mount.mount_point).is_none());
    }
    let pool_dir = driver.cluster.state_dir.join("node/pool-mounts");
    let pool_mounts: Vec<PathBuf> = std::fs::read_dir(&pool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pool_mounts.len(), 1, "{pool_mounts:?}");
    let pool_mount = pool_mounts[0].clone();
    assert!(
        pool_mount
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{POOL}.")),
        "{pool_mount:?}"
    );
    let pool_entry = mounts_at(&pool_mount).remove(0);
    assert_eq!(pool_entry.device, staged[0].device);
    assert_eq!(pool_entry.root, Path::new("/"));
    let client = fuse_client_of(&pool_mount).expect("the pool's FUSE client");

    // df: each PVC's own quota.
    for i in 0..2 {
        let stats = volume_stats(&mut node, &volumes[i], &targets[i]).await;
        assert_eq!(total_bytes(&stats), sizes[i], "{}", names[i]);
    }

    // Pods, each seeing only its own files.
    let views = driver.kubelet.path().join("views");
    let mut pods: Vec<Pod> = (0..2)
        .map(|i| Pod::start(&targets[i], &views, &format!("app-{i}")))
        .collect();
    for (i, target) in targets.iter().enumerate() {
        wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(target.join(format!("app-{i}.log")))
                .is_ok_and(|t| t.lines().count() >= 5)
        });
        assert_eq!(names_in(target), [format!("app-{i}.log")]);
        let parent = names_in(&target.join(".."));
        assert!(!parent.iter().any(|n| n.starts_with("csi-")), "{parent:?}");
    }
    let node_calls = |log: &str| {
        log.lines()
            .filter(|l| l.contains("NodeStageVolume") || l.contains("NodePublishVolume"))
            .count()
    };
    let calls_before = node_calls(&driver.log());

    // The pool's client dies: both pods see errors, and both recover
    // with no node RPC, each in its own directory again.
    sigkill(client);
    let killed = Instant::now();
    for pod in pods.iter_mut() {
        pod.expect("error", Duration::from_secs(10));
    }
    for pod in pods.iter_mut() {
        pod.expect("recovered", Duration::from_secs(15));
    }
    eprintln!(
        "both pods wrote again {:?} after the kill",
        killed.elapsed()
    );
    wait_until(Duration::from_secs(10), || {
        let log = driver.log();
        log.contains("dead shared pool mount healed") && log.contains("dead FUSE mount healed")
    });
    let log = driver.log();
    assert_eq!(node_calls(&log), calls_before, "healed with no node RPC");
    let healed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dead FUSE mount healed"))
        .collect();
    for pod in &pods {
        let view = format!("pid {} (1 processes): {}", pod.pid(), pod.view.display());
        let times: usize = healed.iter().map(|l| l.matches(&view).count()).sum();
        assert_eq!(
            times, 1,
            "the pod's own view, replaced once: {view} in {healed:#?}"
        );
    }
    let fresh = fuse_client_of(&pool_mount).expect("a new client");
    assert_ne!(fresh, client);

    for (i, pod) in pods.iter_mut().enumerate() {
        let answer = pod.write("after-heal.txt", &format!("pod {i} after the heal"));
        assert_eq!(answer["event"], "written", "{answer}");
    }
    for (i, name) in names.iter().enumerate() {
        for address in driver.cluster.addresses() {
            let dir = driver.brick_dir(&address, POOL).join(format!("csi-{name}"));
            assert_eq!(
                std::fs::read_to_string(dir.join("after-heal.txt")).unwrap(),
                format!("pod {i} after the heal"),
                "{address}"
            );
            assert!(dir.join(format!("app-{i}.log")).exists(), "{address}");
        }
        assert_eq!(
            names_in(&targets[i]),
            ["after-heal.txt".to_string(), format!("app-{i}.log")],
            "the kubelet's target shows its own directory again"
        );
    }
    for pod in pods {
        let report = pod.stop();
        assert!(report["written"].as_u64().unwrap() > 5, "{report}");
    }

    // The first unstage leaves the pool mount to the other PVC; the last
    // one unmounts it and its client ends.
    unpublish_and_unstage(&mut node, &volumes[0], &staging[0], &targets[0]).await;
    assert_eq!(fuse_client_of(&pool_mount), Some(fresh));
    assert_eq!(mounts_at(&pool_mount).len(), 1);
    let device = mounts_at(&pool_mount).remove(0).device;
    unpublish_and_unstage(&mut node, &volumes[1], &staging[1], &targets[1]).await;
    assert!(mounts_at(&pool_mount).is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while fuse_client_of(&pool_mount).is_some() {
        assert!(
            Instant::now() < deadline,
            "the pool's client outlived the last unstage; mounts of it left: {:#?}",
            holders_of(&device)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    for volume in &volumes {
        delete_as_the_provisioner_does(&mut driver.controller(), volume).await;
    }
}
