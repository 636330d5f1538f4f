//! Health and capacity logic against fake glusterd and brick agents.

use std::collections::HashMap;

use tonic::Code;

use super::*;
use crate::fakes::{self, brick_root_report, volume_info};

fn request(name: &str) -> CreateRequest {
    CreateRequest {
        csi_name: name.to_string(),
        capacity: CapacityRange {
            required_bytes: 1 << 30,
            limit_bytes: 0,
        },
        params: params(&[]),
    }
}

fn params(pairs: &[(&str, &str)]) -> StorageClassParams {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    StorageClassParams::parse(&map).unwrap()
}

#[tokio::test]
async fn health_is_read_only_and_names_what_is_wrong() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    let volume = provisioner.create(&request("pvc-1")).await.unwrap();
    let id = volume.id.to_string();
    glusterd.clear_writes();

    let (seen, health) = provisioner.health(&id).await.unwrap().unwrap();
    assert_eq!(seen, volume);
    assert!(!health.abnormal(), "{}", health.message());

    glusterd.set_brick_down("b:/bricks/csi-pvc-1", true);
    for _ in 0..2 {
        let (_, health) = provisioner.health(&id).await.unwrap().unwrap();
        assert!(health.abnormal());
        assert!(
            health
                .message()
                .starts_with("brick b:/bricks/csi-pvc-1 on server b is down"),
            "{}",
            health.message()
        );
    }
    glusterd.set_brick_down("b:/bricks/csi-pvc-1", false);

    glusterd.silence("c");
    let (_, health) = provisioner.health(&id).await.unwrap().unwrap();
    assert!(
        health
            .message()
            .contains("glusterd on server c does not answer"),
        "{}",
        health.message()
    );

    let (provisioner, glusterd, _) = fakes::provisioner();
    provisioner.create(&request("pvc-1")).await.unwrap();
    glusterd.set_heal("csi-pvc-1", 4, 0);
    let (_, health) = provisioner.health(&id).await.unwrap().unwrap();
    assert_eq!((health.heal_pending(), health.split_brain()), (4, 0));
    assert!(health.message().starts_with("4 entries pending heal"));
    glusterd.set_heal("csi-pvc-1", 0, 2);
    let (_, health) = provisioner.health(&id).await.unwrap().unwrap();
    assert!(health.message().starts_with("2 files in split-brain"));
    glusterd.break_heal();
    let (_, health) = provisioner.health(&id).await.unwrap().unwrap();
    assert!(health.abnormal());
    assert!(health.message().contains("self-heal state is unknown"));
    assert!(glusterd.writes().iter().all(|w| !w.contains("heal")));
}

#[tokio::test]
async fn health_of_what_is_not_ours_is_none() {
    let (provisioner, glusterd, _) = fakes::provisioner();
    assert!(provisioner.health("csi-pvc-9").await.unwrap().is_none());
    assert!(provisioner.health("not-an-id").await.unwrap().is_none());
    glusterd.insert(volume_info("csi-pvc-8", VolumeStatus::Started, &[]));
    assert!(provisioner.health("csi-pvc-8").await.unwrap().is_none());
    glusterd.insert(volume_info(
        "csi-pvc-7",
        VolumeStatus::Stopped,
        &[("user.csi.name", "pvc-7"), ("user.csi.size", "1")],
    ));
    let (_, health) = provisioner.health("csi-pvc-7").await.unwrap().unwrap();
    assert!(health.abnormal() && health.message().contains("not started"));
}

#[tokio::test]
async fn capacity_is_the_replica_th_emptiest_allowed_server() {
    let (provisioner, glusterd, bricks) = fakes::provisioner();
    let free = |gib: u64| {
        let mut report = brick_root_report(true);
        report.available_bytes = gib << 30;
        report
    };
    bricks.set_root("a", free(9));
    bricks.set_root("b", free(2));
    bricks.set_root("c", free(5));
    let capacity = |p: StorageClassParams| {
        let provisioner = &provisioner;
        async move { provisioner.capacity(&p).await.map(|c| c.available_bytes) }
    };
    assert_eq!(capacity(params(&[])).await.unwrap(), 2 << 30);
    assert_eq!(
        capacity(params(&[("replica", "2")])).await.unwrap(),
        5 << 30
    );
    assert_eq!(
        capacity(params(&[("replica", "1")])).await.unwrap(),
        9 << 30
    );
    assert_eq!(
        capacity(params(&[("replica", "2"), ("servers", "a,b")]))
            .await
            .unwrap(),
        2 << 30
    );
    bricks.set_root("a", brick_root_report(false));
    assert_eq!(
        capacity(params(&[("replica", "2")])).await.unwrap(),
        2 << 30,
        "a root on the root file system takes no brick unless allowed"
    );
    assert_eq!(
        capacity(params(&[
            ("replica", "2"),
            ("allowRootFilesystemBricks", "true")
        ]))
        .await
        .unwrap(),
        5 << 30
    );
    let root = params(&[("brickRoot", "/data/bricks")]);
    capacity(root).await.unwrap();
    assert!(bricks.checked().contains(&"b:/data/bricks".to_string()));

    glusterd.disconnect("c");
    assert_eq!(capacity(params(&[])).await.unwrap(), 0, "two servers left");
    bricks.fail_root_checks("b");
    assert_eq!(capacity(params(&[("replica", "2")])).await.unwrap(), 0);

    let err = capacity(params(&[("servers", "a,zz")])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.to_string().contains("parameters.servers"), "{err}");
}
