//! Zone-aware placement against a real 4-server pool: a controller of its
//! own (`--server-zone`) beside a dev cluster, whose bricks' servers are
//! read back from glusterd.

mod common;

use std::collections::BTreeSet;

use common::controller::StandaloneController;
use common::*;
use glusterfs_csi::gluster::xml::Envelope;
use glusterfs_csi::proto::csi::*;
use tonic::Code;

/// Zones a, a, b, c and replica 3: every volume gets one brick in each
/// zone. Distinct zones asked of the three servers in a and b: refused with
/// RESOURCE_EXHAUSTED naming both zones and their servers, nothing made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_over_zones_and_distinct_zones_are_required_when_asked() {
    let driver = DevDriver::start_with(&["--nodes".to_string(), "4".to_string()]).await;
    let servers = driver.cluster.addresses();
    let zone_names = ["a", "a", "b", "c"];
    let zone_of = |server: &str| {
        let index = servers.iter().position(|s| s == server).unwrap();
        zone_names[index]
    };
    let flags: Vec<String> = servers
        .iter()
        .zip(zone_names)
        .map(|(server, zone)| format!("--server-zone={server}={zone}"))
        .collect();
    let socket = driver.kubelet.path().join("zoned-controller.sock");
    let controller = StandaloneController::start_with(&driver.cluster, socket, &flags).await;
    let mut client = controller.client();

    let mut ids = Vec::new();
    for n in 0..6 {
        let request = create_request(&format!("pvc-zoned-{n}"), &[("enforceCapacity", "false")]);
        let volume = client
            .create_volume(request)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", controller.log()))
            .into_inner()
            .volume
            .unwrap();
        let xml = driver.gluster(&["volume", "info", &volume.volume_id]);
        let info = Envelope::parse("volume info", &xml)
            .and_then(|e| e.volumes())
            .unwrap();
        let zones: BTreeSet<&str> = info[0].bricks.iter().map(|b| zone_of(&b.host)).collect();
        assert_eq!(
            zones,
            BTreeSet::from(["a", "b", "c"]),
            "{}: {:?}",
            volume.volume_id,
            info[0].bricks
        );
        ids.push(volume.volume_id);
    }

    let in_a_and_b = servers[..3].join(",");
    let request = create_request(
        "pvc-zoned-distinct",
        &[
            ("enforceCapacity", "false"),
            ("zones", "distinct"),
            ("servers", &in_a_and_b),
        ],
    );
    let err = client.create_volume(request).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let expected = format!(
        "are in 2: a ({}, {}), b ({})",
        servers[0], servers[1], servers[2]
    );
    assert!(err.message().contains(&expected), "{}", err.message());
    assert!(
        !driver.volume_names().iter().any(|v| v.contains("distinct")),
        "nothing made"
    );

    for id in ids {
        client
            .delete_volume(DeleteVolumeRequest {
                volume_id: id,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert!(driver.volume_names().is_empty());
}
