//! Provisioning logic against fake glusterd and brick agents: idempotency,
//! rollback and failure handling, each RPC-level operation run twice.

use std::collections::HashMap;

use tonic::Code;

use super::*;
use crate::fakes::{self, brick_root_report, volume_info};
use crate::gluster::{GlusterError, Glusterd};

fn request(name: &str, params: &[(&str, &str)]) -> CreateRequest {
    let params: HashMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    CreateRequest {
        csi_name: name.to_string(),
        capacity: CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        },
        params: StorageClassParams::parse(&params).unwrap(),
    }
}

#[tokio::test]
async fn create_twice_makes_one_volume() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    let first = provisioner.create(&request("pvc-1", &[])).await.unwrap();
    let writes = glusterd.writes();
    assert_eq!(
        writes,
        [
            "volume create csi-pvc-1",
            "volume set csi-pvc-1 user.csi.name pvc-1 user.csi.size 1073741824",
            "volume set csi-pvc-1 features.soft-timeout 0 features.hard-timeout 0",
            "volume start csi-pvc-1",
            "volume quota csi-pvc-1 enable",
            "volume quota csi-pvc-1 limit-usage / 1073741824",
        ]
    );
    assert_eq!(glusterd.quota_limit_of("csi-pvc-1"), Some(1 << 30));
    let second = provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(first, second);
    // Limits are never read back (glusterd would keep a mount for it):
    // the retry sets the same one again, and writes nothing else.
    assert_eq!(
        glusterd.writes()[writes.len()..],
        ["volume quota csi-pvc-1 limit-usage / 1073741824"]
    );
    assert_eq!(first.context.servers().len(), 3);
}

/// On a pool that multiplexes bricks, sizes are recorded and not enforced
/// by default, and a StorageClass asking for quota is refused before
/// anything is made (glusterd cannot stop such volumes reliably).
#[tokio::test]
async fn multiplexed_pools_get_no_quota() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    glusterd.multiplex_bricks(true);
    let made = provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(made.capacity_bytes, GIB);
    assert!(
        !glusterd.writes().iter().any(|w| w.contains("quota")),
        "{:?}",
        glusterd.writes()
    );
    glusterd.clear_writes();
    let err = provisioner
        .create(&request("pvc-2", &[("enforceCapacity", "true")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        err.to_string().starts_with("parameters.enforceCapacity: ")
            && err.to_string().contains("cluster.brick-multiplex"),
        "{err}"
    );
    assert_eq!(glusterd.writes(), Vec::<String>::new());
    // Off again: enforced as before.
    glusterd.multiplex_bricks(false);
    provisioner.create(&request("pvc-3", &[])).await.unwrap();
    assert_eq!(glusterd.quota_limit_of("csi-pvc-3"), Some(GIB));
}

#[tokio::test]
async fn a_failed_start_is_finished_with_force() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    glusterd.fail_next_starts(1);
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert!(
        glusterd
            .writes()
            .contains(&"volume start csi-pvc-1 force".to_string())
    );
    assert_eq!(
        glusterd.get("csi-pvc-1").unwrap().status,
        VolumeStatus::Started
    );
}

#[tokio::test]
async fn a_start_that_keeps_failing_is_rolled_back() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.fail_next_starts(1 + START_RETRIES);
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(err.to_string().contains("Commit failed"), "{err}");
    assert!(glusterd.get("csi-pvc-1").is_none(), "rolled back");
    assert_eq!(bricks.removed().len(), 3);
    // The retry starts from scratch and succeeds.
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
}

#[tokio::test]
async fn a_rejected_option_value_is_invalid_argument_and_rolled_back() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    let err = provisioner
        .create(&request(
            "pvc-1",
            &[("volumeOptions", "performance.cache-size=lots")],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.to_string().starts_with("parameters.volumeOptions: "),
        "{err}"
    );
    assert!(glusterd.get("csi-pvc-1").is_none());
    assert_eq!(bricks.removed().len(), 3);
    let err = provisioner
        .create(&request("pvc-2", &[("volumeOptions", "no.such-key=1")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        !glusterd.writes().iter().any(|w| w.contains("csi-pvc-2")),
        "unknown keys are refused before anything is created"
    );
}

#[tokio::test]
async fn a_rollback_that_cannot_finish_stays_retryable() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    bricks.set_unreachable("b", true);
    let err = provisioner
        .create(&request(
            "pvc-1",
            &[("volumeOptions", "performance.cache-size=lots")],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "the CO must retry: {err}");
    let text = err.to_string();
    assert!(
        text.contains("cache-size") && text.contains("brick agent on b"),
        "{text}"
    );
    assert!(matches!(
        Ownership::of(&glusterd.get("csi-pvc-1").unwrap()),
        Ownership::Ours { deleting: true, .. }
    ));
    // Agent back: the retry finishes removing the old attempt, then creates
    // the volume the (now valid) request asks for.
    bricks.set_unreachable("b", false);
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    let volume = glusterd.get("csi-pvc-1").unwrap();
    assert_eq!(volume.status, VolumeStatus::Started);
    assert!(!volume.options.contains_key(OPT_CSI_DELETING));
}

#[tokio::test]
async fn a_refused_create_removes_half_made_bricks() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.refuse_next_create(GlusterError::BrickDirectory {
        message: "Staging failed on c. Error: Failed to create brick directory".into(),
    });
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(bricks.removed().len(), 3, "every planned brick is cleaned");
}

#[tokio::test]
async fn a_create_the_server_refused_is_final_and_leaves_nothing_to_clean() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.refuse_next_create(GlusterError::Refused {
        target: "root@a".into(),
        message: "refused `volume create ...`: not under a brick root".into(),
    });
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.to_string().contains("not under a brick root"), "{err}");
    assert!(bricks.removed().is_empty(), "nothing reached glusterd");
}

#[tokio::test]
async fn an_interrupted_create_is_finished() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    // `volume create` ran, then the controller died before marking it.
    glusterd.insert(volume_info("csi-pvc-1", VolumeStatus::Created, &[]));
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    let volume = glusterd.get("csi-pvc-1").unwrap();
    assert_eq!(volume.status, VolumeStatus::Started);
    assert_eq!(volume.options[OPT_CSI_NAME], "pvc-1");
    assert!(
        !glusterd
            .writes()
            .iter()
            .any(|w| w.starts_with("volume create"))
    );
}

#[tokio::test]
async fn an_interrupted_create_can_be_deleted() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.insert(volume_info("csi-pvc-1", VolumeStatus::Created, &[]));
    provisioner.delete("csi-pvc-1").await.unwrap();
    assert!(glusterd.get("csi-pvc-1").is_none());
    assert_eq!(bricks.removed().len(), 3);
}

#[tokio::test]
async fn same_name_incompatible_request_is_already_exists() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    glusterd.clear_writes();
    let mut bigger = request("pvc-1", &[]);
    bigger.capacity = CapacityRange {
        required_bytes: 2 << 30,
        limit_bytes: 2 << 30,
    };
    for incompatible in [
        bigger,
        request("pvc-1", &[("replica", "2")]),
        request("pvc-1", &[("arbiter", "true")]),
        request("pvc-1", &[("brickRoot", "/elsewhere")]),
        request("pvc-1", &[("servers", "a,b")]),
    ] {
        let err = provisioner.create(&incompatible).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    }
    assert!(glusterd.writes().is_empty());
}

#[tokio::test]
async fn foreign_volumes_are_never_touched() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.insert(volume_info("csi-pvc-1", VolumeStatus::Started, &[]));
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = provisioner.delete("csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(glusterd.writes().is_empty());
    assert!(bricks.removed().is_empty());
}

#[tokio::test]
async fn delete_twice_and_unknown_ids() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    provisioner.delete("csi-pvc-1").await.unwrap();
    provisioner.delete("csi-pvc-1").await.unwrap();
    assert!(glusterd.get("csi-pvc-1").is_none());
    let mut removed = bricks.removed();
    removed.sort();
    assert_eq!(
        removed,
        [
            "a:/bricks/csi-pvc-1",
            "b:/bricks/csi-pvc-1",
            "c:/bricks/csi-pvc-1"
        ]
    );
    for id in ["csi-pvc-unknown", "fake-vol-id", "../x", ""] {
        provisioner.delete(id).await.unwrap();
    }
}

#[tokio::test]
async fn delete_with_a_peer_down_is_unavailable_and_changes_nothing() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    glusterd.clear_writes();
    glusterd.disconnect("c");
    let err = provisioner.delete("csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.to_string()
            .contains("gluster peer c (disconnected) is not available"),
        "{err}"
    );
    assert!(glusterd.writes().is_empty());
}

#[tokio::test]
async fn delete_of_a_volume_still_mounted_is_refused_and_changes_nothing() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    glusterd.clear_writes();
    glusterd.set_clients(
        "csi-pvc-1",
        crate::gluster::VolumeClients {
            kinds: [("fuse".to_string(), 2), ("glustershd".to_string(), 3)].into(),
            hosts: ["a".to_string(), "10.0.0.9".to_string()].into(),
        },
    );
    let err = provisioner.delete("csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let message = err.to_string();
    assert!(message.contains("still in use (fuse 2;"), "{message}");
    assert!(message.contains("10.0.0.9"), "{message}");
    assert!(
        !message.contains("glustershd"),
        "gluster's own daemons are not users"
    );
    assert!(glusterd.writes().is_empty(), "{:?}", glusterd.writes());
    assert!(bricks.removed().is_empty());
    assert_eq!(
        glusterd.get("csi-pvc-1").unwrap().status,
        VolumeStatus::Started
    );
    // Unmounted: the retry deletes it.
    glusterd.set_clients("csi-pvc-1", Default::default());
    provisioner.delete("csi-pvc-1").await.unwrap();
    assert!(glusterd.get("csi-pvc-1").is_none());
}

#[tokio::test]
async fn delete_with_an_agent_down_resumes_on_retry() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    bricks.set_unreachable("c", true);
    let err = provisioner.delete("csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let left = glusterd.get("csi-pvc-1").unwrap();
    assert_eq!(left.status, VolumeStatus::Stopped);
    assert!(
        provisioner.get("csi-pvc-1").await.unwrap().is_none(),
        "hidden while deleting"
    );
    bricks.set_unreachable("c", false);
    provisioner.delete("csi-pvc-1").await.unwrap();
    assert!(glusterd.get("csi-pvc-1").is_none());
}

#[tokio::test]
async fn a_retried_delete_asks_glusterd_to_stop_even_when_one_server_reads_stopped() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    // An earlier attempt marked and stopped it as far as this glusterd
    // knows; another server has not committed the stop yet.
    glusterd
        .set_options("csi-pvc-1", &[(OPT_CSI_DELETING.into(), "1".into())])
        .await
        .unwrap();
    glusterd.stop_volume("csi-pvc-1", true).await.unwrap();
    glusterd.clear_writes();
    bricks.lag("b", 2);
    provisioner.delete("csi-pvc-1").await.unwrap();
    assert_eq!(
        glusterd.writes(),
        ["volume stop csi-pvc-1 force", "volume delete csi-pvc-1"],
        "glusterd's own answer to stop, under its pool-wide lock"
    );
    assert_eq!(bricks.removed().len(), 3, "b answered once its stop landed");
    assert!(glusterd.get("csi-pvc-1").is_none());
}

#[tokio::test]
async fn a_stop_that_never_lands_on_a_server_is_aborted_and_the_retry_finishes() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    bricks.lag("c", u32::MAX);
    let err = provisioner.delete("csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err}");
    assert!(err.to_string().contains("still started"), "{err}");
    assert!(
        glusterd.get("csi-pvc-1").is_some(),
        "not deleted from glusterd"
    );
    let listed = provisioner.list(None, 0).await.unwrap();
    assert_eq!(listed.volumes.len(), 1, "still listed while being deleted");
    bricks.lag("c", 0);
    provisioner.delete("csi-pvc-1").await.unwrap();
    assert!(glusterd.get("csi-pvc-1").is_none());
    assert!(provisioner.list(None, 0).await.unwrap().volumes.is_empty());
}

#[tokio::test]
async fn delete_with_a_silent_server_is_unavailable_naming_it_and_changes_nothing() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    glusterd.clear_writes();
    // glusterd still calls the peer connected (dropped packets go unnoticed
    // for minutes); its agent does not answer.
    bricks.fail_root_checks("c");
    let err = provisioner.delete("csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.to_string().contains("gluster server c "), "{err}");
    assert!(glusterd.writes().is_empty(), "nothing changed");
    let mut checked = bricks.checked();
    checked.sort();
    assert_eq!(
        checked,
        [
            "a:/bricks",
            "a:/bricks",
            "b:/bricks",
            "b:/bricks",
            "c:/bricks"
        ][..],
        "at create, and once each at delete, about the brick's root"
    );
}

#[tokio::test]
async fn not_enough_servers() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    glusterd.disconnect("b");
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(glusterd.writes().is_empty());
    provisioner
        .create(&request("pvc-2", &[("replica", "2")]))
        .await
        .unwrap();
}

fn server_zones(spec: &[&str]) -> ServerZones {
    ServerZones::parse(&spec.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
}

#[tokio::test]
async fn bricks_go_to_every_zone_and_distinct_zones_are_required_when_asked() {
    let zones = server_zones(&["s1=a", "s2=a", "s3=b", "s4=c"]);
    let (provisioner, glusterd, _) =
        fakes::provisioner_zoned(&["s1", "s2", "s3", "s4"], zones.clone());
    for n in 0..20 {
        let name = format!("pvc-{n}");
        let created = provisioner
            .create(&request(&name, &[("zones", "distinct")]))
            .await
            .unwrap();
        let again = provisioner
            .create(&request(&name, &[("zones", "distinct")]))
            .await
            .unwrap();
        assert_eq!(created, again);
        let hosts: Vec<String> = glusterd
            .get(&format!("csi-{name}"))
            .unwrap()
            .bricks
            .iter()
            .map(|b| b.host.clone())
            .collect();
        assert_eq!(created.context.servers(), hosts);
        let mut in_zones: Vec<&str> = hosts.iter().filter_map(|h| zones.zone_of(h)).collect();
        in_zones.sort_unstable();
        assert_eq!(in_zones, ["a", "b", "c"], "{name}: {hosts:?}");
    }

    // Zone c's only server down: spreading still makes the volume, over a
    // and b; distinct zones cannot, and nothing is made.
    glusterd.disconnect("s4");
    let spread = provisioner.create(&request("pvc-x", &[])).await.unwrap();
    let mut servers = spread.context.servers().to_vec();
    servers.sort();
    assert_eq!(servers, ["s1", "s2", "s3"]);
    glusterd.clear_writes();
    for _ in 0..2 {
        let err = provisioner
            .create(&request("pvc-y", &[("zones", "distinct")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        assert_eq!(
            err.to_string(),
            "replica 3 needs servers in 3 distinct zones (parameters.zones: distinct), but the \
             usable servers are in 2: a (s1, s2), b (s3)"
        );
    }
    assert!(glusterd.writes().is_empty(), "{:?}", glusterd.writes());
    assert!(glusterd.get("csi-pvc-y").is_none());
}

#[tokio::test]
async fn a_retry_keeps_its_volume_when_the_zone_map_changed() {
    // Made on a, b, c when those were three zones; now a and b share one.
    let (provisioner, glusterd, _) =
        fakes::provisioner_zoned(&["a", "b", "c"], server_zones(&["a=x", "b=x", "c=y"]));
    let marks = [(OPT_CSI_NAME, "pvc-1"), (OPT_CSI_SIZE, "1073741824")];
    glusterd.insert(volume_info("csi-pvc-1", VolumeStatus::Started, &marks));
    let distinct = request("pvc-1", &[("zones", "distinct")]);
    let volume = provisioner.create(&distinct).await.unwrap();
    assert_eq!(volume.context.servers(), ["a", "b", "c"]);
    // A new volume cannot be made so.
    let err = provisioner
        .create(&request("pvc-2", &[("zones", "distinct")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
}

#[tokio::test]
async fn list_pages_every_volume_of_ours_those_being_deleted_too() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    for n in 1..=5 {
        provisioner
            .create(&request(&format!("pvc-{n}"), &[]))
            .await
            .unwrap();
    }
    glusterd.insert(volume_info("gv0", VolumeStatus::Started, &[]));
    glusterd.insert(volume_info(
        "csi-pvc-9",
        VolumeStatus::Stopped,
        &[(OPT_CSI_NAME, "pvc-9"), (OPT_CSI_DELETING, "1")],
    ));
    let first = provisioner.list(None, 2).await.unwrap();
    assert_eq!(first.volumes.len(), 2);
    let second = provisioner.list(first.next.as_deref(), 2).await.unwrap();
    let third = provisioner.list(second.next.as_deref(), 2).await.unwrap();
    assert_eq!(third.volumes.len(), 2);
    assert!(third.next.is_none());
    let all = provisioner.list(None, 0).await.unwrap();
    let ids: Vec<&str> = all.volumes.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "csi-pvc-1",
            "csi-pvc-2",
            "csi-pvc-3",
            "csi-pvc-4",
            "csi-pvc-5",
            "csi-pvc-9"
        ],
        "a volume being deleted is listed until it is gone; gv0 is not ours"
    );
    // It is not handed out to anyone else, though.
    assert!(provisioner.get("csi-pvc-9").await.unwrap().is_none());
    let (_, health) = provisioner.list_with_health(None, 0).await.unwrap();
    let deleting = health.last().unwrap().as_ref().unwrap();
    assert!(deleting.abnormal());
    assert!(
        deleting.message().contains("is being deleted"),
        "{}",
        deleting.message()
    );
}

#[tokio::test]
async fn every_placed_server_is_asked_about_its_brick_root_first() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    let mut checked = bricks.checked();
    checked.sort();
    assert_eq!(checked, ["a:/bricks", "b:/bricks", "c:/bricks"]);
    assert_eq!(
        glusterd.writes()[0],
        "volume create csi-pvc-1",
        "brick roots of their own need no force"
    );
}

#[tokio::test]
async fn a_brick_root_on_the_root_file_system_is_refused_before_anything_is_made() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    bricks.set_root("b", brick_root_report(false));
    for _ in 0..2 {
        let err = provisioner
            .create(&request("pvc-1", &[]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert_eq!(
            err.to_string(),
            "brick root /bricks on b is not a mount point of its own (it is on the root file \
             system (ext4 /dev/vda)); mount the brick disk at /bricks, or allow bricks on the \
             root file system with the StorageClass parameter allowRootFilesystemBricks: \
             \"true\" (or the controller flag --allow-root-filesystem-bricks)"
        );
    }
    assert!(glusterd.writes().is_empty());
    assert!(bricks.removed().is_empty());
}

#[tokio::test]
async fn a_missing_brick_root_is_refused_even_when_root_file_systems_are_allowed() {
    let (provisioner, glusterd, bricks) = fakes::provisioner_allowing_root_filesystem(true);
    bricks.set_root("a", BrickRootReport::default());
    bricks.set_root(
        "c",
        BrickRootReport {
            is_directory: false,
            ..brick_root_report(false)
        },
    );
    let err = provisioner
        .create(&request("pvc-1", &[("allowRootFilesystemBricks", "true")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("brick root /bricks does not exist on a; "),
        "{text}"
    );
    assert!(
        text.contains("brick root /bricks on c is not a directory; "),
        "{text}"
    );
    assert!(
        text.contains("; create it there, or mount the brick disk at /bricks"),
        "{text}"
    );
    assert!(text.contains("node.extraBrickRoots"), "{text}");
    assert!(glusterd.writes().is_empty());
}

#[tokio::test]
async fn allowed_root_file_system_bricks_are_created_with_force() {
    // By the StorageClass...
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    for host in ["a", "b", "c"] {
        bricks.set_root(host, brick_root_report(false));
    }
    provisioner
        .create(&request("pvc-1", &[("allowRootFilesystemBricks", "true")]))
        .await
        .unwrap();
    assert_eq!(glusterd.writes()[0], "volume create csi-pvc-1 force");
    // ...or by the controller, unless the StorageClass says no.
    let (provisioner, glusterd, bricks) = fakes::provisioner_allowing_root_filesystem(true);
    for host in ["a", "b", "c"] {
        bricks.set_root(host, brick_root_report(false));
    }
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(glusterd.writes()[0], "volume create csi-pvc-1 force");
    let err = provisioner
        .create(&request("pvc-2", &[("allowRootFilesystemBricks", "false")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        !glusterd.writes().iter().any(|w| w.contains("csi-pvc-2")),
        "{:?}",
        glusterd.writes()
    );
}

#[tokio::test]
async fn an_agent_that_cannot_check_its_root_stops_the_create() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    bricks.fail_root_checks("c");
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "retried: {err}");
    assert_eq!(
        err.to_string(),
        "could not check the brick root on 1 server: checking brick root c:/bricks: the brick \
         agent on c did not answer"
    );
    assert!(glusterd.writes().is_empty());
}

#[tokio::test]
async fn brick_directories_left_by_an_earlier_create_are_removed_and_the_create_retried() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.refuse_next_create(GlusterError::BrickInUse {
        message: "/bricks/csi-pvc-1 is already part of a volume".into(),
    });
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(
        bricks.removed().len(),
        3,
        "the leftovers were removed first"
    );
    let creates: Vec<String> = glusterd
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("volume create"))
        .collect();
    assert_eq!(
        creates,
        ["volume create csi-pvc-1", "volume create csi-pvc-1"]
    );
}

#[tokio::test]
async fn glusterd_refusing_the_root_partition_explains_the_opt_in() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.refuse_next_create(GlusterError::RootPartition {
        message: "Staging failed on c. Error: The brick c:/bricks/csi-pvc-1 is being created in \
                  the root partition."
            .into(),
    });
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let text = err.to_string();
    assert!(
        text.starts_with("creating gluster volume csi-pvc-1: glusterd refuses bricks on the root")
            && text.contains("allowRootFilesystemBricks"),
        "{text}"
    );
    assert_eq!(bricks.removed().len(), 3, "half-made bricks removed");
}

/// Isolation from flags: client addresses, and TLS when `tls`.
fn isolation(addresses: &[&str], tls: bool) -> isolation::Isolation {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (addresses, servers, clients) = (
        strings(addresses),
        strings(if tls { &["gluster-server"] } else { &[] }),
        strings(if tls { &["csi-node-*"] } else { &[] }),
    );
    isolation::Isolation::from_flags(isolation::IsolationFlags {
        client_addresses: &addresses,
        tls,
        tls_dir: "/etc/glusterfs-csi/tls",
        tls_server_names: &servers,
        tls_client_names: &clients,
    })
    .unwrap()
}

#[tokio::test]
async fn isolation_is_set_after_the_marks_and_before_the_first_start() {
    let (provisioner, glusterd, _) = fakes::provisioner_isolated(isolation(&["10.0.0.9"], true));
    let request = request("pvc-1", &[("volumeOptions", "performance.cache-size=1MB")]);
    let first = provisioner.create(&request).await.unwrap();
    assert_eq!(
        glusterd.writes(),
        [
            "volume create csi-pvc-1",
            "volume set csi-pvc-1 user.csi.name pvc-1 user.csi.size 1073741824",
            "volume set csi-pvc-1 auth.allow 10.0.0.9 \
             ssl.own-cert /etc/glusterfs-csi/tls/glusterfs.pem \
             ssl.private-key /etc/glusterfs-csi/tls/glusterfs.key \
             ssl.ca-list /etc/glusterfs-csi/tls/glusterfs.ca \
             auth.ssl-allow gluster-server,csi-node-* client.ssl on server.ssl on",
            "volume set csi-pvc-1 features.soft-timeout 0 features.hard-timeout 0 \
             performance.cache-size 1MB",
            "volume start csi-pvc-1",
            "volume quota csi-pvc-1 enable",
            "volume quota csi-pvc-1 limit-usage / 1073741824",
        ],
        "servers named by host name (a, b, c) are not in auth.allow"
    );
    let writes = glusterd.writes();
    assert_eq!(provisioner.create(&request).await.unwrap(), first);
    assert_eq!(
        glusterd.writes()[writes.len()..],
        ["volume quota csi-pvc-1 limit-usage / 1073741824"],
        "the retry sets the limit again, nothing else"
    );
}

#[tokio::test]
async fn isolation_glusterd_refuses_is_rolled_back() {
    let (provisioner, glusterd, bricks) =
        fakes::provisioner_isolated(isolation(&["10.0.0.9"], false));
    glusterd.refuse_option("auth.allow");
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err}");
    assert!(
        err.to_string()
            .starts_with("setting the tenant isolation options (--client-addresses, --tls) on gluster volume csi-pvc-1: "),
        "{err}"
    );
    assert!(glusterd.get("csi-pvc-1").is_none(), "rolled back");
    assert_eq!(bricks.removed().len(), 3);
    assert!(
        !glusterd
            .writes()
            .iter()
            .any(|w| w.starts_with("volume start")),
        "never started without its isolation"
    );
}

#[tokio::test]
async fn storage_classes_cannot_loosen_isolation() {
    let (provisioner, glusterd, _) = fakes::provisioner_isolated(isolation(&["10.0.0.9"], false));
    for options in [
        "auth.allow=*",
        "auth.reject=10.0.0.1\nserver.ssl=off",
        "ssl.cipher-list=ALL",
    ] {
        let err = provisioner
            .create(&request("pvc-1", &[("volumeOptions", options)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{options}: {err}");
        let key = options.split('=').next().unwrap();
        assert!(
            err.to_string()
                .starts_with(&format!("parameters.volumeOptions: {key:?} decides")),
            "{err}"
        );
    }
    assert!(
        glusterd.writes().is_empty(),
        "refused before anything is made"
    );

    // Without isolation a StorageClass may set its own allow-list.
    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner
        .create(&request(
            "pvc-1",
            &[("volumeOptions", "auth.allow=10.0.0.*")],
        ))
        .await
        .unwrap();
    assert_eq!(
        glusterd.get("csi-pvc-1").unwrap().options["auth.allow"],
        "10.0.0.*"
    );
}

#[tokio::test]
async fn an_interrupted_create_gets_its_isolation_before_it_starts() {
    let (provisioner, glusterd, _) = fakes::provisioner_isolated(isolation(&["10.0.0.9"], false));
    glusterd.insert(volume_info(
        "csi-pvc-1",
        VolumeStatus::Created,
        &[("user.csi.name", "pvc-1"), ("user.csi.size", "1073741824")],
    ));
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(
        glusterd.writes(),
        [
            "volume set csi-pvc-1 features.soft-timeout 0 features.hard-timeout 0",
            "volume set csi-pvc-1 auth.allow 10.0.0.9",
            "volume start csi-pvc-1",
            "volume quota csi-pvc-1 enable",
            "volume quota csi-pvc-1 limit-usage / 1073741824",
        ]
    );

    // A volume started under other settings is handed out as it is: its
    // bricks cannot take TLS while they run.
    glusterd.insert(volume_info(
        "csi-pvc-2",
        VolumeStatus::Started,
        &[("user.csi.name", "pvc-2"), ("user.csi.size", "1073741824")],
    ));
    glusterd.clear_writes();
    provisioner.create(&request("pvc-2", &[])).await.unwrap();
    assert!(
        !glusterd
            .writes()
            .iter()
            .any(|w| w.contains("auth.allow") || w.contains("ssl")),
        "{:?}",
        glusterd.writes()
    );
}

// --- sizes: quota and ControllerExpandVolume -------------------------------

const GIB: u64 = 1 << 30;

fn sized(name: &str, required: u64, limit: u64, params: &[(&str, &str)]) -> CreateRequest {
    let mut request = request(name, params);
    request.capacity = CapacityRange {
        required_bytes: required,
        limit_bytes: limit,
    };
    request
}

fn range(required: u64, limit: u64) -> CapacityRange {
    CapacityRange {
        required_bytes: required,
        limit_bytes: limit,
    }
}

fn quota_writes(writes: &[String]) -> Vec<&str> {
    writes
        .iter()
        .map(String::as_str)
        .filter(|w| w.starts_with("volume quota") || w.contains("timeout"))
        .collect()
}

#[tokio::test]
async fn a_create_cut_short_at_any_quota_step_is_finished_by_the_retry() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    let marks = [(OPT_CSI_NAME, "pvc-1"), (OPT_CSI_SIZE, "1073741824")];
    // Started, quota never enabled (the controller died after the start).
    glusterd.insert(volume_info("csi-pvc-1", VolumeStatus::Started, &marks));
    let first = provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(
        glusterd.writes(),
        [
            "volume set csi-pvc-1 features.soft-timeout 0 features.hard-timeout 0",
            "volume quota csi-pvc-1 enable",
            "volume quota csi-pvc-1 limit-usage / 1073741824",
        ]
    );
    assert_eq!(first.capacity_bytes, GIB);
    // Enabled, no limit yet (it died between the two).
    let mut enabled = volume_info(
        "csi-pvc-2",
        VolumeStatus::Started,
        &[(OPT_CSI_NAME, "pvc-2"), (OPT_CSI_SIZE, "1073741824")],
    );
    enabled.options.insert("features.quota".into(), "on".into());
    glusterd.insert(enabled);
    glusterd.clear_writes();
    provisioner.create(&request("pvc-2", &[])).await.unwrap();
    assert_eq!(
        quota_writes(&glusterd.writes()),
        [
            "volume set csi-pvc-2 features.soft-timeout 0 features.hard-timeout 0",
            "volume quota csi-pvc-2 limit-usage / 1073741824"
        ]
    );
    // Done: the retries only set the same limit again.
    for name in ["pvc-1", "pvc-2"] {
        glusterd.clear_writes();
        provisioner.create(&request(name, &[])).await.unwrap();
        assert_eq!(
            glusterd.writes(),
            [format!("volume quota csi-{name} limit-usage / 1073741824")]
        );
    }
}

#[tokio::test]
async fn a_failed_quota_enable_is_rolled_back_and_retried() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    glusterd.fail_next_quota_enables(1);
    let err = provisioner
        .create(&request("pvc-1", &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("enabling quota"), "{err}");
    assert!(glusterd.get("csi-pvc-1").is_none(), "rolled back");
    assert_eq!(bricks.removed().len(), 3);
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(glusterd.quota_limit_of("csi-pvc-1"), Some(GIB));
}

#[tokio::test]
async fn enforcement_off_or_no_size_means_no_quota() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    let off = request("pvc-1", &[("enforceCapacity", "false")]);
    let no_size = sized("pvc-2", 0, 0, &[]);
    for request in [&off, &no_size, &off, &no_size] {
        provisioner.create(request).await.unwrap();
    }
    assert!(
        quota_writes(&glusterd.writes()).is_empty(),
        "{:?}",
        glusterd.writes()
    );
    assert!(!glusterd.get("csi-pvc-1").unwrap().quota_enabled());
    // A StorageClass's own timeouts win over the driver's.
    provisioner
        .create(&request(
            "pvc-3",
            &[("volumeOptions", "features.soft-timeout=5")],
        ))
        .await
        .unwrap();
    assert!(glusterd.writes().contains(
        &"volume set csi-pvc-3 features.hard-timeout 0 features.soft-timeout 5".to_string()
    ));
}

#[tokio::test]
async fn expand_raises_the_limit_then_the_record_and_twice_is_once() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    glusterd.clear_writes();
    let size = provisioner
        .expand("csi-pvc-1", range(2 * GIB, 0))
        .await
        .unwrap();
    assert_eq!(size, 2 * GIB);
    assert_eq!(
        glusterd.writes(),
        [
            "volume quota csi-pvc-1 limit-usage / 2147483648",
            "volume set csi-pvc-1 user.csi.size 2147483648",
        ]
    );
    glusterd.clear_writes();
    let again = provisioner
        .expand("csi-pvc-1", range(2 * GIB, 2 * GIB))
        .await
        .unwrap();
    assert_eq!(again, 2 * GIB);
    assert!(glusterd.writes().is_empty(), "{:?}", glusterd.writes());
    // ListVolumes and a CreateVolume retry with the old size report the new one.
    assert_eq!(
        provisioner
            .get("csi-pvc-1")
            .await
            .unwrap()
            .unwrap()
            .capacity_bytes,
        2 * GIB
    );
    let retried = provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(retried.capacity_bytes, 2 * GIB);
    // The recorded (grown) size is enforced again, never the request's.
    assert_eq!(
        glusterd.writes(),
        ["volume quota csi-pvc-1 limit-usage / 2147483648"]
    );
    assert_eq!(glusterd.quota_limit_of("csi-pvc-1"), Some(2 * GIB));
    // ...unless the old request's limit excludes the new size.
    let err = provisioner
        .create(&sized("pvc-1", GIB, GIB, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
}

#[tokio::test]
async fn expand_cut_short_after_the_limit_is_finished_by_the_retry() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    glusterd
        .set_quota_limit("csi-pvc-1", 2 * GIB)
        .await
        .unwrap();
    glusterd.clear_writes();
    provisioner
        .expand("csi-pvc-1", range(2 * GIB, 0))
        .await
        .unwrap();
    // The record is behind: the same limit again, then the record.
    assert_eq!(
        glusterd.writes(),
        [
            "volume quota csi-pvc-1 limit-usage / 2147483648",
            "volume set csi-pvc-1 user.csi.size 2147483648"
        ]
    );
}

#[tokio::test]
async fn expand_never_shrinks() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    glusterd.clear_writes();
    // Already as large as required: OK, the size it has (CSI: "SHOULD reply 0 OK").
    for _ in 0..2 {
        let size = provisioner
            .expand("csi-pvc-1", range(GIB / 2, 0))
            .await
            .unwrap();
        assert_eq!(size, GIB);
    }
    // A limit below the size cannot be met: OUT_OF_RANGE, nothing changed.
    for _ in 0..2 {
        let err = provisioner
            .expand("csi-pvc-1", range(GIB / 2, GIB / 2))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err}");
        assert!(err.to_string().contains("never shrink"), "{err}");
    }
    assert!(glusterd.writes().is_empty(), "{:?}", glusterd.writes());
    assert_eq!(glusterd.quota_limit_of("csi-pvc-1"), Some(GIB));
}

#[tokio::test]
async fn expand_of_what_is_not_ours_or_not_there() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    glusterd.insert(volume_info("csi-pvc-7", VolumeStatus::Started, &[]));
    glusterd.insert(volume_info(
        "csi-pvc-9",
        VolumeStatus::Stopped,
        &[(OPT_CSI_NAME, "pvc-9"), (OPT_CSI_DELETING, "1")],
    ));
    for _ in 0..2 {
        for (id, code) in [
            ("csi-pvc-1", Code::NotFound),
            ("not a volume id", Code::NotFound),
            ("csi-pvc-9", Code::NotFound),
            ("csi-pvc-7", Code::FailedPrecondition),
        ] {
            let err = provisioner.expand(id, range(GIB, 0)).await.unwrap_err();
            assert_eq!(err.code(), code, "{id}: {err}");
        }
    }
    assert!(glusterd.writes().is_empty());
}

#[tokio::test]
async fn expand_without_quota_records_the_size_only() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner
        .create(&request("pvc-1", &[("enforceCapacity", "false")]))
        .await
        .unwrap();
    glusterd.clear_writes();
    for _ in 0..2 {
        let size = provisioner
            .expand("csi-pvc-1", range(3 * GIB, 0))
            .await
            .unwrap();
        assert_eq!(size, 3 * GIB);
    }
    assert_eq!(
        glusterd.writes(),
        ["volume set csi-pvc-1 user.csi.size 3221225472"]
    );
    assert!(!glusterd.get("csi-pvc-1").unwrap().quota_enabled());
}

#[tokio::test]
async fn sizes_are_enforced_by_default_on_10x_pools_only() {
    let quota_writes = |writes: Vec<String>| -> Vec<String> {
        writes.into_iter().filter(|w| w.contains("quota")).collect()
    };
    let (provisioner, glusterd, _) = fakes::provisioner();
    glusterd.set_op_versions(100000, 100000);
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(quota_writes(glusterd.writes()).len(), 2, "10.x: enforced");

    let (provisioner, glusterd, _) = fakes::provisioner();
    glusterd.set_op_versions(100000, 110000);
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert!(
        quota_writes(glusterd.writes()).is_empty(),
        "every server 11.x: not by default"
    );
    glusterd.clear_writes();
    provisioner
        .create(&request("pvc-2", &[("enforceCapacity", "true")]))
        .await
        .unwrap();
    assert_eq!(
        quota_writes(glusterd.writes()),
        [
            "volume quota csi-pvc-2 enable",
            "volume quota csi-pvc-2 limit-usage / 1073741824"
        ],
        "asked for: enforced"
    );
}

// --- subdirectory mode ------------------------------------------------------

fn in_pool(name: &str, pool: &str) -> CreateRequest {
    request(name, &[("pool", pool)])
}

/// The first create makes the pool (marked, started, quota on), then the
/// directory with its limit; the retry answers the same and makes nothing.
#[tokio::test]
async fn a_directory_volume_is_made_once_in_a_pool_made_once() {
    let (provisioner, glusterd, directories) = fakes::provisioner_with_pools();
    let first = provisioner
        .create(&in_pool("pvc-1", "shared"))
        .await
        .unwrap();
    assert_eq!(first.id, "shared/csi-pvc-1");
    assert_eq!(first.context.volume, "shared/csi-pvc-1");
    assert_eq!(first.context.servers().len(), 3);
    assert_eq!(
        glusterd.writes(),
        [
            "volume create shared",
            "volume set shared user.csi.pool created",
            "volume set shared features.soft-timeout 0 features.hard-timeout 0",
            "volume start shared",
            "volume quota shared enable",
            "volume quota shared limit-usage /csi-pvc-1 1073741824",
        ]
    );
    assert_eq!(glusterd.quota_limit_of("shared/csi-pvc-1"), Some(GIB));
    glusterd.clear_writes();
    let second = provisioner
        .create(&in_pool("pvc-1", "shared"))
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(
        glusterd.writes(),
        ["volume quota shared limit-usage /csi-pvc-1 1073741824"]
    );
    // Another volume reuses the pool as it is.
    glusterd.clear_writes();
    provisioner
        .create(&in_pool("pvc-2", "shared"))
        .await
        .unwrap();
    assert_eq!(
        glusterd.writes(),
        ["volume quota shared limit-usage /csi-pvc-2 1073741824"]
    );
    assert_eq!(
        directories.calls(),
        [
            "make shared/csi-pvc-1",
            "make shared/csi-pvc-1",
            "make shared/csi-pvc-2"
        ]
    );
}

#[tokio::test]
async fn directories_refuse_what_is_not_theirs() {
    let (provisioner, glusterd, directories) = fakes::provisioner_with_pools();
    // A volume of someone else's, not adopted as a pool.
    let mut theirs = volume_info("theirs", VolumeStatus::Started, &[]);
    theirs.name = "theirs".into();
    glusterd.insert(theirs);
    let err = provisioner
        .create(&in_pool("pvc-1", "theirs"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("user.csi.pool"), "{err}");
    let err = provisioner.delete("theirs/csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(directories.calls().is_empty());

    // Adopted: a directory it holds under the driver's name is never taken.
    glusterd.clear_writes();
    let mut adopted = volume_info(
        "theirs",
        VolumeStatus::Started,
        &[("user.csi.pool", "adopted")],
    );
    adopted.name = "theirs".into();
    glusterd.insert(adopted);
    directories.put(
        "theirs",
        "csi-pvc-1",
        DirectoryState::Foreign("a directory with files".into()),
    );
    let err = provisioner
        .create(&in_pool("pvc-1", "theirs"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    let err = provisioner.delete("theirs/csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    // Another CSI volume's directory under the same name.
    directories.put(
        "theirs",
        "csi-pvc-2",
        DirectoryState::Ours {
            csi_name: "PVC-2".into(),
            size_bytes: GIB,
            deleting: false,
        },
    );
    let err = provisioner
        .create(&in_pool("pvc-2", "theirs"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    // Nothing was made, marked or removed.
    assert!(directories.calls().is_empty(), "{:?}", directories.calls());
    // (Adopting a pool turns quota on in it, nothing more.)
    assert_eq!(glusterd.writes(), ["volume quota theirs enable"]);

    // Pool names inside the driver's own namespace never get that far.
    let params = HashMap::from([("pool".to_string(), "csi-pvc-9".to_string())]);
    let err = StorageClassParams::parse(&params).unwrap_err();
    assert!(err.to_string().starts_with("parameters.pool: "), "{err}");
}

/// Delete: marked, limit dropped, removed; again is success. A delete cut
/// short is finished by the next create of the same name.
#[tokio::test]
async fn directory_deletes_finish_and_repeat() {
    let (provisioner, glusterd, directories) = fakes::provisioner_with_pools();
    let made = provisioner
        .create(&in_pool("pvc-1", "shared"))
        .await
        .unwrap();
    glusterd.clear_writes();
    provisioner.delete(&made.id).await.unwrap();
    assert_eq!(glusterd.writes(), ["volume quota shared remove /csi-pvc-1"]);
    assert_eq!(
        directories.get("shared", "csi-pvc-1"),
        DirectoryState::Missing
    );
    provisioner.delete(&made.id).await.unwrap();
    // Ids never handed out, and missing pools: nothing to do.
    provisioner.delete("nopool/csi-pvc-1").await.unwrap();

    directories.put(
        "shared",
        "csi-pvc-3",
        DirectoryState::Ours {
            csi_name: "pvc-3".into(),
            size_bytes: GIB,
            deleting: true,
        },
    );
    let again = provisioner
        .create(&in_pool("pvc-3", "shared"))
        .await
        .unwrap();
    assert_eq!(again.id, "shared/csi-pvc-3");
    let calls = directories.calls();
    assert_eq!(
        calls[calls.len() - 3..],
        [
            "mark_deleting shared/csi-pvc-3",
            "remove shared/csi-pvc-3",
            "make shared/csi-pvc-3"
        ]
    );
}

#[tokio::test]
async fn directory_expansion_raises_the_limit_then_the_record() {
    let (provisioner, glusterd, directories) = fakes::provisioner_with_pools();
    let made = provisioner
        .create(&in_pool("pvc-1", "shared"))
        .await
        .unwrap();
    glusterd.clear_writes();
    let grow = CapacityRange {
        required_bytes: 2 * GIB,
        limit_bytes: 0,
    };
    assert_eq!(provisioner.expand(&made.id, grow).await.unwrap(), 2 * GIB);
    assert_eq!(
        glusterd.writes(),
        ["volume quota shared limit-usage /csi-pvc-1 2147483648"]
    );
    assert_eq!(
        directories.get("shared", "csi-pvc-1"),
        DirectoryState::Ours {
            csi_name: "pvc-1".into(),
            size_bytes: 2 * GIB,
            deleting: false
        }
    );
    let shrink = CapacityRange {
        required_bytes: GIB,
        limit_bytes: GIB,
    };
    let err = provisioner.expand(&made.id, shrink).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    let err = provisioner
        .expand("shared/csi-pvc-9", grow)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn without_pool_mounts_subdirectory_mode_is_refused_by_name() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    let err = provisioner
        .create(&in_pool("pvc-1", "shared"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.to_string().starts_with("parameters.pool: ")
            && err.to_string().contains("--pool-mount-dir"),
        "{err}"
    );
    assert!(glusterd.writes().is_empty());
}

/// A pool someone stopped stays stopped: creates, deletes and expansions in
/// it are UNAVAILABLE until it is started again.
#[tokio::test]
async fn a_stopped_pool_is_not_started_by_the_driver() {
    let (provisioner, glusterd, directories) = fakes::provisioner_with_pools();
    let made = provisioner
        .create(&in_pool("pvc-1", "shared"))
        .await
        .unwrap();
    let mut stopped = glusterd.get("shared").unwrap();
    stopped.status = VolumeStatus::Stopped;
    glusterd.insert(stopped);
    glusterd.clear_writes();
    for err in [
        provisioner
            .create(&in_pool("pvc-2", "shared"))
            .await
            .unwrap_err(),
        provisioner.delete(&made.id).await.unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(
            err.to_string().contains("gluster volume start shared"),
            "{err}"
        );
    }
    assert!(glusterd.writes().is_empty(), "{:?}", glusterd.writes());
    assert_eq!(directories.calls(), ["make shared/csi-pvc-1"]);
}

/// ListVolumes shows the directories of started pools beside the volumes,
/// in id order, pages through both, and reads a pool's health once.
#[tokio::test]
async fn directories_are_listed_with_their_pools_health() {
    let (provisioner, glusterd, directories) = fakes::provisioner_with_pools();
    provisioner.create(&request("pvc-1", &[])).await.unwrap();
    for name in ["pvc-2", "pvc-3"] {
        provisioner.create(&in_pool(name, "shared")).await.unwrap();
    }
    // Not the driver's: never listed.
    directories.put("shared", "csi-pvc-9", DirectoryState::UnmarkedEmpty);
    let all = provisioner.list(None, 0).await.unwrap();
    let ids: Vec<&str> = all.volumes.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["csi-pvc-1", "shared/csi-pvc-2", "shared/csi-pvc-3"]);
    let first = provisioner.list(None, 2).await.unwrap();
    assert_eq!(first.next.as_deref(), Some("shared/csi-pvc-2"));
    let second = provisioner.list(first.next.as_deref(), 2).await.unwrap();
    assert_eq!(second.volumes[0].id, "shared/csi-pvc-3");
    assert_eq!(second.next, None);
    glusterd.clear_writes();
    let (page, health) = provisioner.list_with_health(None, 0).await.unwrap();
    assert_eq!(page.volumes.len(), 3);
    assert!(
        health
            .iter()
            .all(|h| h.as_ref().is_ok_and(|h| !h.abnormal())),
        "{health:?}"
    );
    // Without pool mounts, pools' directories are not listed (and nothing fails).
    let (plain, _, _) = fakes::provisioner();
    assert!(plain.list(None, 0).await.unwrap().volumes.is_empty());
}

/// A create cut short between its mkdir and its marks left an empty,
/// unmarked directory: the retry finishes it; a delete refuses it.
#[tokio::test]
async fn an_empty_unmarked_directory_is_finished_by_the_create_retry() {
    let (provisioner, glusterd, directories) = fakes::provisioner_with_pools();
    provisioner
        .create(&in_pool("pvc-0", "shared"))
        .await
        .unwrap();
    directories.put("shared", "csi-pvc-1", DirectoryState::UnmarkedEmpty);
    let err = provisioner.delete("shared/csi-pvc-1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    glusterd.clear_writes();
    let made = provisioner
        .create(&in_pool("pvc-1", "shared"))
        .await
        .unwrap();
    assert_eq!(made.id, "shared/csi-pvc-1");
    assert!(matches!(
        directories.get("shared", "csi-pvc-1"),
        DirectoryState::Ours {
            deleting: false,
            ..
        }
    ));
    assert_eq!(
        glusterd.writes(),
        ["volume quota shared limit-usage /csi-pvc-1 1073741824"]
    );
}
