//! Provisioning logic against fake glusterd and brick agents: idempotency,
//! rollback and failure handling, each RPC-level operation run twice.

use std::collections::HashMap;

use tonic::Code;

use super::*;
use crate::fakes::{self, volume_info};
use crate::gluster::GlusterError;

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
            "volume start csi-pvc-1",
        ]
    );
    let second = provisioner.create(&request("pvc-1", &[])).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(glusterd.writes(), writes, "the retry only reads");
    assert_eq!(first.context.servers().len(), 3);
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

#[tokio::test]
async fn list_pages_only_our_live_volumes() {
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
    let second = provisioner.list(first.next.as_ref(), 2).await.unwrap();
    let third = provisioner.list(second.next.as_ref(), 2).await.unwrap();
    assert_eq!(third.volumes.len(), 1);
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
            "csi-pvc-5"
        ]
    );
}
