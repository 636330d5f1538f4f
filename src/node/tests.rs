//! Node logic against an in-memory mount table: idempotency read from the
//! table, conflicts, and dead FUSE clients.

use std::sync::Arc;

use tonic::Code;

use super::*;
use crate::fakes::{FakeLookup, FakeMounter, RefusingMounter};

struct Fixture {
    node: NodeVolumes,
    mounter: Arc<FakeMounter>,
    dir: tempfile::TempDir,
}

fn config(dir: &Path) -> NodeConfig {
    NodeConfig {
        node_id: "n1".into(),
        mount_log_dir: None,
        state_dir: dir.join("state"),
        shared_pool_dir: dir.join("pool-mounts"),
    }
}

fn fixture() -> Fixture {
    let mounter = Arc::new(FakeMounter::default());
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        node: NodeVolumes::new(
            mounter.clone(),
            Arc::new(FakeLookup::default()),
            config(dir.path()),
        )
        .unwrap(),
        mounter,
        dir,
    }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stage_request(&self, volume: &str, read_only: bool) -> StageRequest {
        let options = MountOptions::default();
        StageRequest {
            volume_id: volume.to_string(),
            staging_path: self.path("staging"),
            context: VolumeContext::new(volume, &["a".into(), "b".into(), "c".into()], vec![])
                .unwrap(),
            options: if read_only {
                options.with_read_only()
            } else {
                options
            },
        }
    }

    /// Stages `volume` read-write, which must succeed.
    async fn stage(&self, volume: &str) {
        self.node
            .stage(&self.stage_request(volume, false))
            .await
            .unwrap();
    }

    /// Publishes the staged volume read-write at `target`, which must succeed.
    async fn publish(&self, target: &str) {
        self.node
            .publish(&self.publish_request(target, false))
            .await
            .unwrap();
    }

    fn publish_request(&self, target: &str, read_only: bool) -> PublishRequest {
        PublishRequest {
            volume_id: "csi-pvc-1".into(),
            staging_path: self.path("staging"),
            target_path: self.path(target),
            read_only,
            single_writer: false,
        }
    }
}

#[tokio::test]
async fn stage_and_publish_twice_mount_once() {
    let f = fixture();
    for _ in 0..2 {
        f.stage("csi-pvc-1").await;
        f.publish("target").await;
    }
    let calls = f.mounter.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].starts_with("mount a:/csi-pvc-1"));
    assert!(calls[1].starts_with("bind"));
    for _ in 0..2 {
        f.node
            .unpublish("csi-pvc-1", &f.path("target"))
            .await
            .unwrap();
        f.node
            .unstage("csi-pvc-1", &f.path("staging"))
            .await
            .unwrap();
    }
    assert!(!f.path("target").exists(), "target removed");
    assert_eq!(f.mounter.calls().len(), 4, "one unmount each");
}

#[tokio::test]
async fn staging_path_taken_by_another_volume_or_mode() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    for other in [
        f.stage_request("csi-pvc-2", false),
        f.stage_request("csi-pvc-1", true),
    ] {
        let err = f.node.stage(&other).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    }
    let g = fixture();
    std::fs::create_dir_all(g.path("staging")).unwrap();
    g.mounter.mount_foreign(&g.path("staging"));
    let err = g
        .node
        .stage(&g.stage_request("csi-pvc-1", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn publish_needs_a_staged_volume_and_a_free_target() {
    let f = fixture();
    let err = f
        .node
        .publish(&f.publish_request("target", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    f.stage("csi-pvc-1").await;
    f.node
        .publish(&f.publish_request("target", true))
        .await
        .unwrap();
    let err = f
        .node
        .publish(&f.publish_request("target", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "read-only vs read-write");
    std::fs::create_dir_all(f.path("taken")).unwrap();
    f.mounter.mount_foreign(&f.path("taken"));
    let err = f
        .node
        .publish(&f.publish_request("taken", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn dead_client_is_reported_and_healed_by_staging_again() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    f.publish("target").await;
    f.mounter.kill_client(&f.path("staging"));
    match f.node.stats("csi-pvc-1", &f.path("target")).await.unwrap() {
        VolumeHealth::Abnormal(message) => assert!(message.contains("not connected"), "{message}"),
        VolumeHealth::Healthy(_) | VolumeHealth::Degraded(..) => {
            panic!("a dead mount has no usage")
        }
    }
    f.stage("csi-pvc-1").await;
    // The target was put back by the heal: publishing again changes nothing.
    f.publish("target").await;
    assert!(matches!(
        f.node.stats("csi-pvc-1", &f.path("target")).await.unwrap(),
        VolumeHealth::Healthy(_)
    ));
    let calls = f.mounter.calls();
    let after_kill: Vec<&str> = calls[2..]
        .iter()
        .map(|c| c.split(' ').next().unwrap())
        .collect();
    assert_eq!(after_kill, ["unmount", "mount", "replace"], "{calls:?}");
}

#[tokio::test]
async fn publish_heals_a_dead_staging_mount_before_binding() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    f.publish("first").await;
    f.mounter.kill_client(&f.path("staging"));
    f.publish("second").await;
    for target in ["first", "second"] {
        assert!(
            matches!(
                f.node.stats("csi-pvc-1", &f.path(target)).await.unwrap(),
                VolumeHealth::Healthy(_)
            ),
            "{target} serves the fresh mount"
        );
    }
    let calls = f.mounter.calls();
    let kinds: Vec<&str> = calls[2..]
        .iter()
        .map(|c| c.split(' ').next().unwrap())
        .collect();
    assert_eq!(kinds, ["unmount", "mount", "replace", "bind"], "{calls:?}");
}

#[tokio::test]
async fn a_heal_that_cannot_mount_again_is_finished_later_even_after_a_restart() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    f.publish("target").await;
    f.mounter.kill_client(&f.path("staging"));
    f.mounter.fail_next_mounts(1);
    let err = f.node.heal(&f.path("staging")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // The dead mount is gone, what is left to replace is on record.
    assert!(f.node.top_mount(&f.path("staging")).unwrap().is_none());
    assert_eq!(f.node.staged.get(&f.path("staging")).unwrap().dead.len(), 1);
    let restarted = NodeVolumes::new(
        f.mounter.clone(),
        Arc::new(FakeLookup::default()),
        config(f.dir.path()),
    )
    .unwrap();
    assert_eq!(
        restarted.staged_count(),
        1,
        "kept though nothing is mounted"
    );
    let report = restarted
        .heal(&f.path("staging"))
        .await
        .unwrap()
        .expect("healed");
    assert_eq!(report.repair.replaced.len(), 1, "{report:?}");
    assert!(matches!(
        restarted
            .stats("csi-pvc-1", &f.path("target"))
            .await
            .unwrap(),
        VolumeHealth::Healthy(_)
    ));
    assert!(
        restarted
            .staged
            .get(&f.path("staging"))
            .unwrap()
            .dead
            .is_empty()
    );
    assert!(restarted.heal(&f.path("staging")).await.unwrap().is_none());
}

#[tokio::test]
async fn only_this_volumes_mounts_are_ever_unmounted() {
    let f = fixture();
    for path in ["staging", "target"] {
        std::fs::create_dir_all(f.path(path)).unwrap();
        f.mounter.mount_foreign(&f.path(path));
    }
    f.node
        .unpublish("csi-pvc-1", &f.path("target"))
        .await
        .unwrap();
    f.node
        .unstage("csi-pvc-1", &f.path("staging"))
        .await
        .unwrap();
    assert!(f.mounter.calls().is_empty(), "{:?}", f.mounter.calls());
    assert!(
        f.path("target").is_dir(),
        "a foreign mount point is not removed"
    );
    // A static PV's id: its staging record says which volume is its own.
    let g = fixture();
    let mut request = g.stage_request("shared", false);
    request.volume_id = "my-static-pv".into();
    g.node.stage(&request).await.unwrap();
    g.node
        .unstage("another-static-pv", &g.path("staging"))
        .await
        .unwrap();
    let unmounts = |g: &Fixture| {
        g.mounter
            .calls()
            .iter()
            .filter(|c| c.starts_with("unmount"))
            .count()
    };
    assert_eq!(unmounts(&g), 0, "another id's mount is left");
    g.node
        .unstage("my-static-pv", &g.path("staging"))
        .await
        .unwrap();
    assert_eq!(unmounts(&g), 1);
}

#[tokio::test]
async fn a_dead_mount_without_a_staging_record_is_never_bound() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    // As if staged by a plugin that kept no records.
    f.node.staged.remove(&f.path("staging")).unwrap();
    f.mounter.kill_client(&f.path("staging"));
    let err = f
        .node
        .publish(&f.publish_request("target", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("NodeStageVolume again"), "{err}");
    assert!(!f.mounter.calls().iter().any(|c| c.starts_with("bind")));
}

#[tokio::test]
async fn staging_records_follow_the_mounts_across_restarts() {
    let f = fixture();
    f.node
        .stage(&f.stage_request("csi-pvc-1", true))
        .await
        .unwrap();
    let record = f.node.staged.get(&f.path("staging")).unwrap();
    assert_eq!(record.volume_id, "csi-pvc-1");
    assert!(record.request().unwrap().options.read_only());
    // A restarted plugin adopts what is still mounted...
    let restarted = NodeVolumes::new(
        f.mounter.clone(),
        Arc::new(FakeLookup::default()),
        config(f.dir.path()),
    )
    .unwrap();
    assert_eq!(restarted.staged_count(), 1);
    // ...and forgets what is not (the node rebooted, say).
    f.mounter.unmount(&f.path("staging")).await.unwrap();
    let rebooted = NodeVolumes::new(
        f.mounter.clone(),
        Arc::new(FakeLookup::default()),
        config(f.dir.path()),
    )
    .unwrap();
    assert_eq!(rebooted.staged_count(), 0);
    // Unstaging removes the record with the mount.
    rebooted
        .stage(&f.stage_request("csi-pvc-1", false))
        .await
        .unwrap();
    assert_eq!(rebooted.staged_count(), 1);
    rebooted
        .unstage("csi-pvc-1", &f.path("staging"))
        .await
        .unwrap();
    assert_eq!(rebooted.staged_count(), 0);
}

#[tokio::test]
async fn stats_only_for_the_volume_mounted_there() {
    let f = fixture();
    let err = f
        .node
        .stats("csi-pvc-1", &f.path("nowhere"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    f.stage("csi-pvc-1").await;
    f.publish("target").await;
    let err = f
        .node
        .stats("csi-pvc-2", &f.path("target"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another volume's id");
    std::fs::create_dir_all(f.path("plain")).unwrap();
    let err = f
        .node
        .stats("csi-pvc-1", &f.path("plain"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "not a mount");
    match f.node.stats("csi-pvc-1", &f.path("target")).await.unwrap() {
        VolumeHealth::Healthy(usage) => assert_eq!(usage.used_bytes, 40),
        VolumeHealth::Degraded(_, m) | VolumeHealth::Abnormal(m) => panic!("{m}"),
    }
}

fn link(index: u32, connected: bool) -> BrickLink {
    BrickLink {
        index,
        host: format!("10.0.0.{}", index + 1),
        path: format!("/bricks/b{index}"),
        connected,
    }
}

#[tokio::test]
async fn stats_name_the_bricks_this_nodes_client_misses() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    f.publish("target").await;
    let target = f.path("target");
    let stats = || f.node.stats("csi-pvc-1", &target);
    // No meta translator to ask: today's answer.
    assert!(matches!(stats().await.unwrap(), VolumeHealth::Healthy(_)));
    f.mounter
        .set_brick_links(Some(vec![link(0, true), link(1, true), link(2, true)]));
    assert!(matches!(stats().await.unwrap(), VolumeHealth::Healthy(_)));

    f.mounter
        .set_brick_links(Some(vec![link(0, true), link(1, false), link(2, true)]));
    match stats().await.unwrap() {
        VolumeHealth::Degraded(usage, message) => {
            assert_eq!(usage.used_bytes, 40, "usage still reported");
            assert_eq!(
                message,
                "this node's gluster client is not connected to brick 10.0.0.2:/bricks/b1 \
                 (1 of 3); data is served by the others; see \
                 docs/troubleshooting.md#volume-health"
            );
        }
        other => panic!("{other:?}"),
    }
    f.mounter
        .set_brick_links(Some(vec![link(0, false), link(1, false), link(2, false)]));
    match stats().await.unwrap() {
        VolumeHealth::Degraded(_, message) => assert!(
            message.contains(
                "bricks 10.0.0.1:/bricks/b0, 10.0.0.2:/bricks/b1, 10.0.0.3:/bricks/b2 \
                 (3 of 3); no brick answers this node"
            ),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unpublish_and_unstage_of_nothing_succeed() {
    let f = fixture();
    f.node
        .unpublish("csi-pvc-1", &f.path("never"))
        .await
        .unwrap();
    f.node.unstage("csi-pvc-1", &f.path("never")).await.unwrap();
    std::fs::create_dir_all(f.path("data")).unwrap();
    std::fs::write(f.path("data/keep"), "x").unwrap();
    f.node
        .unpublish("csi-pvc-1", &f.path("data"))
        .await
        .unwrap();
    assert!(f.path("data/keep").exists(), "never removes content");
    assert!(f.mounter.calls().is_empty());
}

#[test]
fn gluster_default_client_log_name() {
    // As mount.glusterfs named it for a mount at /tmp/tb/m/stage.
    assert_eq!(
        default_client_log(Path::new("/tmp/tb/m/stage")),
        PathBuf::from("/var/log/glusterfs/tmp-tb-m-stage.log")
    );
}

#[tokio::test]
async fn another_volumes_mount_is_left_alone() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    f.publish("target").await;
    f.node
        .unpublish("csi-pvc-2", &f.path("target"))
        .await
        .unwrap();
    f.node
        .unstage("csi-pvc-2", &f.path("staging"))
        .await
        .unwrap();
    assert!(f.mounter.calls().iter().all(|c| !c.starts_with("unmount")));
    // A static PV's id names no volume: the CO's path is trusted.
    f.node
        .unpublish("static-pv-7", &f.path("target"))
        .await
        .unwrap();
    assert!(!f.path("target").exists());
}

#[tokio::test]
async fn single_writer_volumes_publish_once() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    let exclusive = |target: &str| PublishRequest {
        single_writer: true,
        ..f.publish_request(target, false)
    };
    f.node.publish(&exclusive("one")).await.unwrap();
    f.node.publish(&exclusive("one")).await.unwrap();
    let err = f.node.publish(&exclusive("two")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    f.node.unpublish("csi-pvc-1", &f.path("one")).await.unwrap();
    f.node.publish(&exclusive("two")).await.unwrap();
}

#[tokio::test]
async fn failed_mounts_of_missing_or_stopped_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let lookup = Arc::new(FakeLookup::default());
    let node = NodeVolumes::new(
        Arc::new(RefusingMounter),
        lookup.clone(),
        config(dir.path()),
    )
    .unwrap();
    let request = |volume: &str| StageRequest {
        volume_id: volume.to_string(),
        staging_path: dir.path().join("staging"),
        context: VolumeContext::new(volume, &["a".into()], vec![]).unwrap(),
        options: MountOptions::default(),
    };
    let err = node.stage(&request("gone")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    lookup.set("stopped", VolumeStatus::Stopped);
    let err = node.stage(&request("stopped")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    lookup.set("running", VolumeStatus::Started);
    let err = node.stage(&request("running")).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "the mount error stands: {err}");
    assert!(
        node.staged.all().is_empty(),
        "no record is left for a failed stage"
    );
}

#[test]
fn failed_mount_messages_carry_the_client_log_errors() {
    for c in &crate::gluster::CAPTURES {
        // Written by the client for a mount of a volume glusterd lacks.
        let log = c.path("client_log_missing_volume.log");
        let message = with_client_errors("Mount failed.".into(), &log);
        assert!(
            message.starts_with("Mount failed.; client log: "),
            "{}: {message}",
            c.release
        );
        assert!(
            message.contains("failed to fetch volume file (key:/no-such-volume)"),
            "{}: {message}",
            c.release
        );
        assert!(
            !message.contains(" I ["),
            "{}: only error lines: {message}",
            c.release
        );
    }
    let missing = with_client_errors("Mount failed.".into(), Path::new("/nonexistent.log"));
    assert_eq!(missing, "Mount failed.");
}

#[test]
fn refusals_by_the_volumes_isolation_are_explained() {
    for c in &crate::gluster::CAPTURES {
        // A client whose address auth.allow does not list, and one with TLS
        // on and no certificate at ssl.own-cert.
        let refused = with_client_errors(
            "Mount failed.".into(),
            &c.path("client_log_auth_failed.log"),
        );
        assert!(
            refused.starts_with(
                "Mount failed. (the servers refused this client: its address is not in"
            ),
            "{}: {refused}",
            c.release
        );
        let no_cert = with_client_errors(
            "Mount failed.".into(),
            &c.path("client_log_no_certificate.log"),
        );
        assert!(
            no_cert.starts_with("Mount failed. (this node has no TLS certificate"),
            "{}: {no_cert}",
            c.release
        );
        let missing = with_client_errors(
            "Mount failed.".into(),
            &c.path("client_log_missing_volume.log"),
        );
        assert!(
            missing.starts_with("Mount failed.; client log: "),
            "{}: no hint for other failures: {missing}",
            c.release
        );
    }
}

#[tokio::test]
async fn a_mount_that_reports_success_but_is_not_there_fails_the_stage() {
    let mounter = Arc::new(FakeMounter::default());
    let dir = tempfile::tempdir().unwrap();
    let node = NodeVolumes::new(
        mounter.clone(),
        Arc::new(FakeLookup::default()),
        NodeConfig {
            mount_log_dir: Some(dir.path().join("logs")),
            ..config(dir.path())
        },
    )
    .unwrap();
    let staging = dir.path().join("staging");
    // Written by glusterfs 10.3 for a client auth.allow refused just after
    // mount.glusterfs had exited 0.
    let log = mount_log_file(&dir.path().join("logs"), "csi-pvc-1", &staging);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gluster/client_log_auth_failed.log"),
        &log,
    )
    .unwrap();
    mounter.vanish_next_mounts(1);
    let request = StageRequest {
        volume_id: "csi-pvc-1".into(),
        staging_path: staging.clone(),
        context: VolumeContext::new("csi-pvc-1", &["a".into()], vec![]).unwrap(),
        options: MountOptions::default(),
    };
    let err = node.stage(&request).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("reported success, but no live mount"),
        "{text}"
    );
    assert!(text.contains("Authentication failed"), "{text}");
    assert!(node.staged.all().is_empty(), "no record of a failed stage");
    node.stage(&request).await.unwrap();
    assert_eq!(
        node.top_mount(&staging).unwrap().unwrap().fs_type,
        "fuse.glusterfs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_client_view_keeps_the_plain_answer_and_one_thread() {
    let f = fixture();
    f.stage("csi-pvc-1").await;
    f.publish("target").await;
    f.mounter
        .set_brick_links(Some(vec![link(0, false), link(1, true)]));
    let gate = f.mounter.gate_meta_reads();
    let hung = gate.lock().await;
    let started = std::time::Instant::now();
    for path in ["target", "staging", "target"] {
        assert!(
            matches!(
                f.node.stats("csi-pvc-1", &f.path(path)).await.unwrap(),
                VolumeHealth::Healthy(_)
            ),
            "{path}"
        );
    }
    assert!(
        started.elapsed() < CLIENT_VIEW_LIMIT * 2,
        "one wait, not three"
    );
    assert_eq!(f.mounter.meta_reads(), 1, "one blocked read per client");
    drop(hung);
    let answered = std::time::Instant::now();
    loop {
        if let VolumeHealth::Degraded(_, message) =
            f.node.stats("csi-pvc-1", &f.path("target")).await.unwrap()
        {
            assert!(message.contains("(1 of 2)"), "{message}");
            break;
        }
        assert!(
            answered.elapsed() < CLIENT_VIEW_LIMIT,
            "the client answers again"
        );
        tokio::task::yield_now().await;
    }
}

/// Shared pool mounts: a request for `pool/<directory>` staged at
/// `staging-<directory>`.
fn shared_request(f: &Fixture, directory: &str, read_only: bool) -> StageRequest {
    let volume = format!("pool/{directory}");
    let options = MountOptions::parse(["acl"]).unwrap();
    StageRequest {
        volume_id: volume.clone(),
        staging_path: f.path(&format!("staging-{directory}")),
        context: VolumeContext::new(&volume, &["a".into(), "b".into()], vec![])
            .unwrap()
            .with_shared_pool_mount(true),
        options: if read_only {
            options.with_read_only()
        } else {
            options
        },
    }
}

/// The pool mount's path, with the directories of the pool made on disk
/// (the fake mounter mounts nothing: binds need them to exist).
fn pool_with(f: &Fixture, directories: &[&str]) -> PathBuf {
    let pool = shared::PoolMount::of(
        &f.dir.path().join("pool-mounts"),
        &shared_request(f, "x", false),
    )
    .unwrap();
    for directory in directories {
        std::fs::create_dir_all(pool.path.join(directory)).unwrap();
    }
    pool.path
}

fn mounts_of(f: &Fixture, path: &Path) -> Vec<MountEntry> {
    f.mounter
        .mount_table()
        .unwrap()
        .into_iter()
        .filter(|m| m.mount_point == path)
        .collect()
}

#[tokio::test]
async fn shared_pool_mount_serves_two_directories_and_goes_with_the_last_unstage() {
    let f = fixture();
    let pool = pool_with(&f, &["csi-a", "csi-b"]);
    let (a, b) = (
        shared_request(&f, "csi-a", false),
        shared_request(&f, "csi-b", false),
    );
    for request in [&a, &b, &a] {
        f.node.stage(request).await.unwrap();
    }
    let calls = f.mounter.calls();
    let mounts: Vec<&String> = calls.iter().filter(|c| c.starts_with("mount")).collect();
    assert_eq!(mounts, [&format!("mount a:/pool {}", pool.display())]);
    let pool_mount = mounts_of(&f, &pool).remove(0);
    for (request, root) in [(&a, "/csi-a"), (&b, "/csi-b")] {
        let staged = mounts_of(&f, &request.staging_path).remove(0);
        assert_eq!(staged.device, pool_mount.device);
        assert_eq!(staged.root, Path::new(root));
        assert_eq!(staged.gluster_path(), Some(request.context.volume.clone()));
    }
    // Options other than ro change the pool mount; ro does not.
    let mut other = shared_request(&f, "csi-a", true);
    assert_eq!(f.node.pool_mount_of(&other).unwrap().path, pool);
    other.options = MountOptions::parse(["noatime"]).unwrap();
    assert_ne!(f.node.pool_mount_of(&other).unwrap().path, pool);

    // Publish and stats go through the bind.
    let target = f.path("target-a");
    f.node
        .publish(&PublishRequest {
            volume_id: a.volume_id.clone(),
            staging_path: a.staging_path.clone(),
            target_path: target.clone(),
            read_only: false,
            single_writer: true,
        })
        .await
        .unwrap();
    assert_eq!(mounts_of(&f, &target)[0].root, Path::new("/csi-a"));
    assert!(matches!(
        f.node.stats(&a.volume_id, &target).await.unwrap(),
        VolumeHealth::Healthy(_)
    ));
    // Another volume's id does not own this mount.
    assert_eq!(
        f.node
            .stats(&b.volume_id, &target)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    f.node.unpublish(&a.volume_id, &target).await.unwrap();

    f.node.unstage(&a.volume_id, &a.staging_path).await.unwrap();
    assert_eq!(mounts_of(&f, &pool).len(), 1, "b still uses the pool mount");
    // Unstaging a with b's staging path touches nothing.
    f.node.unstage(&a.volume_id, &b.staging_path).await.unwrap();
    assert_eq!(mounts_of(&f, &b.staging_path).len(), 1);
    f.node.unstage(&b.volume_id, &b.staging_path).await.unwrap();
    assert!(
        mounts_of(&f, &pool).is_empty(),
        "the last unstage releases it"
    );
    assert!(f.mounter.mount_table().unwrap().is_empty());
}

#[tokio::test]
async fn a_heal_of_one_volume_heals_the_pool_and_gives_each_mount_its_own_directory() {
    let f = fixture();
    let pool = pool_with(&f, &["csi-a", "csi-b"]);
    let (a, b) = (
        shared_request(&f, "csi-a", false),
        shared_request(&f, "csi-b", false),
    );
    f.node.stage(&a).await.unwrap();
    f.node.stage(&b).await.unwrap();
    let target = f.path("target-b");
    f.node
        .publish(&PublishRequest {
            volume_id: b.volume_id.clone(),
            staging_path: b.staging_path.clone(),
            target_path: target.clone(),
            read_only: false,
            single_writer: false,
        })
        .await
        .unwrap();
    let old = mounts_of(&f, &pool).remove(0).device;
    f.mounter.kill_client(&pool);
    assert_eq!(
        f.mounter.path_state(&a.staging_path),
        PathState::Disconnected
    );

    let report = f.node.heal(&a.staging_path).await.unwrap().unwrap();
    let fresh = mounts_of(&f, &pool).remove(0);
    assert_ne!(fresh.device, old);
    let mut replaced: Vec<PathBuf> = report
        .repair
        .replaced
        .iter()
        .map(|m| m.mount_point.clone())
        .collect();
    replaced.sort();
    // Replaced in place, this volume's staging path too: the pool is
    // healed before anything of it is unmounted.
    assert_eq!(
        replaced,
        [
            a.staging_path.clone(),
            b.staging_path.clone(),
            target.clone()
        ]
    );
    for (path, root) in [
        (&a.staging_path, "/csi-a"),
        (&b.staging_path, "/csi-b"),
        (&target, "/csi-b"),
    ] {
        let mount = mounts_of(&f, path).remove(0);
        assert_eq!(
            (mount.device.as_str(), mount.root.as_path()),
            (fresh.device.as_str(), Path::new(root))
        );
        assert_eq!(f.mounter.path_state(path), PathState::Present, "{path:?}");
    }
    let replace_calls: Vec<String> = f
        .mounter
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("replace"))
        .collect();
    assert!(
        replace_calls
            .iter()
            .all(|c| c.ends_with(&format!("with {}", pool.display()))),
        "clones come from the pool mount: {replace_calls:?}"
    );
    // b's heal finds nothing left to do.
    assert!(f.node.heal(&b.staging_path).await.unwrap().is_none());
}

#[tokio::test]
async fn shared_stage_refusals_release_the_pool_mount() {
    let f = fixture();
    let pool = pool_with(&f, &["csi-a"]);
    let missing = shared_request(&f, "csi-gone", false);
    let err = f.node.stage(&missing).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.to_string().contains("csi-gone"), "{err}");
    assert!(mounts_of(&f, &pool).is_empty(), "nothing left mounted");
    assert!(f.node.staged.get(&missing.staging_path).is_none());

    // Read-only: a read-only bind of a pool mounted read-write; staging
    // the same path read-write is then ALREADY_EXISTS.
    let ro = shared_request(&f, "csi-a", true);
    f.node.stage(&ro).await.unwrap();
    assert!(!mounts_of(&f, &pool)[0].is_read_only());
    assert!(mounts_of(&f, &ro.staging_path)[0].is_read_only());
    let rw = shared_request(&f, "csi-a", false);
    assert_eq!(
        f.node.stage(&rw).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    // A pool mount left by a plugin that died before binding: released.
    f.node
        .unstage(&ro.volume_id, &ro.staging_path)
        .await
        .unwrap();
    let source = GlusterSource {
        servers: vec!["a".into()],
        volume: "pool".into(),
    };
    f.mounter
        .mount_glusterfs(&source, &pool, &[])
        .await
        .unwrap();
    f.node.release_idle_pool_mounts().await;
    assert!(mounts_of(&f, &pool).is_empty());
}

#[tokio::test]
async fn parallel_shared_stages_mount_the_pool_once() {
    let f = Arc::new(fixture());
    let directories: Vec<String> = (0..12).map(|n| format!("csi-{n}")).collect();
    let names: Vec<&str> = directories.iter().map(String::as_str).collect();
    let pool = pool_with(&f, &names);
    let run = |unstage: bool| {
        let tasks: Vec<_> = directories
            .iter()
            .map(|d| {
                let (f, d) = (Arc::clone(&f), d.clone());
                tokio::spawn(async move {
                    let request = shared_request(&f, &d, false);
                    if unstage {
                        f.node
                            .unstage(&request.volume_id, &request.staging_path)
                            .await
                    } else {
                        f.node.stage(&request).await
                    }
                })
            })
            .collect();
        futures_util::future::join_all(tasks)
    };
    for result in run(false).await {
        result.unwrap().unwrap();
    }
    let mounts = f
        .mounter
        .calls()
        .iter()
        .filter(|c| c.starts_with("mount"))
        .count();
    assert_eq!(mounts, 1);
    assert_eq!(f.mounter.mount_table().unwrap().len(), 13);
    for result in run(true).await {
        result.unwrap().unwrap();
    }
    assert!(f.mounter.mount_table().unwrap().is_empty());
    assert!(mounts_of(&f, &pool).is_empty());
}
