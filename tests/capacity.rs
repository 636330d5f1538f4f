//! Sizes on a real 3-server cluster (`glusterfs-csi dev`): the provisioned
//! size is a gluster quota hard limit that writers hit with EDQUOT, mounts
//! report it, and ControllerExpandVolume raises it under a live mount.
//! Needs root, glusterfs-server and /dev/fuse (see README).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use glusterfs_csi::proto::csi::*;
use tonic::Code;

const MIB: u64 = 1 << 20;

/// Most a writer gets past the hard limit before EDQUOT, with the
/// `features.soft-timeout`/`hard-timeout` 0 the driver sets: measured under
/// 1 MiB on 10 and 100 MiB volumes (docs/storageclass.md).
const OVERSHOOT_BOUND: u64 = 2 * MIB;

fn expand_request(volume: &Volume, required: u64, limit: u64) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: volume.volume_id.clone(),
        capacity_range: Some(CapacityRange {
            required_bytes: required as i64,
            limit_bytes: limit as i64,
        }),
        ..Default::default()
    }
}

/// Size of the file system at `path` as statvfs (df) reports it.
fn statvfs_bytes(path: &Path) -> u64 {
    let stat = nix::sys::statvfs::statvfs(path).unwrap();
    stat.blocks() * stat.fragment_size()
}

/// Writes `total` bytes in 1 MiB writes then fsyncs; the bytes the file
/// holds afterwards, and the error that stopped the writer, if any.
async fn write_file(path: PathBuf, total: u64) -> (u64, Option<std::io::Error>) {
    tokio::task::spawn_blocking(move || {
        let result = (|| {
            let mut file = std::fs::File::create(&path)?;
            let chunk = vec![0x5a_u8; MIB as usize];
            for _ in 0..total / MIB {
                file.write_all(&chunk)?;
            }
            file.sync_all()
        })();
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        (size, result.err())
    })
    .await
    .unwrap()
}

/// The mount at `path` and the FUSE connection under it (a remount
/// changes both).
fn mount_id(path: &Path) -> (u64, String) {
    let mounts = mounts_at(path);
    assert_eq!(mounts.len(), 1, "{path:?}: {mounts:?}");
    (mounts[0].id, mounts[0].device.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_is_enforced_and_grows_under_a_live_mount() {
    let driver = DevDriver::start().await;
    let (mut controller, mut node) = (driver.controller(), driver.node());
    let name = pvc_name();
    let mut request = create_request(&name, &[]);
    request.capacity_range = Some(CapacityRange {
        required_bytes: (10 * MIB) as i64,
        limit_bytes: 0,
    });
    let started = Instant::now();
    let volume = controller
        .create_volume(request.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    println!("CreateVolume with quota: {:?}", started.elapsed());
    assert_eq!(volume.capacity_bytes, (10 * MIB) as i64);
    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-1", &name);
    stage_and_publish(&mut node, &volume, &staging, &target).await;
    let mount = mount_id(&target);

    // The pod sees the size, not the brick disk.
    assert_eq!(statvfs_bytes(&target), 10 * MIB);
    let stats = volume_stats(&mut node, &volume, &target).await;
    assert_eq!(stats.usage[0].total, (10 * MIB) as i64);

    // 50 MiB into 10: EDQUOT, after at most the documented overshoot.
    let (held, error) = write_file(target.join("big"), 50 * MIB).await;
    let error = error.expect("a 50 MiB write into a 10 MiB volume must fail");
    assert_eq!(
        error.raw_os_error(),
        Some(nix::libc::EDQUOT),
        "{error} after {held} bytes"
    );
    println!(
        "overshoot: {} KiB past the 10 MiB limit",
        held.saturating_sub(10 * MIB) / 1024
    );
    assert!(
        held <= 10 * MIB + OVERSHOOT_BOUND,
        "{held} bytes written into a 10 MiB volume"
    );
    std::fs::remove_file(target.join("big")).unwrap();

    // Online expansion, twice: the same mount sees 100 MiB at once.
    let started = Instant::now();
    for _ in 0..2 {
        let expanded = controller
            .controller_expand_volume(expand_request(&volume, 100 * MIB, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(expanded.capacity_bytes, (100 * MIB) as i64);
        assert!(!expanded.node_expansion_required);
    }
    println!("ControllerExpandVolume x2: {:?}", started.elapsed());
    assert_eq!(statvfs_bytes(&target), 100 * MIB);
    assert_eq!(mount_id(&target), mount, "no remount");
    let (held, error) = write_file(target.join("big"), 50 * MIB).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(held, 50 * MIB);

    // Never smaller: a limit below the size is OUT_OF_RANGE; a smaller
    // required size is already met (the spec's "SHOULD reply 0 OK").
    let err = controller
        .controller_expand_volume(expand_request(&volume, 10 * MIB, 10 * MIB))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let same = controller
        .controller_expand_volume(expand_request(&volume, 10 * MIB, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.capacity_bytes, (100 * MIB) as i64);
    assert_eq!(statvfs_bytes(&target), 100 * MIB);

    // The record follows: ListVolumes, and a CreateVolume retry with the
    // old size, report the new one.
    let listed = controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let entry = listed
        .entries
        .iter()
        .filter_map(|e| e.volume.as_ref())
        .find(|v| v.volume_id == volume.volume_id)
        .unwrap();
    assert_eq!(entry.capacity_bytes, (100 * MIB) as i64);
    let retried = controller
        .create_volume(request)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(retried.capacity_bytes, (100 * MIB) as i64);

    // One operation per volume at a time: a DeleteVolume of the mounted
    // volume waits a few seconds for its clients before refusing; an
    // expansion meanwhile is ABORTED (the CO retries it).
    let mut deleter = driver.controller();
    let delete = tokio::spawn({
        let request = delete_volume_request(&volume);
        async move { deleter.delete_volume(request).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let err = controller
        .controller_expand_volume(expand_request(&volume, 200 * MIB, 0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    let refused = delete.await.unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(statvfs_bytes(&target), 100 * MIB);

    // Missing volumes.
    let mut missing = expand_request(&volume, 100 * MIB, 0);
    missing.volume_id = format!("csi-{}", pvc_name());
    let err = controller
        .controller_expand_volume(missing)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    unpublish_and_unstage(&mut node, &volume, &staging, &target).await;
    for _ in 0..2 {
        controller
            .delete_volume(delete_volume_request(&volume))
            .await
            .unwrap();
    }
    assert!(driver.volume_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_off_records_sizes_only() {
    let driver = DevDriver::start().await;
    let (mut controller, mut node) = (driver.controller(), driver.node());
    let name = pvc_name();
    let mut request = create_request(&name, &[("enforceCapacity", "false")]);
    request.capacity_range = Some(CapacityRange {
        required_bytes: (10 * MIB) as i64,
        limit_bytes: 0,
    });
    let volume = controller
        .create_volume(request)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-1", &name);
    stage_and_publish(&mut node, &volume, &staging, &target).await;
    // The brick disk shows through; a write past the size succeeds.
    assert!(statvfs_bytes(&target) > 100 * MIB);
    let (held, error) = write_file(target.join("big"), 20 * MIB).await;
    assert!(error.is_none() && held == 20 * MIB, "{error:?}");
    let expanded = controller
        .controller_expand_volume(expand_request(&volume, 30 * MIB, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expanded.capacity_bytes, (30 * MIB) as i64);
    let info = driver.gluster(&["volume", "info", &volume.volume_id]);
    assert!(info.contains("<value>31457280</value>"), "{info}");
    assert!(!info.contains("<name>features.quota</name>"), "{info}");

    // Wrong parameter values are refused naming the parameter.
    let err = controller
        .create_volume(create_request(&pvc_name(), &[("enforceCapacity", "no")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("parameters.enforceCapacity: "),
        "{}",
        err.message()
    );

    unpublish_and_unstage(&mut node, &volume, &staging, &target).await;
    controller
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
}
