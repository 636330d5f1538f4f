//! Migration of in-tree PersistentVolumes as Kubernetes serves them
//! (`tests/fixtures/migrate/`): what is read and how Endpoints resolve, what
//! is refused and named, what is written, and that a written volume stages
//! through the node service and is left alone by DeleteVolume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::Request;
use yaml_serde::Value;

use super::input::{InputError, parse_objects};
use super::plan::{EndpointsFrom, Migration, Plan, Settings, plan, volume_handle};
use super::*;
use crate::cli::MigrateArgs;
use crate::csi::controller::ControllerService;
use crate::csi::node::NodeService;
use crate::fakes::{FakeLookup, FakeMounter, volume_info};
use crate::gluster::VolumeStatus;
use crate::names::VolumeName;
use crate::node::{NodeConfig, NodeVolumes};
use crate::proto::csi::controller_server::Controller;
use crate::proto::csi::node_server::Node;
use crate::proto::csi::volume_capability::access_mode::Mode;
use crate::proto::csi::volume_capability::{AccessMode, AccessType, MountVolume};
use crate::proto::csi::*;
use crate::volume_context::{MAX_VOLUME_ID, VolumeContext};

const HEKETI_PV: &str = "pvc-5f1c2a9e-7b3d-4c8e-9a61-2d4f6b8c0e13";
const HEKETI_VOLUME: &str = "vol_7a3f0e6c9b1d4e2f8a5c6b7d9e0f1a2b";
const LEGACY_PV: &str = "pvc-8e155928-f77f-11e8-b229-005056a5c1c4";

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/migrate/{name}"))
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

fn settings() -> Settings {
    Settings {
        driver_name: "glusterfs.csi.io".into(),
        name_suffix: "-csi".into(),
    }
}

fn plan_of(text: &str) -> Plan {
    plan(&parse_objects(text, "fixture").unwrap(), &settings()).unwrap()
}

fn find<'a>(plan: &'a Plan, old: &str) -> &'a Migration {
    plan.migrations
        .iter()
        .find(|m| m.old.name == old)
        .unwrap_or_else(|| panic!("{old} not migrated: {:?}", plan.unmigratable))
}

/// `text` with `from` replaced once; the fixture must hold `from`.
fn edited(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture lacks {from:?}");
    text.replacen(from, to, 1)
}

fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    yaml_serde::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| &v[*key])
}

fn text_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string in {value:?}"))
}

#[test]
fn heketi_volumes_resolve_their_endpoints_as_the_in_tree_plugin_did() {
    let plan = plan_of(&fixture("heketi.yaml"));
    assert!(plan.unmigratable.is_empty(), "{:?}", plan.unmigratable);
    assert_eq!(plan.migrations.len(), 2);
    assert_eq!(plan.other_volumes, 1, "the local-path volume is left alone");
    assert_eq!(plan.objects, 8);

    let m = find(&plan, HEKETI_PV);
    assert_eq!(m.new_name, format!("{HEKETI_PV}-csi"));
    assert_eq!(m.volume_handle, format!("{HEKETI_VOLUME}@{HEKETI_PV}"));
    assert_eq!(m.endpoints_from, EndpointsFrom::EndpointsNamespace);
    assert_eq!(m.endpoints_namespace, "apps");
    assert_eq!(m.context.volume, HEKETI_VOLUME);
    assert_eq!(m.context.server, "10.20.0.11");
    assert_eq!(m.context.backup_servers, ["10.20.0.12", "10.20.0.13"]);
    let claim = m.bind.as_ref().unwrap();
    assert_eq!(
        (claim.namespace.as_str(), claim.name.as_str()),
        ("apps", "data-web-0")
    );
    assert!(m.mount_options.is_empty());
    assert_eq!(m.annotations["pv.beta.kubernetes.io/gid"], "2001");
    assert_eq!(
        m.annotations["gluster.kubernetes.io/heketi-volume-id"],
        "7a3f0e6c9b1d4e2f8a5c6b7d9e0f1a2b"
    );
    assert_eq!(m.annotations["glusterfs.csi.io/migrated-from"], HEKETI_PV);
    assert!(m.old.provisioned_in_tree);
    assert!(
        m.notes
            .iter()
            .any(|n| n.contains("reclaim policy is Delete")),
        "{:?}",
        m.notes
    );

    // Before 1.13 Heketi named Endpoints after the claim and left
    // endpointsNamespace unset: the claim's namespace is the pod's.
    let legacy = find(&plan, LEGACY_PV);
    assert_eq!(legacy.endpoints_from, EndpointsFrom::ClaimNamespace);
    assert_eq!(legacy.endpoints_namespace, "legacy");
    assert_eq!(legacy.old.endpoints, "glusterfs-dynamic-db-data");
    assert_eq!(legacy.old.access_modes, ["ReadWriteOnce"]);
    assert_eq!(legacy.annotations["pv.beta.kubernetes.io/gid"], "2000");
}

#[test]
fn hand_made_volumes_keep_read_only_and_their_own_options() {
    let plan = plan_of(&fixture("hand-made.yaml"));
    assert!(plan.unmigratable.is_empty(), "{:?}", plan.unmigratable);
    let m = find(&plan, "gluster-shared");
    // endpointsNamespace wins over the claim's namespace (web).
    assert_eq!(m.endpoints_namespace, "storage");
    assert_eq!(m.context.volume, "gv0", "one leading / is the mount syntax");
    assert_eq!(m.context.servers(), ["192.168.10.21", "192.168.10.22"]);
    assert_eq!(m.mount_options, ["log-level=WARNING", "ro"]);
    assert_eq!(m.dropped_options, ["log-file=/var/log/gluster-shared.log"]);
    assert!(!m.old.provisioned_in_tree);
    assert!(!m.annotations.contains_key("pv.beta.kubernetes.io/gid"));

    let docs = documents(&manifests::new_volume(m, "glusterfs.csi.io"));
    let pv = &docs[0];
    assert_eq!(at(pv, &["spec", "csi", "readOnly"]).as_bool(), Some(true));
    assert_eq!(
        at(pv, &["spec", "accessModes"])
            .as_sequence()
            .unwrap()
            .len(),
        2
    );
    let runbook = runbook::render(&plan, "glusterfs.csi.io", "hand-made.yaml");
    assert!(
        !runbook.contains("endpoints/glusterfs-cluster"),
        "hand-made Endpoints may serve others: never suggested for deletion"
    );
    assert!(runbook.contains("nothing to undo (it was Retain already)"));
}

#[test]
fn json_lists_two_volumes_on_one_gluster_volume_and_a_released_one() {
    let plan = plan_of(&fixture("hand-made.json"));
    assert!(plan.unmigratable.is_empty(), "{:?}", plan.unmigratable);
    let library = find(&plan, "media-library");
    let archive = find(&plan, "media-archive");
    assert_eq!(library.endpoints_from, EndpointsFrom::ClaimNamespace);
    assert_eq!(
        library.context, archive.context,
        "same volume, same servers"
    );
    assert_ne!(
        library.volume_handle, archive.volume_handle,
        "handles are unique per PersistentVolume"
    );
    assert!(
        library
            .notes
            .iter()
            .any(|n| n.contains("also mounted through media-archive"))
    );

    assert!(archive.bind.is_none(), "a Released volume gets no claim");
    assert!(archive.notes.iter().any(|n| n.contains("Released")));
    let docs = documents(&manifests::new_volume(archive, "glusterfs.csi.io"));
    assert_eq!(docs.len(), 1, "no claim written");
    assert!(at(&docs[0], &["spec", "claimRef"]).is_null());
    assert!(manifests::old_claim(archive).is_none());
}

#[test]
fn missing_endpoints_are_reported_naming_the_volume_and_field() {
    let plan = plan_of(&fixture("missing-endpoints.yaml"));
    assert_eq!(plan.migrations.len(), 1);
    let [missing] = plan.unmigratable.as_slice() else {
        panic!("{:?}", plan.unmigratable)
    };
    assert_eq!(missing.pv, "pvc-a71fa382-f77d-11e8-b229-005056a5c1c4");
    assert_eq!(
        missing.error.object,
        "PersistentVolume pvc-a71fa382-f77d-11e8-b229-005056a5c1c4"
    );
    assert_eq!(missing.error.field, "spec.glusterfs.endpoints");
    assert!(
        missing.error.reason.contains(
            "Endpoints apps/glusterfs-dynamic-a71fa382-f77d-11e8-b229-005056a5c1c4 is not in the \
             input (looked in spec.glusterfs.endpointsNamespace)"
        ),
        "{}",
        missing.error
    );
    let runbook = runbook::render(&plan, "glusterfs.csi.io", "in");
    assert!(runbook.contains("## Not migrated"));
    // Endpoints of that name elsewhere: said, and still not used.
    let moved = edited(
        &fixture("missing-endpoints.yaml"),
        "    name: glusterfs-dynamic-5f1c2a9e-7b3d-4c8e-9a61-2d4f6b8c0e13\n    namespace: apps",
        "    name: glusterfs-dynamic-a71fa382-f77d-11e8-b229-005056a5c1c4\n    namespace: other",
    );
    let plan = plan_of(&moved);
    assert_eq!(plan.unmigratable.len(), 2, "{:?}", plan.unmigratable);
    assert!(
        plan.unmigratable[0]
            .error
            .reason
            .contains("Endpoints of that name are in namespace other"),
        "{}",
        plan.unmigratable[0].error
    );
    assert!(runbook.contains("- `pvc-a71fa382-f77d-11e8-b229-005056a5c1c4`: PersistentVolume"));
}

/// Each bad field makes its volume unmigratable, names the field, and
/// leaves the other volumes alone.
#[test]
fn bad_fields_are_refused_naming_the_field() {
    let heketi = fixture("heketi.yaml");
    let gid = "pv.beta.kubernetes.io/gid: \"2001\"";
    let path = format!("path: {HEKETI_VOLUME}");
    let namespace = "endpointsNamespace: apps";
    let policy = "    persistentVolumeReclaimPolicy: Delete\n";
    let cases: Vec<(String, String, &str, &str)> = vec![
        (
            path.clone(),
            format!("{path}/sub"),
            "spec.glusterfs.path",
            "inside a volume",
        ),
        (
            path.clone(),
            "path: -o".into(),
            "spec.glusterfs.path",
            "not a Gluster volume name",
        ),
        (
            namespace.into(),
            format!("{namespace}\n      readOnly: \"yes\""),
            "spec.glusterfs.readOnly",
            "expected true or false, found a string",
        ),
        (
            namespace.into(),
            "endpointsNamespace: \"\"".into(),
            "spec.glusterfs.endpointsNamespace",
            "empty",
        ),
        (
            gid.into(),
            "pv.beta.kubernetes.io/gid: \"-1\"".into(),
            "metadata.annotations[\"pv.beta.kubernetes.io/gid\"]",
            "not a group id",
        ),
        (
            gid.into(),
            "pv.beta.kubernetes.io/gid: \"4294967296\"".into(),
            "metadata.annotations[\"pv.beta.kubernetes.io/gid\"]",
            "not a group id",
        ),
        (
            "storage: 5Gi".into(),
            "storage: 5GB".into(),
            "spec.capacity.storage",
            "not a Kubernetes quantity",
        ),
        (
            "    - ReadWriteMany".into(),
            "    - ReadWriteSometimes".into(),
            "spec.accessModes[0]",
            "not one of",
        ),
        (
            policy.into(),
            format!("    mountOptions:\n    - acl\n    - transport=rdma\n{policy}"),
            "spec.mountOptions[1]",
            "node plugin would refuse",
        ),
        (
            policy.into(),
            format!("    mountOptions:\n    - ro,rw\n{policy}"),
            "spec.mountOptions",
            "contradict",
        ),
        (
            "    volumeMode: Filesystem".into(),
            "    volumeMode: Block".into(),
            "spec.volumeMode",
            "only Filesystem",
        ),
        (
            "    - ip: 10.20.0.12".into(),
            "    - ip: fd00::12".into(),
            "spec.glusterfs.endpoints",
            "subsets[0].addresses[1].ip: \"fd00::12\" is IPv6",
        ),
        (
            "    - ip: 10.20.0.12".into(),
            "    - ip: gluster-2".into(),
            "spec.glusterfs.endpoints",
            "\"gluster-2\" is not an IP address",
        ),
    ];
    for (from, to, field, reason) in cases {
        let plan = plan_of(&edited(&heketi, &from, &to));
        let [refused] = plan.unmigratable.as_slice() else {
            panic!("{to:?}: {:?}", plan.unmigratable)
        };
        assert_eq!(refused.pv, HEKETI_PV, "{to:?}");
        assert_eq!(refused.error.field, field, "{to:?}: {}", refused.error);
        assert!(
            refused.error.reason.contains(reason),
            "{to:?}: {}",
            refused.error
        );
        assert_eq!(plan.migrations.len(), 1, "the other volume still migrates");
    }
}

#[test]
fn new_names_must_be_free_and_valid() {
    let heketi = fixture("heketi.yaml");
    // Another PersistentVolume already has the name the new one would get.
    let taken = edited(
        &heketi,
        "name: pvc-1e6b6f0c-2d55-4d43-8a0e-5c1f4a9b7e22",
        &format!("name: {HEKETI_PV}-csi"),
    );
    let plan = plan_of(&taken);
    assert_eq!(plan.unmigratable[0].error.field, "metadata.name");
    assert!(plan.unmigratable[0].error.reason.contains("already exists"));

    let long = "p".repeat(251);
    let plan = plan_of(&edited(
        &heketi,
        &format!("name: {HEKETI_PV}"),
        &format!("name: {long}"),
    ));
    assert_eq!(plan.unmigratable[0].error.field, "metadata.name");
    assert!(plan.unmigratable[0].error.reason.contains("255 characters"));

    let objects = parse_objects(&heketi, "in").unwrap();
    let mut twice = objects.clone();
    twice.push(objects[0].clone());
    assert_eq!(
        plan::plan(&twice, &settings()).unwrap_err(),
        InputError::Duplicate(format!("PersistentVolume {HEKETI_PV}"))
    );
}

#[test]
fn handles_are_bounded_and_never_driver_volume_ids() {
    for (volume, pv) in [
        ("csi-pvc-1", "pvc-1"),
        ("csi_x_0123456789abcdef", "x"),
        (HEKETI_VOLUME, HEKETI_PV),
        (&"v".repeat(128), &"p".repeat(253)),
    ] {
        let handle = volume_handle(volume, pv);
        assert!(handle.len() <= MAX_VOLUME_ID, "{handle}");
        assert!(handle.starts_with(&format!("{volume}@")), "{handle}");
        assert_eq!(VolumeName::parse(&handle), None, "{handle}");
    }
    let long = "v".repeat(128);
    assert_ne!(
        volume_handle(&long, &"p".repeat(253)),
        volume_handle(&long, &format!("{}q", "p".repeat(252))),
        "distinct volumes keep distinct handles"
    );
}

#[test]
fn written_manifests_bind_the_same_claim_and_roll_back() {
    let plan = plan_of(&fixture("heketi.yaml"));
    let m = find(&plan, HEKETI_PV);
    let docs = documents(&manifests::new_volume(m, "example.csi.driver"));
    let [pv, pvc] = docs.as_slice() else {
        panic!("{docs:?}")
    };
    assert_eq!(text_at(pv, &["kind"]), "PersistentVolume");
    assert_eq!(text_at(pv, &["metadata", "name"]), m.new_name);
    assert_eq!(
        text_at(pv, &["spec", "persistentVolumeReclaimPolicy"]),
        "Retain"
    );
    assert_eq!(text_at(pv, &["spec", "storageClassName"]), "");
    assert_eq!(text_at(pv, &["spec", "capacity", "storage"]), "5Gi");
    assert_eq!(
        text_at(pv, &["spec", "csi", "driver"]),
        "example.csi.driver"
    );
    assert_eq!(
        text_at(pv, &["spec", "csi", "volumeHandle"]),
        m.volume_handle
    );
    assert_eq!(text_at(pv, &["spec", "claimRef", "namespace"]), "apps");
    assert_eq!(text_at(pv, &["spec", "claimRef", "name"]), "data-web-0");
    assert_eq!(
        text_at(
            pv,
            &["metadata", "annotations", "pv.beta.kubernetes.io/gid"]
        ),
        "2001",
        "kept as a string"
    );
    assert!(
        at(
            pv,
            &["metadata", "annotations", "pv.kubernetes.io/provisioned-by"]
        )
        .is_null()
    );
    let attributes: HashMap<String, String> =
        yaml_serde::from_value(at(pv, &["spec", "csi", "volumeAttributes"]).clone()).unwrap();
    assert_eq!(VolumeContext::from_map(&attributes).unwrap(), m.context);

    assert_eq!(text_at(pvc, &["kind"]), "PersistentVolumeClaim");
    assert_eq!(text_at(pvc, &["metadata", "namespace"]), "apps");
    assert_eq!(text_at(pvc, &["metadata", "name"]), "data-web-0");
    assert_eq!(text_at(pvc, &["spec", "volumeName"]), m.new_name);
    assert_eq!(text_at(pvc, &["spec", "storageClassName"]), "");
    assert_eq!(
        text_at(pvc, &["spec", "resources", "requests", "storage"]),
        "5Gi"
    );

    let old_text = manifests::old_volume(m);
    assert!(
        old_text.contains("pv.kubernetes.io/bound-by-controller: \"yes\""),
        "YAML 1.1 reads a plain yes as true:\n{old_text}"
    );
    let old = &documents(&old_text)[0];
    assert_eq!(text_at(old, &["metadata", "name"]), HEKETI_PV);
    assert_eq!(
        text_at(old, &["spec", "persistentVolumeReclaimPolicy"]),
        "Retain"
    );
    assert_eq!(text_at(old, &["spec", "glusterfs", "path"]), HEKETI_VOLUME);
    for gone in [
        &["metadata", "uid"][..],
        &["metadata", "resourceVersion"],
        &["metadata", "creationTimestamp"],
        &["status"],
        &["spec", "claimRef", "uid"],
        &["spec", "claimRef", "resourceVersion"],
    ] {
        assert!(
            at(old, gone).is_null(),
            "{gone:?} left in the rollback volume"
        );
    }
    assert_eq!(text_at(old, &["spec", "claimRef", "name"]), "data-web-0");
    let claim = &documents(&manifests::old_claim(m).unwrap())[0];
    assert_eq!(text_at(claim, &["spec", "volumeName"]), HEKETI_PV);
    assert_eq!(
        text_at(claim, &["spec", "storageClassName"]),
        "glusterfs-storage"
    );
}

#[test]
fn the_runbook_orders_every_step_and_says_how_to_undo_it() {
    let plan = plan_of(&fixture("heketi.yaml"));
    let runbook = runbook::render(&plan, "glusterfs.csi.io", "heketi.yaml");
    let order = [
        format!(
            "kubectl patch pv {HEKETI_PV} -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"Retain\"}}}}'"
        ),
        "kubectl describe pvc -n apps data-web-0 | grep '^Used By'".to_string(),
        "kubectl delete pvc -n apps data-web-0".to_string(),
        format!("kubectl apply -f rollback/{HEKETI_PV}.pvc.yaml"),
        format!("kubectl apply -f new/{HEKETI_PV}-csi.yaml"),
        format!("kubectl delete pv {HEKETI_PV}\n"),
        format!("kubectl apply -f rollback/{HEKETI_PV}.pv.yaml"),
        "kubectl delete -n apps service/glusterfs-dynamic-5f1c2a9e-7b3d-4c8e-9a61-2d4f6b8c0e13"
            .to_string(),
    ];
    let mut from = 0;
    for step in &order {
        let found = runbook[from..]
            .find(step.as_str())
            .unwrap_or_else(|| panic!("{step:?} missing or out of order in:\n{runbook}"));
        from += found + step.len();
    }
    assert!(runbook.contains("\"persistentVolumeReclaimPolicy\":\"Delete\"}}'` (it was Delete)"));
    assert!(runbook.contains("supplemental group 2001"));
    assert!(runbook.contains("`pv.beta.kubernetes.io/gid`"));
}

/// What the kubelet sends for a CSI PersistentVolume: the handle as the id,
/// the attributes as the context, the PV's mount options and access mode.
fn kubelet_requests(
    pv: &Value,
    staging: &Path,
    target: &Path,
) -> (NodeStageVolumeRequest, NodePublishVolumeRequest) {
    let modes: Vec<&str> = at(pv, &["spec", "accessModes"])
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mode = if modes.contains(&"ReadWriteOncePod") {
        Mode::SingleNodeSingleWriter
    } else if modes.contains(&"ReadWriteMany") {
        Mode::MultiNodeMultiWriter
    } else if modes.contains(&"ReadOnlyMany") {
        Mode::MultiNodeReaderOnly
    } else {
        Mode::SingleNodeWriter
    };
    let flags: Vec<String> = match at(pv, &["spec", "mountOptions"]).as_sequence() {
        Some(options) => options
            .iter()
            .map(|o| o.as_str().unwrap().to_string())
            .collect(),
        None => Vec::new(),
    };
    let capability = VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: String::new(),
            mount_flags: flags,
            volume_mount_group: String::new(),
        })),
    };
    let id = text_at(pv, &["spec", "csi", "volumeHandle"]).to_string();
    let context: HashMap<String, String> =
        yaml_serde::from_value(at(pv, &["spec", "csi", "volumeAttributes"]).clone()).unwrap();
    let read_only = at(pv, &["spec", "csi", "readOnly"])
        .as_bool()
        .unwrap_or(false);
    (
        NodeStageVolumeRequest {
            volume_id: id.clone(),
            staging_target_path: staging.to_string_lossy().into_owned(),
            volume_capability: Some(capability.clone()),
            volume_context: context.clone(),
            ..Default::default()
        },
        NodePublishVolumeRequest {
            volume_id: id,
            staging_target_path: staging.to_string_lossy().into_owned(),
            target_path: target.to_string_lossy().into_owned(),
            volume_capability: Some(capability),
            readonly: read_only,
            volume_context: context,
            ..Default::default()
        },
    )
}

/// Every written volume stages and publishes through the node service as
/// the kubelet would call it; DeleteVolume of its handle (or of the bare
/// Gluster volume name) changes nothing in glusterd.
#[tokio::test]
async fn written_volumes_stage_through_the_node_and_survive_delete_volume() {
    for (fixture_name, old, server) in [
        ("heketi.yaml", HEKETI_PV, "10.20.0.11"),
        ("hand-made.yaml", "gluster-shared", "192.168.10.21"),
    ] {
        let plan = plan_of(&fixture(fixture_name));
        let m = find(&plan, old);
        let pv = documents(&manifests::new_volume(m, "glusterfs.csi.io")).remove(0);
        let dir = tempfile::tempdir().unwrap();
        let mounter = Arc::new(FakeMounter::default());
        let volumes = NodeVolumes::new(
            mounter.clone(),
            Arc::new(FakeLookup::default()),
            NodeConfig {
                node_id: "n1".into(),
                mount_log_dir: None,
                state_dir: dir.path().join("state"),
                shared_pool_dir: dir.path().join("pool-mounts"),
            },
        )
        .unwrap();
        let node = NodeService::new(Arc::new(volumes));
        let (staging, target) = (dir.path().join("staging"), dir.path().join("target"));
        std::fs::create_dir(&staging).unwrap();
        let (stage, publish) = kubelet_requests(&pv, &staging, &target);
        node.node_stage_volume(Request::new(stage)).await.unwrap();
        node.node_publish_volume(Request::new(publish))
            .await
            .unwrap();
        let calls = mounter.calls();
        assert_eq!(
            calls[0],
            format!("mount {server}:/{} {}", m.context.volume, staging.display()),
            "{calls:?}"
        );
        assert!(calls[1].starts_with("bind "), "{calls:?}");

        let (provisioner, glusterd, _) = crate::fakes::provisioner();
        glusterd.insert(volume_info(&m.context.volume, VolumeStatus::Started, &[]));
        let controller = ControllerService::new(Arc::new(provisioner));
        for id in [m.volume_handle.as_str(), m.context.volume.as_str()] {
            controller
                .delete_volume(Request::new(DeleteVolumeRequest {
                    volume_id: id.to_string(),
                    ..Default::default()
                }))
                .await
                .unwrap();
        }
        assert_eq!(
            glusterd.get(&m.context.volume).map(|v| v.status),
            Some(VolumeStatus::Started)
        );
        assert!(glusterd.writes().is_empty(), "{:?}", glusterd.writes());
    }
}

fn args(input: &str, output: &Path, skip: bool) -> MigrateArgs {
    MigrateArgs {
        input: Some(fixture_path(input)),
        output_dir: output.to_path_buf(),
        driver_name: "glusterfs.csi.io".into(),
        name_suffix: "-csi".into(),
        skip_unmigratable: skip,
        max_input_mib: 1,
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn run_writes_new_files_only_and_refuses_without_the_skip_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(args("heketi.yaml", &out, false)).unwrap();
    assert_eq!(
        files_under(&out),
        [
            "RUNBOOK.md".to_string(),
            format!("new/{HEKETI_PV}-csi.yaml"),
            format!("new/{LEGACY_PV}-csi.yaml"),
            format!("rollback/{HEKETI_PV}.pv.yaml"),
            format!("rollback/{HEKETI_PV}.pvc.yaml"),
            format!("rollback/{LEGACY_PV}.pv.yaml"),
            format!("rollback/{LEGACY_PV}.pvc.yaml"),
        ]
    );
    let runbook = std::fs::read_to_string(out.join("RUNBOOK.md")).unwrap();
    // A second run into the same directory overwrites nothing.
    let err = run(args("heketi.yaml", &out, false)).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("RUNBOOK.md")).unwrap(),
        runbook
    );

    let refused = dir.path().join("refused");
    let err = run(args("missing-endpoints.yaml", &refused, false)).unwrap_err();
    assert!(err.to_string().contains("--skip-unmigratable"), "{err}");
    assert!(!refused.exists(), "nothing written when refused");

    let skipped = dir.path().join("skipped");
    run(args("missing-endpoints.yaml", &skipped, true)).unwrap();
    assert_eq!(
        files_under(&skipped).len(),
        4,
        "{:?}",
        files_under(&skipped)
    );
    let runbook = std::fs::read_to_string(skipped.join("RUNBOOK.md")).unwrap();
    assert!(runbook.contains("## Not migrated"));

    let mut bad = args("heketi.yaml", &dir.path().join("bad"), false);
    bad.name_suffix = "-CSI".into();
    assert!(run(bad).unwrap_err().to_string().contains("--name-suffix"));
    let mut bad = args("heketi.yaml", &dir.path().join("bad"), false);
    bad.driver_name = "Not A Driver".into();
    assert!(run(bad).unwrap_err().to_string().contains("--driver-name"));
}

#[test]
fn an_input_without_in_tree_volumes_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pv.yaml");
    let heketi = fixture("heketi.yaml");
    // Only the local-path volume and the Endpoints.
    let start = heketi.find("- apiVersion: v1\n  kind: PersistentVolume\n  metadata:\n    annotations:\n      pv.kubernetes.io/provisioned-by: rancher").unwrap();
    std::fs::write(
        &input,
        format!("apiVersion: v1\nitems:\n{}", &heketi[start..]),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut args = args("heketi.yaml", &out, false);
    args.input = Some(input);
    run(args).unwrap();
    assert!(!out.exists());
}
