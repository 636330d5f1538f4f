//! Subdirectory mode against a real 3-server glusterd cluster (`glusterfs-csi
//! dev`, bricks multiplexed as dev runs them by default): volumes are
//! directories of a pool with a directory quota each, mounted by nodes as
//! `server:/<pool>/<directory>`.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use common::churn::quantile;
use common::*;
use glusterfs_csi::proto::csi::*;
use tonic::Code;

/// The pool of a test's cluster: its name is unique among the clusters
/// running at once, because glusterd keeps its quota helper mount at a
/// fixed path named after the volume (`/var/run/gluster/<pool>_quota_limit`),
/// which two clusters' pools of one name would share.
fn pool(driver: &DevDriver) -> String {
    let address = &driver.cluster.addresses()[0];
    let octets: Vec<&str> = address.split('.').collect();
    format!("pool-{}-{}", octets[1], octets[2])
}
const MIB: i64 = 1 << 20;

async fn start() -> DevDriver {
    DevDriver::start_with(&["--brick-multiplex=true".to_string()]).await
}

fn pool_request(name: &str, pool: &str, bytes: i64) -> CreateVolumeRequest {
    let mut request = create_request(name, &[("pool", pool)]);
    request.capacity_range = Some(CapacityRange {
        required_bytes: bytes,
        limit_bytes: 0,
    });
    request
}

async fn create_in_pool(driver: &DevDriver, name: &str, bytes: i64) -> Volume {
    driver
        .controller()
        .create_volume(pool_request(name, &pool(driver), bytes))
        .await
        .unwrap_or_else(|e| panic!("CreateVolume {name}: {e:?}"))
        .into_inner()
        .volume
        .unwrap()
}

/// The entries at the top of the pool as server `address`'s brick holds
/// them, but gluster's own (`.glusterfs`, `.glusterfs-anonymous-inode-*`).
fn pool_top(driver: &DevDriver, address: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(driver.brick_dir(address, &pool(driver)))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".glusterfs"))
        .collect();
    names.sort();
    names
}

fn addresses(driver: &DevDriver) -> Vec<String> {
    driver.cluster.addresses()
}

fn write_bytes(path: &Path, bytes: usize) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![7u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        file.write_all(&chunk[..n])?;
        left -= n;
    }
    file.sync_all()
}

/// The provisioner's and kubelet's whole sequence: the pool made on first
/// use, the data on every brick of the pool, df showing the volume's size,
/// and after the delete nothing of the directory left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_in_a_pool_made_on_first_use() {
    let driver = start().await;
    let name = pvc_name();
    let volume = create_in_pool(&driver, &name, 64 * MIB).await;
    assert_eq!(volume.volume_id, format!("{}/csi-{name}", pool(&driver)));
    assert_eq!(volume.capacity_bytes, 64 * MIB);
    assert_eq!(volume.volume_context["volume"], volume.volume_id);
    // Idempotent: the same answer again.
    let again = create_in_pool(&driver, &name, 64 * MIB).await;
    assert_eq!(again, volume);
    let info = driver.gluster(&["volume", "info", &pool(&driver)]);
    assert!(info.contains("<name>user.csi.pool</name>"), "{info}");
    assert!(info.contains("<name>features.quota</name>"), "{info}");

    let mut node = driver.node();
    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-1", &name);
    for _ in 0..2 {
        stage_and_publish(&mut node, &volume, &staging, &target).await;
    }
    let source = &mounts_at(&staging)[0].source;
    assert!(
        source.ends_with(&format!(":/{}/csi-{name}", pool(&driver))),
        "{source}"
    );
    std::fs::write(target.join("hello.txt"), b"replicated").unwrap();
    let stats = volume_stats(&mut node, &volume, &target).await;
    let bytes = stats
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .unwrap();
    assert_eq!(bytes.total, 64 * MIB, "df shows the directory's quota");
    for address in addresses(&driver) {
        let copy = driver
            .brick_dir(&address, &pool(&driver))
            .join(format!("csi-{name}"))
            .join("hello.txt");
        assert_eq!(std::fs::read(&copy).unwrap(), b"replicated", "{address}");
    }
    let got = driver
        .controller()
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: volume.volume_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().volume_id, volume.volume_id);
    let listed = driver
        .controller()
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry = listed
        .entries
        .iter()
        .find(|e| e.volume.as_ref().unwrap().volume_id == volume.volume_id)
        .expect("ListVolumes lists the directory");
    let condition = entry.status.as_ref().unwrap().volume_condition.as_ref();
    assert!(!condition.unwrap().abnormal, "{condition:?}");

    for _ in 0..2 {
        unpublish_and_unstage(&mut node, &volume, &staging, &target).await;
    }
    for _ in 0..2 {
        driver
            .controller()
            .delete_volume(delete_volume_request(&volume))
            .await
            .unwrap();
    }
    for address in addresses(&driver) {
        assert_eq!(
            pool_top(&driver, &address),
            Vec::<String>::new(),
            "{address}"
        );
    }
    let gone = driver
        .controller()
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: volume.volume_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // The pool stays for the next volume.
    assert!(driver.volume_names().contains(&pool(&driver)));
}

/// The directory quota holds a writer at the size, and expansion raises it
/// on the live mount; `directoryOwner` gives the directory to a pod's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_is_a_directory_quota_that_expansion_raises() {
    let driver = start().await;
    let name = pvc_name();
    let mut request = pool_request(&name, &pool(&driver), 8 * MIB);
    request
        .parameters
        .insert("directoryOwner".into(), "1000:2000".into());
    let volume = driver
        .controller()
        .create_volume(request)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let mut node = driver.node();
    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-1", &name);
    stage_and_publish(&mut node, &volume, &staging, &target).await;
    let root = std::fs::metadata(&target).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((root.uid(), root.gid()), (1000, 2000));

    let refused = write_bytes(&target.join("big"), 16 << 20).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EDQUOT), "{refused}");
    let written = std::fs::metadata(target.join("big")).unwrap().len();
    assert!(
        written <= 10 << 20,
        "{written} bytes got past an 8 MiB limit"
    );
    std::fs::remove_file(target.join("big")).unwrap();

    let expanded = driver
        .controller()
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: volume.volume_id.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 32 * MIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expanded.capacity_bytes, 32 * MIB);
    assert!(!expanded.node_expansion_required);
    write_bytes(&target.join("big"), 16 << 20).unwrap();
    let stats = volume_stats(&mut node, &volume, &target).await;
    assert_eq!(stats.usage[0].total, 32 * MIB);

    unpublish_and_unstage(&mut node, &volume, &staging, &target).await;
    driver
        .controller()
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
}

/// Two volumes of one pool: each mount shows its own directory only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_of_one_pool_cannot_see_each_other() {
    let driver = start().await;
    let (a, b) = (pvc_name(), pvc_name());
    let va = create_in_pool(&driver, &a, 16 * MIB).await;
    let vb = create_in_pool(&driver, &b, 16 * MIB).await;
    let mut node = driver.node();
    let (sa, ta) = (driver.staging_path(&a), driver.target_path("pod-a", &a));
    let (sb, tb) = (driver.staging_path(&b), driver.target_path("pod-b", &b));
    stage_and_publish(&mut node, &va, &sa, &ta).await;
    stage_and_publish(&mut node, &vb, &sb, &tb).await;
    std::fs::write(ta.join("secret-of-a"), b"a").unwrap();
    std::fs::write(tb.join("secret-of-b"), b"b").unwrap();
    assert_eq!(names_in(&ta), ["secret-of-a"]);
    assert_eq!(names_in(&tb), ["secret-of-b"]);
    // The mount's root is the directory: `..` of it is the host's, not the pool.
    let parent = names_in(&ta.join(".."));
    assert!(!parent.iter().any(|n| n.starts_with("csi-")), "{parent:?}");
    for (volume, staging, target) in [(&va, &sa, &ta), (&vb, &sb, &tb)] {
        unpublish_and_unstage(&mut node, volume, staging, target).await;
        driver
            .controller()
            .delete_volume(delete_volume_request(volume))
            .await
            .unwrap();
    }
}

/// 50 creates at once on a pool made by the first of them, then 50 deletes
/// at once: every directory made, then nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_creates_then_deletes_leave_nothing() {
    let driver = start().await;
    let names: Vec<String> = (0..50).map(|_| pvc_name()).collect();
    let started = Instant::now();
    let creates = names.iter().map(|name| {
        let mut controller = driver.controller();
        let request = pool_request(name, &pool(&driver), 16 * MIB);
        async move {
            let begun = Instant::now();
            let volume = controller.create_volume(request).await;
            (volume, begun.elapsed())
        }
    });
    let created = futures_util::future::join_all(creates).await;
    let wall = started.elapsed();
    let mut volumes = Vec::new();
    let mut times = Vec::new();
    for (answer, took) in created {
        volumes.push(answer.unwrap().into_inner().volume.unwrap());
        times.push(took);
    }
    eprintln!(
        "50 parallel directory creates: wall {wall:?}, median {:?}",
        quantile(times, 0.5)
    );
    let top = pool_top(&driver, &addresses(&driver)[0]);
    assert_eq!(top.len(), 50, "{top:?}");
    let started = Instant::now();
    let deletes = volumes.iter().map(|volume| {
        let mut controller = driver.controller();
        let request = delete_volume_request(volume);
        async move { controller.delete_volume(request).await }
    });
    for answer in futures_util::future::join_all(deletes).await {
        answer.unwrap();
    }
    eprintln!(
        "50 parallel directory deletes: wall {:?}",
        started.elapsed()
    );
    // On every brick: a directory renamed away right after it was made
    // could stay behind on one of them (see mount/pool.rs); deleted in
    // place, none does.
    for address in addresses(&driver) {
        assert_eq!(
            pool_top(&driver, &address),
            Vec::<String>::new(),
            "{address}"
        );
    }
    // One pool, and no volume of its own per PVC.
    assert_eq!(driver.volume_names(), [pool(&driver)]);
}

/// Pools that are not the driver's, directories it did not make, and
/// pools that do not exist: clear errors, and nothing touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_pools_and_directories_are_refused() {
    let driver = start().await;
    let addresses = addresses(&driver);
    let mut create = vec!["volume", "create", "theirs", "replica", "3"];
    let bricks: Vec<String> = addresses
        .iter()
        .map(|a| format!("{a}:{}", driver.brick_dir(a, "theirs").display()))
        .collect();
    create.extend(bricks.iter().map(String::as_str));
    create.push("force");
    driver.gluster(&create);
    driver.gluster(&["volume", "start", "theirs"]);
    let theirs = |driver: &DevDriver| -> Vec<String> {
        std::fs::read_dir(driver.brick_dir(&addresses[0], "theirs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".glusterfs"))
            .collect()
    };

    let name = pvc_name();
    let refused = driver
        .controller()
        .create_volume(pool_request(&name, "theirs", 16 * MIB))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("user.csi.pool"),
        "{}",
        refused.message()
    );
    assert!(theirs(&driver).is_empty());

    let bad = driver
        .controller()
        .create_volume(pool_request(&name, "csi-pvc-1", 16 * MIB))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("parameters.pool"),
        "{}",
        bad.message()
    );

    let id = format!("theirs/csi-{name}");
    let delete = driver
        .controller()
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition);

    // Adopted by the operator, with a directory of theirs under a name the
    // driver would use: never taken, never deleted.
    driver.gluster(&["volume", "set", "theirs", "user.csi.pool", "adopted"]);
    let mine = driver.kubelet.path().join("theirs-mount");
    std::fs::create_dir_all(&mine).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "glusterfs"])
        .arg(format!("{}:/theirs", addresses[0]))
        .arg(&mine)
        .status()
        .unwrap();
    assert!(mounted.success());
    let unmount = UnmountOnDrop(mine.clone());
    std::fs::create_dir(mine.join(format!("csi-{name}"))).unwrap();
    std::fs::write(mine.join(format!("csi-{name}")).join("data"), b"theirs").unwrap();
    let taken = driver
        .controller()
        .create_volume(pool_request(&name, "theirs", 16 * MIB))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let delete = driver
        .controller()
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::FailedPrecondition, "{delete:?}");
    assert_eq!(
        std::fs::read(mine.join(format!("csi-{name}")).join("data")).unwrap(),
        b"theirs"
    );
    // In an adopted pool, the driver's own directories work.
    let other = pvc_name();
    let volume = driver
        .controller()
        .create_volume(pool_request(&other, "theirs", 16 * MIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(volume.volume_id, format!("theirs/csi-{other}"));
    driver
        .controller()
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
    drop(unmount);

    // A pool that does not exist: nothing to find, nothing to grow.
    let missing = "nopool/csi-pvc-1".to_string();
    let get = driver
        .controller()
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::NotFound);
    let expand = driver
        .controller()
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: missing.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: 32 * MIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(expand.code(), Code::NotFound);
    let mut context = std::collections::HashMap::new();
    context.insert("volume".to_string(), missing.clone());
    context.insert("server".to_string(), addresses[0].clone());
    let stage = driver
        .node()
        .node_stage_volume(NodeStageVolumeRequest {
            volume_id: missing.clone(),
            staging_target_path: driver.staging_path("nopool").to_string_lossy().into_owned(),
            volume_capability: Some(mount_capability(
                volume_capability::access_mode::Mode::MultiNodeMultiWriter,
            )),
            volume_context: context,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(stage.code(), Code::NotFound, "{stage:?}");
    assert!(stage.message().contains("nopool"), "{}", stage.message());
}

/// The controller's FUSE client of a pool dies (OOM, a crash): the next
/// call finds its mount dead and mounts the pool again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_pool_mount_is_mounted_again() {
    let driver = start().await;
    let first = create_in_pool(&driver, &pvc_name(), 16 * MIB).await;
    let mount = driver.cluster.state_dir.join("pools").join(pool(&driver));
    let client = pods::fuse_client_of(&mount).expect("the pool's FUSE client");
    sigkill(client);
    wait_until(std::time::Duration::from_secs(10), || {
        std::fs::read_dir(&mount).is_err()
    });
    let second = create_in_pool(&driver, &pvc_name(), 16 * MIB).await;
    assert!(
        driver
            .log()
            .contains("pool mount is dead (ENOTCONN); mounting it again")
    );
    assert!(pods::fuse_client_of(&mount).is_some_and(|pid| pid != client));
    for volume in [&first, &second] {
        driver
            .controller()
            .delete_volume(delete_volume_request(volume))
            .await
            .unwrap();
    }
    for address in addresses(&driver) {
        assert_eq!(
            pool_top(&driver, &address),
            Vec::<String>::new(),
            "{address}"
        );
    }
}
