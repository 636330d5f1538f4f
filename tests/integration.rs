//! Integration tests: the driver over its gRPC socket against a real
//! 3-server glusterd cluster (`glusterfs-csi dev`), with real FUSE mounts.
//! Needs root, glusterfs-server and /dev/fuse (see README).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use glusterfs_csi::bricks::trash::TRASH_DIR;
use glusterfs_csi::proto::csi::volume_capability::access_mode::Mode;
use glusterfs_csi::proto::csi::*;
use tonic::Code;

/// The provisioner's and kubelet's whole sequence, every call made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_replicates_data_and_leaves_nothing_behind() {
    let driver = DevDriver::start().await;
    // The start-up version report: the image's client and the pool's
    // op-version, read from the real CLI (10.3 here, 11.x in tests/gluster11.rs).
    wait_until(Duration::from_secs(20), || {
        driver.log().contains("gluster versions")
    });
    let report = driver
        .log()
        .lines()
        .find(|l| l.contains("gluster versions"))
        .unwrap()
        .to_string();
    let release = gluster_release().await;
    // A fresh pool runs at its release's op-version: 100000 for 10.x, 110000 for 11.x.
    assert!(
        report.contains(&format!("gluster_client={release} "))
            && report.contains(&format!("pool_op_version={}0000 ", release.major)),
        "{report}"
    );
    wait_until(Duration::from_secs(20), || {
        driver.log().contains("brick multiplexing is")
    });
    let multiplexing = format!("brick_multiplex={}", suite_multiplexes());
    assert!(
        driver
            .log()
            .lines()
            .any(|l| l.contains("brick multiplexing is") && l.contains(&multiplexing)),
        "{}",
        driver.log()
    );
    let (mut controller, mut node) = (driver.controller(), driver.node());
    let name = pvc_name();

    let request = create_request(&name, &[("replica", "3")]);
    let volume = controller
        .create_volume(request.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let again = controller
        .create_volume(request)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        volume, again,
        "a retried CreateVolume returns the same volume"
    );
    assert_eq!(volume.capacity_bytes, 1 << 30);
    let id = volume.volume_id.clone();
    assert_eq!(id, format!("csi-{name}"));
    let ctx = &volume.volume_context;
    assert_eq!(ctx["volume"], id);
    let backups: Vec<&str> = ctx["backupServers"].split(',').collect();
    assert_eq!(backups.len(), 2);
    assert!(
        !backups.contains(&ctx["server"].as_str()),
        "primary never repeated: {ctx:?}"
    );

    let info = driver.gluster(&["volume", "info", &id]);
    assert!(info.contains("<statusStr>Started</statusStr>"), "{info}");
    assert!(info.contains("<replicaCount>3</replicaCount>"));
    assert!(
        info.contains(&format!("<value>{name}</value>")),
        "marked as ours: {info}"
    );

    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-1", &name);
    for _ in 0..2 {
        node.node_stage_volume(stage_request(&volume, &staging))
            .await
            .unwrap();
    }
    assert_eq!(mounts_at(&staging).len(), 1, "staging twice mounts once");
    assert_eq!(mounts_at(&staging)[0].fs_type, "fuse.glusterfs");
    for _ in 0..2 {
        node.node_publish_volume(publish_request(&volume, &staging, &target, false))
            .await
            .unwrap();
    }
    assert_eq!(mounts_at(&target).len(), 1, "publishing twice binds once");

    std::fs::write(target.join("hello.txt"), b"replicated").unwrap();
    for server in driver.cluster.addresses() {
        let on_brick = driver.brick_dir(&server, &id).join("hello.txt");
        assert_eq!(
            std::fs::read(&on_brick).unwrap(),
            b"replicated",
            "missing on {server}"
        );
    }

    let stats = node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 2);
    assert!(
        stats.usage[0].total > 0 && stats.usage[1].total > 0,
        "{stats:?}"
    );
    assert!(!stats.volume_condition.unwrap().abnormal);

    for _ in 0..2 {
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: target.to_string_lossy().into_owned(),
        })
        .await
        .unwrap();
    }
    assert!(mounts_at(&target).is_empty());
    assert!(
        !target.exists(),
        "NodeUnpublish removes the target it created"
    );
    for _ in 0..2 {
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.to_string_lossy().into_owned(),
        })
        .await
        .unwrap();
    }
    assert!(mounts_at(&staging).is_empty());

    for _ in 0..2 {
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert!(!driver.volume_names().contains(&id));
    for server in driver.cluster.addresses() {
        let brick = driver.brick_dir(&server, &id);
        assert!(!brick.exists(), "{} left behind", brick.display());
    }
}

/// glusterd with the primary server's daemon down: staging still works and
/// the node does not pay gluster's fixed wait on the dead primary; after the
/// controller's own glusterd restarts, the next create succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_succeeds_with_the_primary_glusterd_down() {
    let mut driver = DevDriver::start().await;
    let (mut controller, mut node) = (driver.controller(), driver.node());
    let name = pvc_name();
    let volume = controller
        .create_volume(create_request(&name, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let primary = volume.volume_context["server"].clone();
    driver.stop_glusterd(&primary);

    let staging = driver.staging_path(&name);
    let started = std::time::Instant::now();
    node.node_stage_volume(stage_request(&volume, &staging))
        .await
        .unwrap();
    let took = started.elapsed();
    let mount = &mounts_at(&staging)[0];
    assert!(
        !mount.source.starts_with(&format!("{primary}:")),
        "mounted from the dead primary: {}",
        mount.source
    );
    // gluster's own fallback waits ~3 s on a dead primary; probing first
    // must avoid that entire wait (this bounds a step, it is not a benchmark).
    assert!(took.as_secs_f64() < 2.5, "staging took {took:?}");
    let target = driver.target_path("pod", &name);
    node.node_publish_volume(publish_request(&volume, &staging, &target, false))
        .await
        .unwrap();
    std::fs::write(target.join("f"), b"x").unwrap();
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        target_path: target.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();

    driver.start_glusterd(&primary);

    // glusterd refuses deletion while a peer is down: UNAVAILABLE, naming it.
    let peer = driver.cluster.servers[2].address.clone();
    driver.stop_glusterd(&peer);
    let err = controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: volume.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains(&peer), "{}", err.message());
    assert!(
        driver.volume_names().contains(&volume.volume_id),
        "nothing deleted yet"
    );
    driver.start_glusterd(&peer);

    // The controller's own glusterd down: UNAVAILABLE at once, no hang.
    let own = driver.cluster.servers[0].address.clone();
    driver.stop_glusterd(&own);
    let err = driver.identity().probe(ProbeRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Unready, yet alive: the liveness check does not ask glusterd.
    let endpoint = format!("--endpoint=unix://{}", driver.cluster.csi_socket.display());
    let ping = std::process::Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"))
        .args(["ping", &endpoint])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let nobody = driver
        .cluster
        .csi_socket
        .with_file_name("nobody-listens.sock");
    let ping = std::process::Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"))
        .args(["ping", &format!("--endpoint=unix://{}", nobody.display())])
        .output()
        .unwrap();
    assert!(!ping.status.success(), "no driver there");
    assert!(
        String::from_utf8_lossy(&ping.stderr).contains("nobody-listens.sock"),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let err = controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: volume.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Restarted, it makes a new socket at the same path: the very next
    // create works (the controller holds no connection to the old one).
    driver.start_glusterd(&own);
    let after_restart = controller
        .create_volume(create_request(&pvc_name(), &[]))
        .await
        .expect("the first CreateVolume after glusterd restarted")
        .into_inner()
        .volume
        .unwrap();

    for volume in [&volume, &after_restart] {
        controller
            .delete_volume(delete_volume_request(volume))
            .await
            .unwrap();
        for server in driver.cluster.addresses() {
            assert!(!driver.brick_dir(&server, &volume.volume_id).exists());
        }
    }
}

fn is_write(line: &str) -> bool {
    !(line.contains(" : volume set help-xml ") || line.contains(" : system:: uuid get "))
}

/// Bad names, parameters and paths: INVALID_ARGUMENT naming the field, no
/// gluster write and no mount happens, and the driver keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_anything_runs() {
    let driver = DevDriver::start().await;
    let (mut controller, mut node) = (driver.controller(), driver.node());
    let history_before = driver.command_history();
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();

    let create_cases: Vec<(CreateVolumeRequest, &str)> = vec![
        (create_request("", &[]), "name"),
        (create_request("-rf", &[]), "name"),
        (create_request("pvc;reboot", &[]), "name"),
        (create_request("pvc-$(id)", &[]), "name"),
        (create_request("pvc 1", &[]), "name"),
        (create_request(&"a".repeat(129), &[]), "name"),
        (create_request("../../etc", &[]), "name"),
        (
            create_request(&pvc_name(), &[("replica", "0")]),
            "parameters.replica",
        ),
        (
            create_request(&pvc_name(), &[("replica", "3; rm -rf /")]),
            "parameters.replica",
        ),
        (
            create_request(&pvc_name(), &[("arbiter", "maybe")]),
            "parameters.arbiter",
        ),
        (
            create_request(&pvc_name(), &[("brickRoot", "relative")]),
            "parameters.brickRoot",
        ),
        (
            create_request(&pvc_name(), &[("brickRoot", "/data/../etc")]),
            "parameters.brickRoot",
        ),
        (
            create_request(&pvc_name(), &[("brickRoot", "/data/$(reboot)")]),
            "parameters.brickRoot",
        ),
        (
            create_request(&pvc_name(), &[("servers", "--remote-host=evil")]),
            "parameters.servers",
        ),
        (
            create_request(&pvc_name(), &[("servers", "a b")]),
            "parameters.servers",
        ),
        (
            create_request(&pvc_name(), &[("volumeOptions", "user.csi.name=x")]),
            "parameters.volumeOptions",
        ),
        (
            create_request(&pvc_name(), &[("volumeOptions", "a.b=`id`")]),
            "parameters.volumeOptions",
        ),
        (
            create_request(&pvc_name(), &[("volumeOptions", "no.such-option=1")]),
            "parameters.volumeOptions",
        ),
        (
            create_request(
                &pvc_name(),
                &[(
                    "volumeOptions",
                    "performance.cache-size=1MB\nvolume delete x",
                )],
            ),
            "parameters.volumeOptions",
        ),
        (
            create_request(&pvc_name(), &[("bogus", "1")]),
            "parameters.bogus",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![],
                ..create_request(&pvc_name(), &[])
            },
            "volume_capabilities",
        ),
        (
            CreateVolumeRequest {
                volume_capabilities: vec![mount_capability_with(
                    Mode::SingleNodeWriter,
                    &["log-file=/etc/passwd"],
                )],
                ..create_request(&pvc_name(), &[])
            },
            "volume_capabilities[0].mount.mount_flags",
        ),
        (
            CreateVolumeRequest {
                capacity_range: Some(CapacityRange {
                    required_bytes: -1,
                    limit_bytes: 0,
                }),
                ..create_request(&pvc_name(), &[])
            },
            "capacity_range.required_bytes",
        ),
    ];
    for (request, field) in create_cases {
        let err = controller.create_volume(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }

    let volume = Volume {
        volume_id: "csi-pvc-x".into(),
        volume_context: [("volume", "csi-pvc-x"), ("server", "127.0.0.9")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let good_staging = driver.staging_path("x");
    let stage_cases: Vec<(NodeStageVolumeRequest, &str)> = vec![
        (
            NodeStageVolumeRequest {
                staging_target_path: "relative/path".into(),
                ..stage_request(&volume, &good_staging)
            },
            "staging_target_path",
        ),
        (
            NodeStageVolumeRequest {
                staging_target_path: format!("{}/../../etc", good_staging.display()),
                ..stage_request(&volume, &good_staging)
            },
            "staging_target_path",
        ),
        (
            NodeStageVolumeRequest {
                volume_id: String::new(),
                ..stage_request(&volume, &good_staging)
            },
            "volume_id",
        ),
        (
            NodeStageVolumeRequest {
                volume_context: [("volume", "-o"), ("server", "127.0.0.9")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..stage_request(&volume, &good_staging)
            },
            "volume_context.volume",
        ),
        (
            NodeStageVolumeRequest {
                volume_context: [("volume", "v"), ("server", "h;reboot")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..stage_request(&volume, &good_staging)
            },
            "volume_context.server",
        ),
        (
            NodeStageVolumeRequest {
                volume_capability: Some(mount_capability_with(
                    Mode::SingleNodeWriter,
                    &["xlator-option=x"],
                )),
                ..stage_request(&volume, &good_staging)
            },
            "volume_capability.mount.mount_flags",
        ),
    ];
    for (request, field) in stage_cases {
        let err = node.node_stage_volume(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
    let err = node
        .node_publish_volume(NodePublishVolumeRequest {
            target_path: "/tmp/../etc".into(),
            ..publish_request(&volume, &good_staging, Path::new("/x"), false)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("target_path"));

    let history_after = driver.command_history();
    for (before, after) in history_before.iter().zip(&history_after) {
        let new: Vec<&String> = after[before.len()..]
            .iter()
            .filter(|l| is_write(l))
            .collect();
        assert!(new.is_empty(), "bad input reached glusterd: {new:?}");
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(mounts_before, mounts_after, "bad input mounted something");
    assert!(driver.volume_names().is_empty());

    // Still serving.
    let probe = driver
        .identity()
        .probe(ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));
}

fn delete_request(id: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: id.to_string(),
        ..Default::default()
    }
}

/// Entries directly under each server's brick root (dev layout).
fn brick_leftovers(driver: &DevDriver) -> Vec<String> {
    driver
        .cluster
        .addresses()
        .iter()
        .flat_map(|server| {
            brick_root_entries(&driver.cluster.brick_root.join(server))
                .into_iter()
                .map(move |name| format!("{server}/{name}"))
        })
        .collect()
}

/// What a brick root holds besides its trash, once the purge children
/// have emptied the trash.
fn brick_root_entries(root: &Path) -> Vec<String> {
    let trash = root.join(TRASH_DIR);
    wait_until(Duration::from_secs(30), || {
        !std::fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some())
    });
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != TRASH_DIR)
        .collect()
}

/// 20 CreateVolume at once, then 20 DeleteVolume at once: all succeed and
/// nothing is left in glusterd or on the bricks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_parallel_creates_then_twenty_parallel_deletes() {
    let driver = DevDriver::start().await;
    let names: Vec<String> = (0..20).map(|_| pvc_name()).collect();
    let started = std::time::Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for name in &names {
        let mut controller = driver.controller();
        let request = create_request(name, &[]);
        creates.spawn(async move { controller.create_volume(request).await });
    }
    let mut ids = Vec::new();
    while let Some(result) = creates.join_next().await {
        let volume = result
            .unwrap()
            .expect("parallel create")
            .into_inner()
            .volume
            .unwrap();
        ids.push(volume.volume_id);
    }
    eprintln!(
        "20 parallel creates: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let info = driver.gluster(&["volume", "info"]);
    assert_eq!(info.matches("<statusStr>Started</statusStr>").count(), 20);
    // The volumes of one StorageClass get the same options, so that with
    // multiplexing their bricks share one process per server.
    let processes = driver.brick_processes();
    eprintln!("brick processes by server after 20 volumes: {processes:?}");
    assert_eq!(processes.len(), 3, "{processes:?}");
    for (server, pids) in &processes {
        let expected = if suite_multiplexes() { 1 } else { 20 };
        assert_eq!(pids.len(), expected, "{server}: {processes:?}");
    }
    let listed = driver
        .controller()
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 20);

    let started = std::time::Instant::now();
    let mut deletes = tokio::task::JoinSet::new();
    for id in &ids {
        let mut controller = driver.controller();
        let request = delete_request(id);
        deletes.spawn(async move { controller.delete_volume(request).await });
    }
    while let Some(result) = deletes.join_next().await {
        result.unwrap().expect("parallel delete");
    }
    eprintln!(
        "20 parallel deletes: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(driver.volume_names().is_empty());
    assert_eq!(brick_leftovers(&driver), Vec::<String>::new());
}

/// A server refusing its brick (brick root missing there) fails the create
/// with FAILED_PRECONDITION naming it; glusterd's half-made brick
/// directories on the other servers are removed, and the retry succeeds
/// once the directory exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_create_leaves_nothing_and_the_retry_succeeds() {
    let driver = DevDriver::start().await;
    let mut controller = driver.controller();
    let root = driver.kubelet.path().join("bricks");
    let servers = driver.cluster.addresses();
    for server in &servers[..2] {
        std::fs::create_dir_all(root.join(server)).unwrap();
    }
    let name = pvc_name();
    let request = create_request(&name, &[("brickRoot", root.to_str().unwrap())]);
    let err = controller.create_volume(request.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&servers[2]), "{}", err.message());
    assert!(driver.volume_names().is_empty());
    for server in &servers[..2] {
        let half_made = root.join(server).join(format!("csi-{name}"));
        assert!(!half_made.exists(), "{} left behind", half_made.display());
    }

    std::fs::create_dir_all(root.join(&servers[2])).unwrap();
    let volume = controller
        .create_volume(request)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    controller
        .delete_volume(delete_request(&volume.volume_id))
        .await
        .unwrap();
    for server in &servers {
        let left = brick_root_entries(&root.join(server));
        assert!(left.is_empty(), "{left:?}");
    }
}

/// volumeOptions reach glusterd; a value glusterd refuses is the user's
/// error (INVALID_ARGUMENT naming the parameter) and leaves no volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_options_are_applied_and_bad_values_roll_back() {
    let driver = DevDriver::start().await;
    let mut controller = driver.controller();
    let name = pvc_name();
    let volume = controller
        .create_volume(create_request(
            &name,
            &[(
                "volumeOptions",
                "performance.cache-size=64MB,user.team=storage",
            )],
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let info = driver.gluster(&["volume", "info", &volume.volume_id]);
    assert!(
        info.contains("<name>performance.cache-size</name>\n            <value>64MB</value>"),
        "{info}"
    );
    assert!(info.contains("<value>storage</value>"));

    // One option per line: a value may be a comma list.
    let servers = driver.cluster.addresses().join(",");
    let listed = controller
        .create_volume(create_request(
            &pvc_name(),
            &[(
                "volumeOptions",
                &format!("auth.allow={servers}\nuser.team=storage\n"),
            )],
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let info = driver.gluster(&["volume", "info", &listed.volume_id]);
    assert!(
        info.contains(&format!(
            "<name>auth.allow</name>\n            <value>{servers}</value>"
        )),
        "{info}"
    );

    let bad = pvc_name();
    let err = controller
        .create_volume(create_request(
            &bad,
            &[("volumeOptions", "performance.cache-size=lots")],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with("parameters.volumeOptions"),
        "{}",
        err.message()
    );
    assert!(!driver.volume_names().contains(&format!("csi-{bad}")));
    assert!(!brick_leftovers(&driver).iter().any(|b| b.contains(&bad)));
    controller
        .delete_volume(delete_request(&volume.volume_id))
        .await
        .unwrap();
}

/// Arbiter volumes, replica limits, server restrictions and capacity
/// conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_and_compatibility_rules() {
    let driver = DevDriver::start().await;
    let mut controller = driver.controller();
    let servers = driver.cluster.addresses();

    let arbiter = controller
        .create_volume(create_request(&pvc_name(), &[("arbiter", "true")]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let info = driver.gluster(&["volume", "info", &arbiter.volume_id]);
    assert!(info.contains("<arbiterCount>1</arbiterCount>"), "{info}");

    let err = controller
        .create_volume(create_request(&pvc_name(), &[("replica", "4")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("replica 4 needs 4 connected"),
        "{}",
        err.message()
    );
    let two = format!("{},{}", servers[0], servers[1]);
    let err = controller
        .create_volume(create_request(&pvc_name(), &[("servers", &two)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let pair = controller
        .create_volume(create_request(
            &pvc_name(),
            &[("servers", &two), ("replica", "2")],
        ))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(
        !driver
            .gluster(&["volume", "info", &pair.volume_id])
            .contains(&servers[2])
    );
    let err = controller
        .create_volume(create_request(&pvc_name(), &[("servers", "no-such-peer")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("parameters.servers"));

    // Same name, different request: ALREADY_EXISTS, volume untouched.
    let name = pvc_name();
    let mut request = create_request(&name, &[]);
    controller.create_volume(request.clone()).await.unwrap();
    request.capacity_range = Some(CapacityRange {
        required_bytes: 2 << 30,
        limit_bytes: 2 << 30,
    });
    let err = controller.create_volume(request).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let err = controller
        .create_volume(create_request(&name, &[("replica", "2")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // A volume the driver did not make is never touched.
    let foreign = "csi-pvc-made-by-an-admin";
    let bricks: Vec<String> = servers
        .iter()
        .map(|s| {
            format!(
                "{s}:{}",
                driver
                    .cluster
                    .brick_root
                    .join(s)
                    .join("admin-brick")
                    .display()
            )
        })
        .collect();
    let mut words = vec!["volume", "create", foreign, "replica", "3"];
    words.extend(bricks.iter().map(String::as_str));
    words.push("force");
    driver.gluster(&words);
    let err = controller
        .delete_volume(delete_request(foreign))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(driver.volume_names().contains(&foreign.to_string()));
    let err = controller
        .create_volume(create_request("pvc-made-by-an-admin", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Unknown and malformed ids are already deleted.
    for id in ["csi-pvc-never-made", "not-ours", "../../etc"] {
        controller.delete_volume(delete_request(id)).await.unwrap();
    }
}

/// While a DeleteVolume runs, its retry joins it (and gets its answer) and
/// any other request for the volume is ABORTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_joins_the_running_operation_and_other_requests_are_aborted() {
    let driver = DevDriver::start().await;
    let mut controller = driver.controller();
    let volume = controller
        .create_volume(create_request(&pvc_name(), &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let id = volume.volume_id.clone();
    let mut first = driver.controller();
    let request = delete_request(&id);
    let deleting = tokio::spawn(async move { first.delete_volume(request).await });
    // The deletion mark is set before `volume stop`, which takes ~2 s.
    let socket = driver.cluster.servers[0].glusterd_socket.clone();
    let mark_seen = tokio::task::spawn_blocking({
        let id = id.clone();
        move || {
            wait_until(std::time::Duration::from_secs(20), || {
                gluster(&socket, &["volume", "info", &id])
                    .is_ok_and(|xml| xml.contains("user.csi.deleting"))
            })
        }
    });
    mark_seen.await.unwrap();
    let err = controller
        .create_volume(create_request(&volume.volume_id["csi-".len()..], &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("DeleteVolume"), "{err:?}");
    controller.delete_volume(delete_request(&id)).await.unwrap();
    assert!(
        driver.volume_names().is_empty(),
        "the retry answered once the delete it joined was done"
    );
    deleting.await.unwrap().unwrap();
    controller.delete_volume(delete_request(&id)).await.unwrap();
}

/// ListVolumes pages through volumes in a stable order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_volumes_pages() {
    let driver = DevDriver::start().await;
    let mut controller = driver.controller();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let v = controller
            .create_volume(create_request(&pvc_name(), &[]))
            .await
            .unwrap();
        ids.push(v.into_inner().volume.unwrap().volume_id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(
            page.entries
                .iter()
                .map(|e| e.volume.as_ref().unwrap().volume_id.clone()),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen, ids);
    let err = controller
        .list_volumes(ListVolumesRequest {
            max_entries: 0,
            starting_token: "invalid-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let err = controller
        .list_volumes(ListVolumesRequest {
            max_entries: -1,
            starting_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Read-only publishing, a target taken by something else, and a dead FUSE
/// client: reported as an abnormal volume condition, healed by restaging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_publish_rules_and_dead_mount_healing() {
    let driver = DevDriver::start().await;
    let (mut controller, mut node) = (driver.controller(), driver.node());
    let name = pvc_name();
    let volume = controller
        .create_volume(create_request(&name, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let staging = driver.staging_path(&name);

    // Mount failures say why: NOT_FOUND for a volume glusterd does not have
    // (asked after the mount failed; a static PV's, as a driver-made id
    // must name its own volume), UNAVAILABLE when no server answers.
    let mut missing = volume.clone();
    missing.volume_id = "static-pv-of-a-missing-volume".into();
    missing
        .volume_context
        .insert("volume".into(), "no-such-volume".into());
    let err = node
        .node_stage_volume(stage_request(&missing, &staging))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains("no-such-volume does not exist"),
        "{}",
        err.message()
    );
    let mut nowhere = volume.clone();
    nowhere
        .volume_context
        .insert("server".into(), "127.255.0.1".into());
    nowhere
        .volume_context
        .insert("backupServers".into(), "127.255.0.2".into());
    let err = node
        .node_stage_volume(stage_request(&nowhere, &staging))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("127.255.0.1, 127.255.0.2"),
        "{}",
        err.message()
    );
    assert!(mounts_at(&staging).is_empty());

    node.node_stage_volume(stage_request(&volume, &staging))
        .await
        .unwrap();

    let ro = driver.target_path("reader", &name);
    node.node_publish_volume(publish_request(&volume, &staging, &ro, true))
        .await
        .unwrap();
    let err = std::fs::write(ro.join("x"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let err = node
        .node_publish_volume(publish_request(&volume, &staging, &ro, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "same target, other mode");

    let taken = driver.target_path("other", &name);
    std::fs::create_dir_all(&taken).unwrap();
    let elsewhere = driver.kubelet.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    sys_bind(&elsewhere, &taken);
    let _foreign = UnmountOnDrop(taken.clone());
    let err = node
        .node_publish_volume(publish_request(&volume, &staging, &taken, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: volume.volume_id.clone(),
        target_path: taken.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();

    let rw = driver.target_path("writer", &name);
    node.node_publish_volume(publish_request(&volume, &staging, &rw, false))
        .await
        .unwrap();
    std::fs::write(rw.join("before"), b"1").unwrap();

    // Kill the FUSE client the way a crash or OOM kill would.
    let client = fuse_client_of(&staging).expect("FUSE client process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(client),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(std::time::Duration::from_secs(10), || {
        std::fs::metadata(&rw).err().and_then(|e| e.raw_os_error()) == Some(libc::ENOTCONN)
    });
    let stats = volume_stats(&mut node, &volume, &rw).await;
    let condition = stats.volume_condition.unwrap();
    assert!(condition.abnormal, "{condition:?}");
    assert!(
        condition.message.contains("not connected"),
        "{}",
        condition.message
    );

    node.node_stage_volume(stage_request(&volume, &staging))
        .await
        .unwrap();
    node.node_publish_volume(publish_request(&volume, &staging, &rw, false))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(rw.join("before")).unwrap(),
        b"1",
        "healed mount serves the data"
    );

    for target in [&ro, &rw] {
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            target_path: target.to_string_lossy().into_owned(),
        })
        .await
        .unwrap();
    }
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();
    assert!(mounts_at(&staging).is_empty());
    controller
        .delete_volume(delete_request(&volume.volume_id))
        .await
        .unwrap();
}

fn sys_bind(source: &Path, target: &Path) {
    let status = std::process::Command::new("mount")
        .arg("--bind")
        .arg(source)
        .arg(target)
        .status()
        .unwrap();
    assert!(status.success());
}

fn fuse_client_of(mount_point: &Path) -> Option<i32> {
    let needle = mount_point.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (args.first().is_some_and(|a| a.ends_with("glusterfs")) && args.contains(&needle))
            .then_some(pid)
    })
}

/// The brick agents only remove what glusterd no longer needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brick_agents_refuse_what_glusterd_still_needs() {
    use glusterfs_csi::proto::brick_agent::RemoveBrickRequest;
    use glusterfs_csi::proto::brick_agent::brick_agent_client::BrickAgentClient;

    let driver = DevDriver::start().await;
    let volume = driver
        .controller()
        .create_volume(create_request(&pvc_name(), &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let server = &driver.cluster.servers[0].address;
    let channel = tonic::transport::Endpoint::from_shared(format!(
        "http://{server}:{}",
        driver.cluster.brick_agent_port
    ))
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut agent = BrickAgentClient::new(channel);
    let brick = driver.brick_dir(server, &volume.volume_id);
    std::fs::write(brick.join("data"), b"precious").unwrap();
    let request = |volume: &str, path: &Path, token: &str| {
        let mut r = tonic::Request::new(RemoveBrickRequest {
            volume: volume.to_string(),
            path: path.to_string_lossy().into_owned(),
        });
        r.metadata_mut().insert(
            glusterfs_csi::bricks::agent::TOKEN_HEADER,
            token.parse().unwrap(),
        );
        r
    };
    let token = driver.cluster.brick_agent_token.clone();

    let err = agent
        .remove_brick(request(&volume.volume_id, &brick, "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = agent
        .remove_brick(request(&volume.volume_id, &brick, &token))
        .await
        .unwrap_err();
    // A live volume: refused, as retryable, since the agent cannot tell
    // "never meant" from "the controller's mark has not reached this
    // server's glusterd yet" (a server catching up after a partition).
    assert_eq!(err.code(), Code::Aborted, "live volume: {err:?}");
    assert!(
        err.message().contains("not marked for deletion"),
        "live volume: {err:?}"
    );
    assert!(brick.join("data").exists(), "nothing removed");
    // A directory with data named like a volume but belonging to none.
    let orphan = driver
        .cluster
        .brick_root
        .join(server)
        .join("csi-pvc-orphan");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::write(orphan.join("keep"), b"1").unwrap();
    let err = agent
        .remove_brick(request("csi-pvc-orphan", &orphan, &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let escape = driver
        .cluster
        .brick_root
        .join(server)
        .join("../../../etc/csi-pvc-x");
    let err = agent
        .remove_brick(request("csi-pvc-x", &escape, &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(std::fs::read(brick.join("data")).unwrap(), b"precious");
    assert!(orphan.join("keep").exists());
}

/// The pooled CLI sessions against a real glusterd: a command line the CLI
/// rejects ends its session and reports the CLI's own complaint, glusterd
/// going away fails fast instead of hanging, and everything works again
/// afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gluster_sessions_recover() {
    use glusterfs_csi::gluster::transport::{CliArg, CliCommand, CliTransport};
    use glusterfs_csi::gluster::{GlusterdAddress, SessionPool};

    let mut driver = DevDriver::start().await;
    let first = driver.cluster.servers[0].clone();
    let pool = SessionPool::new(
        "gluster",
        GlusterdAddress::Socket(first.glusterd_socket.clone()),
        std::time::Duration::from_secs(30),
        2,
    );
    let command =
        |words: &[&str]| CliCommand::new(words.iter().map(|w| CliArg::new(*w).unwrap()).collect());
    let list = command(&["volume", "list"]);
    assert!(pool.run(&list).await.unwrap().contains("<volList>"));
    assert_eq!(pool.idle_sessions(), 1);

    let err = pool.run(&command(&["volume", "bogus"])).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_eq!(pool.idle_sessions(), 0, "the ended session is not put back");
    assert!(pool.run(&list).await.unwrap().contains("<volList>"));

    driver.stop_glusterd(&first.address);
    let started = std::time::Instant::now();
    let err = pool.run(&list).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no hang"
    );
    driver.start_glusterd(&first.address);
    assert!(pool.run(&list).await.unwrap().contains("<volList>"));

    // Without --server-name, the controller learns its own peer name from
    // another peer (glusterd itself calls it "localhost").
    use glusterfs_csi::gluster::{GlusterCli, Glusterd, LockRetry};
    let cli = GlusterCli::new(
        std::sync::Arc::new(pool),
        "gluster",
        None,
        LockRetry::default(),
    );
    let peers = cli.peers().await.unwrap();
    let local = peers.iter().find(|p| p.is_local).unwrap();
    assert_eq!(local.hostname, first.address);
    assert_eq!(peers.len(), 3);
}

/// Node paths are never trusted: a foreign mount at a staging or target
/// path is left alone, a target that leads through a symlink is refused
/// with nothing mounted anywhere, a context that names another volume than
/// the id is refused, and a staging path mount.glusterfs cannot take is
/// refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_paths_are_never_trusted() {
    let driver = DevDriver::start().await;
    let mut node = driver.node();
    let (name, other) = (pvc_name(), pvc_name());
    let volume = create_volume(&driver, &name).await;
    let other_volume = create_volume(&driver, &other).await;
    let staging = driver.staging_path(&name);

    // A tmpfs at the paths the CO names: answered per the spec, left mounted.
    let target = driver.target_path("pod-tmpfs", &name);
    std::fs::create_dir_all(&target).unwrap();
    let _tmpfs = [mount_tmpfs(&target), mount_tmpfs(&staging)];
    unpublish_and_unstage(&mut node, &volume, &staging, &target).await;
    for path in [&target, &staging] {
        let mounts = mounts_at(path);
        assert_eq!(mounts.len(), 1, "{}", path.display());
        assert_eq!(mounts[0].fs_type, "tmpfs");
    }
    drop(_tmpfs);

    // A context naming another volume than the id: refused, nothing mounted.
    let mut crossed = stage_request(&volume, &staging);
    crossed.volume_context = other_volume.volume_context.clone();
    let err = node.node_stage_volume(crossed).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with("volume_context.volume"),
        "{err:?}"
    );
    assert!(mounts_at(&staging).is_empty());

    // A staging path mount.glusterfs would split apart.
    let spaced = driver.kubelet.path().join("plugins/with space/globalmount");
    let err = node
        .node_stage_volume(stage_request(&volume, &spaced))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(!spaced.exists(), "refused before anything was made");

    node.node_stage_volume(stage_request(&volume, &staging))
        .await
        .unwrap();
    // Targets that lead outside through a symlink: the last component, or
    // one in the middle. Refused; nothing mounted where they point.
    let outside = tempfile::tempdir().unwrap();
    let pod = driver
        .kubelet
        .path()
        .join("pods/evil/volumes/kubernetes.io~csi");
    std::fs::create_dir_all(&pod).unwrap();
    std::os::unix::fs::symlink(outside.path(), pod.join("link")).unwrap();
    let linked_pod = driver.kubelet.path().join("pods/linked");
    std::os::unix::fs::symlink(outside.path(), &linked_pod).unwrap();
    for target in [pod.join("link"), linked_pod.join("mount")] {
        let err = node
            .node_publish_volume(publish_request(&volume, &staging, &target, false))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("symbolic link"), "{err:?}");
    }
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !glusterfs_csi::mount::mountinfo::parse(&text)
            .iter()
            .any(|m| m.mount_point.starts_with(outside.path())),
        "nothing mounted outside"
    );

    node.node_unstage_volume(unstage_request(&volume, &staging))
        .await
        .unwrap();
    assert!(mounts_at(&staging).is_empty());
    let mut controller = driver.controller();
    for v in [&volume, &other_volume] {
        delete_as_the_provisioner_does(&mut controller, v).await;
    }
}

/// A tmpfs mounted by the test, unmounted when dropped.
fn mount_tmpfs(path: &Path) -> Mounted {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "test-tmpfs"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    Mounted(path.to_path_buf())
}

/// A volume another client still mounts (a static PersistentVolume sharing
/// it) is not deleted: FAILED_PRECONDITION naming the clients, the data
/// intact; once unmounted, the retry deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_a_volume_still_mounted_is_refused_until_unmounted() {
    let driver = DevDriver::start().await;
    let volume = create_volume(&driver, &pvc_name()).await;
    let id = volume.volume_id.clone();
    let elsewhere = driver.kubelet.path().join("static-pv");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "glusterfs"])
        .arg(format!("{}:/{id}", volume.volume_context["server"]))
        .arg(&elsewhere)
        .status()
        .unwrap();
    assert!(status.success());
    let _mounted = Mounted(elsewhere.clone());
    std::fs::write(elsewhere.join("precious"), b"keep").unwrap();

    let mut controller = driver.controller();
    let err = controller
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("still in use (fuse 1;"),
        "{}",
        err.message()
    );
    let info = driver.gluster(&["volume", "info", &id]);
    assert!(info.contains("<statusStr>Started</statusStr>"), "{info}");
    assert!(
        !info.contains("user.csi.deleting"),
        "not even marked: {info}"
    );
    assert_eq!(std::fs::read(elsewhere.join("precious")).unwrap(), b"keep");

    // Unmounted: the FUSE client takes a moment to leave the bricks (more
    // under load), and the provisioner retries until it has.
    drop(_mounted);
    delete_as_the_provisioner_does(&mut controller, &volume).await;
    assert!(!driver.volume_names().contains(&id));
}

/// A mount made by the test, unmounted when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let status = std::process::Command::new("umount").arg(&self.0).status();
        assert!(
            status.is_ok_and(|s| s.success()) || std::thread::panicking(),
            "umount {}",
            self.0.display()
        );
    }
}

/// A controller of its own (no `--server-name`) against a pool of one
/// server, where no other peer can say the server's name: with
/// `--node-address` (the chart passes the pod's host IP) it creates and
/// deletes volumes with bricks on that address; without, CreateVolume is
/// UNAVAILABLE saying what to configure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_pool_works_by_the_node_address() {
    let driver = DevDriver::start_with(&["--nodes".to_string(), "1".to_string()]).await;
    assert_eq!(driver.cluster.servers.len(), 1);
    let server = driver.cluster.servers[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, node_address: Option<&str>| {
        let socket = dir.path().join(format!("{name}.sock"));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"));
        command
            .arg("controller")
            .arg(format!("--endpoint=unix://{}", socket.display()))
            .arg(format!(
                "--glusterd-socket={}",
                server.glusterd_socket.display()
            ))
            .arg(format!(
                "--default-brick-root={}",
                driver.cluster.brick_root.join(&server.address).display()
            ))
            .arg(format!(
                "--brick-agent-port={}",
                driver.cluster.brick_agent_port
            ))
            .arg("--allow-root-filesystem-bricks")
            .env(
                "GLUSTERFS_CSI_BRICK_AGENT_TOKEN",
                &driver.cluster.brick_agent_token,
            )
            .env_remove("GLUSTERFS_CSI_NODE_ADDRESS")
            .env_remove("GLUSTERFS_CSI_SERVER_NAME")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(address) = node_address {
            command.arg(format!("--node-address={address}"));
        }
        (KillOnDrop(command.spawn().unwrap()), socket)
    };

    let (_unnamed, socket) = start("unnamed", None);
    let mut controller = glusterfs_csi::proto::csi::controller_client::ControllerClient::new(
        connect_when_listening(&socket, Duration::from_secs(20)).await,
    );
    let err = controller
        .create_volume(create_request(&pvc_name(), &[("replica", "1")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("single-server pool") && err.message().contains("--node-address"),
        "{}",
        err.message()
    );

    let (_named, socket) = start("named", Some(&server.address));
    let mut controller = glusterfs_csi::proto::csi::controller_client::ControllerClient::new(
        connect_when_listening(&socket, Duration::from_secs(20)).await,
    );
    let volume = controller
        .create_volume(create_request(&pvc_name(), &[("replica", "1")]))
        .await
        .expect("CreateVolume in a pool of one")
        .into_inner()
        .volume
        .unwrap();
    let info = driver.gluster(&["volume", "info", &volume.volume_id]);
    assert!(
        info.contains(&format!("<name>{}:", server.address)),
        "{info}"
    );
    controller
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
    assert!(!driver.volume_names().contains(&volume.volume_id));
}

/// Ends a child process (by its own pid) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
