//! `glusterfs-csi migrate`, the binary: what it writes is valid for
//! Kubernetes, bad input and existing files are refused from the command
//! line, and, on a real dev cluster, a Gluster volume made without the
//! driver (as Heketi made them) mounts through the PersistentVolume migrate
//! wrote, as the kubelet would stage and publish it, with its data, while
//! DeleteVolume can never remove it.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use glusterfs_csi::proto::csi::volume_capability::access_mode::Mode;
use glusterfs_csi::proto::csi::volume_capability::{AccessMode, AccessType, MountVolume};
use glusterfs_csi::proto::csi::*;
use serde::Deserialize;
use yaml_serde::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_glusterfs-csi");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn migrate(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BINARY)
        .arg("migrate")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn documents(text: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
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

/// Every file written, read by PyYAML (YAML 1.1, as Kubernetes reads YAML)
/// and checked against the Kubernetes 1.25 and 1.37 schemas.
#[test]
fn written_manifests_are_valid_kubernetes_objects() {
    for fixture in ["heketi.yaml", "hand-made.yaml", "hand-made.json"] {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("migration");
        let input = root().join("tests/fixtures/migrate").join(fixture);
        let run = migrate(
            &[
                input.to_str().unwrap(),
                "--output-dir",
                dir.to_str().unwrap(),
            ],
            None,
        );
        assert!(run.status.success(), "{fixture}: {}", text(&run.stderr));
        for sub in ["new", "rollback"] {
            let checked = Command::new("python3")
                .arg(root().join("tests/helm/chart.py"))
                .arg("validate")
                .arg(dir.join(sub))
                .output()
                .unwrap();
            assert!(
                checked.status.success(),
                "chart.py validate (pip install kubernetes-validate?): {}",
                text(&checked.stderr)
            );
            let result: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
            assert!(result["objects"].as_u64().unwrap() > 0, "{fixture}/{sub}");
            assert_eq!(result["problems"], serde_json::json!([]), "{fixture}/{sub}");
        }
    }
}

#[test]
fn the_command_line_refuses_and_writes_nothing_or_skips_when_told() {
    let out = tempfile::tempdir().unwrap();
    let missing =
        std::fs::read_to_string(root().join("tests/fixtures/migrate/missing-endpoints.yaml"))
            .unwrap();
    let refused = out.path().join("refused");
    let run = migrate(
        &["-", "--output-dir", refused.to_str().unwrap()],
        Some(&missing),
    );
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains(
            "cannot migrate PersistentVolume pvc-a71fa382-f77d-11e8-b229-005056a5c1c4: \
             spec.glusterfs.endpoints: Endpoints \
             apps/glusterfs-dynamic-a71fa382-f77d-11e8-b229-005056a5c1c4 is not in the input"
        ),
        "{stderr}"
    );
    assert!(!refused.exists(), "nothing written");

    let skipped = out.path().join("skipped");
    let run = migrate(
        &[
            "--output-dir",
            skipped.to_str().unwrap(),
            "--skip-unmigratable",
        ],
        Some(&missing),
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(
        stdout.contains("pvc-a71fa382-f77d-11e8-b229-005056a5c1c4: skipped"),
        "{stdout}"
    );
    assert!(skipped.join("RUNBOOK.md").is_file());

    // Run again into the same directory: refused, nothing changed.
    let before = std::fs::read(skipped.join("RUNBOOK.md")).unwrap();
    let run = migrate(
        &[
            "--output-dir",
            skipped.to_str().unwrap(),
            "--skip-unmigratable",
        ],
        Some(&missing),
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(text(&run.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(skipped.join("RUNBOOK.md")).unwrap(), before);

    let run = migrate(
        &[
            "--output-dir",
            out.path().join("big").to_str().unwrap(),
            "--max-input-mib",
            "1",
        ],
        Some(&"#".repeat(1024 * 1024 + 1)),
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stderr).contains("larger than 1 MiB"),
        "{}",
        text(&run.stderr)
    );
}

/// A Gluster volume made outside the driver, as Heketi made them, until the
/// test ends (also when it fails): stopped, deleted, bricks removed.
struct PlainVolume {
    socket: PathBuf,
    name: String,
    bricks: Vec<PathBuf>,
}

impl PlainVolume {
    fn create(driver: &DevDriver, name: &str) -> PlainVolume {
        let servers = driver.cluster.addresses();
        let bricks: Vec<PathBuf> = servers.iter().map(|s| driver.brick_dir(s, name)).collect();
        let volume = PlainVolume {
            socket: driver.cluster.servers[0].glusterd_socket.clone(),
            name: name.to_string(),
            bricks: bricks.clone(),
        };
        let mut words = vec![
            "volume".to_string(),
            "create".to_string(),
            name.to_string(),
            "replica".to_string(),
            servers.len().to_string(),
        ];
        words.extend(
            servers
                .iter()
                .zip(&bricks)
                .map(|(server, brick)| format!("{server}:{}", brick.display())),
        );
        // Dev bricks share the root file system.
        words.push("force".to_string());
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        gluster(&volume.socket, &words).unwrap();
        gluster(&volume.socket, &["volume", "start", name]).unwrap();
        volume
    }
}

impl Drop for PlainVolume {
    fn drop(&mut self) {
        let _ = gluster(&self.socket, &["volume", "stop", &self.name, "force"]);
        let _ = gluster(&self.socket, &["volume", "delete", &self.name]);
        for brick in &self.bricks {
            let _ = std::fs::remove_dir_all(brick);
        }
    }
}

/// A plain FUSE mount made by the test, unmounted when dropped.
struct PlainMount(PathBuf);

impl PlainMount {
    fn new(server: &str, volume: &str, at: &Path) -> PlainMount {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "glusterfs"])
            .arg(format!("{server}:/{volume}"))
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t glusterfs {server}:/{volume}");
        PlainMount(at.to_path_buf())
    }
}

impl Drop for PlainMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `kubectl get pv,endpoints -A -o yaml` of a Heketi-made volume: the PV
/// without endpointsNamespace (found in the claim's namespace), the
/// `glusterfs-dynamic-<claim uid>` Endpoints listing the servers.
fn in_tree_listing(pv: &str, claim_uid: &str, volume: &str, servers: &[String]) -> String {
    let addresses: String = servers.iter().map(|s| format!("    - ip: {s}\n")).collect();
    format!(
        r#"apiVersion: v1
items:
- apiVersion: v1
  kind: PersistentVolume
  metadata:
    annotations:
      Description: 'Gluster-Internal: Dynamically provisioned PV'
      gluster.kubernetes.io/heketi-volume-id: {heketi_id}
      gluster.org/type: file
      kubernetes.io/createdby: heketi-dynamic-provisioner
      pv.beta.kubernetes.io/gid: "2001"
      pv.kubernetes.io/bound-by-controller: "yes"
      pv.kubernetes.io/provisioned-by: kubernetes.io/glusterfs
    creationTimestamp: "2021-03-14T09:26:53Z"
    finalizers:
    - kubernetes.io/pv-protection
    name: {pv}
    resourceVersion: "4815162"
    uid: 0d9b7e21-6c44-4f0a-b1de-3f8a2c5e7d90
  spec:
    accessModes:
    - ReadWriteMany
    capacity:
      storage: 1Gi
    claimRef:
      apiVersion: v1
      kind: PersistentVolumeClaim
      name: data-web-0
      namespace: apps
      resourceVersion: "4815150"
      uid: {claim_uid}
    glusterfs:
      endpoints: glusterfs-dynamic-{claim_uid}
      path: {volume}
    mountOptions:
    - log-level=WARNING
    persistentVolumeReclaimPolicy: Delete
    storageClassName: glusterfs-storage
    volumeMode: Filesystem
  status:
    phase: Bound
- apiVersion: v1
  kind: Endpoints
  metadata:
    labels:
      gluster.kubernetes.io/provisioned-for-pvc: data-web-0
    name: glusterfs-dynamic-{claim_uid}
    namespace: apps
  subsets:
  - addresses:
{addresses}    ports:
    - port: 1
      protocol: TCP
kind: List
metadata:
  resourceVersion: ""
"#,
        heketi_id = volume.trim_start_matches("vol_"),
    )
}

/// The NodeStage and NodePublish requests the kubelet makes for a CSI
/// PersistentVolume: its handle, attributes, mount options and access mode.
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
    let mode = if modes.contains(&"ReadWriteMany") {
        Mode::MultiNodeMultiWriter
    } else if modes.contains(&"ReadOnlyMany") {
        Mode::MultiNodeReaderOnly
    } else {
        Mode::SingleNodeWriter
    };
    let flags: Vec<String> = at(pv, &["spec", "mountOptions"])
        .as_sequence()
        .map(|o| o.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
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
    let stage = NodeStageVolumeRequest {
        volume_id: id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
        volume_capability: Some(capability.clone()),
        volume_context: context.clone(),
        ..Default::default()
    };
    let publish = NodePublishVolumeRequest {
        volume_id: id,
        staging_target_path: staging.to_string_lossy().into_owned(),
        target_path: target.to_string_lossy().into_owned(),
        volume_capability: Some(capability),
        readonly: at(pv, &["spec", "csi", "readOnly"])
            .as_bool()
            .unwrap_or(false),
        volume_context: context,
        ..Default::default()
    };
    (stage, publish)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heketi_volume_mounts_through_its_migrated_volume_and_is_never_deleted() {
    let driver = DevDriver::start().await;
    let servers = driver.cluster.addresses();
    let volume = format!("vol_{}", uuid::Uuid::new_v4().simple());
    let _volume = PlainVolume::create(&driver, &volume);

    // Data written before the migration, through a plain mount.
    let plain_dir = driver.kubelet.path().join("plain");
    let plain = PlainMount::new(&servers[0], &volume, &plain_dir);
    std::fs::create_dir(plain_dir.join("uploads")).unwrap();
    std::fs::write(plain_dir.join("uploads/before.txt"), b"written in 2021").unwrap();
    drop(plain);
    assert!(mounts_at(&plain_dir).is_empty());

    let claim_uid = uuid::Uuid::new_v4().to_string();
    let old_pv = format!("pvc-{claim_uid}");
    let work = tempfile::tempdir().unwrap();
    let listing = work.path().join("pv-endpoints.yaml");
    std::fs::write(
        &listing,
        in_tree_listing(&old_pv, &claim_uid, &volume, &servers),
    )
    .unwrap();
    let out = work.path().join("migration");
    let run = migrate(
        &[
            listing.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert!(run.status.success(), "{}", text(&run.stderr));
    let new_pv = format!("{old_pv}-csi");
    let docs = documents(&std::fs::read_to_string(out.join(format!("new/{new_pv}.yaml"))).unwrap());
    let [pv, pvc] = docs.as_slice() else {
        panic!("{docs:?}")
    };
    assert_eq!(text_at(pv, &["metadata", "name"]), new_pv);
    assert_eq!(
        text_at(pv, &["spec", "persistentVolumeReclaimPolicy"]),
        "Retain"
    );
    assert_eq!(text_at(pv, &["spec", "csi", "driver"]), "glusterfs.csi.io");
    assert_eq!(
        text_at(
            pv,
            &["metadata", "annotations", "pv.beta.kubernetes.io/gid"]
        ),
        "2001"
    );
    assert_eq!(text_at(pvc, &["metadata", "namespace"]), "apps");
    assert_eq!(text_at(pvc, &["spec", "volumeName"]), new_pv);

    // The kubelet's side, with exactly what the written PV says.
    let mut node = driver.node();
    let staging = driver.staging_path(&new_pv);
    let target = driver.target_path("web-0", &new_pv);
    let (stage, publish) = kubelet_requests(pv, &staging, &target);
    let handle = stage.volume_id.clone();
    node.node_stage_volume(stage).await.unwrap();
    node.node_publish_volume(publish).await.unwrap();
    let mounted = &mounts_at(&staging)[0];
    assert_eq!(mounted.fs_type, "fuse.glusterfs");
    assert_eq!(mounted.gluster_volume(), Some(volume.as_str()));
    assert_eq!(
        std::fs::read(target.join("uploads/before.txt")).unwrap(),
        b"written in 2021"
    );
    std::fs::write(
        target.join("uploads/after.txt"),
        b"written through the driver",
    )
    .unwrap();
    for server in &servers {
        assert_eq!(
            std::fs::read(driver.brick_dir(server, &volume).join("uploads/after.txt")).unwrap(),
            b"written through the driver",
            "replicated to {server}"
        );
    }
    node.node_unpublish_volume(NodeUnpublishVolumeRequest {
        volume_id: handle.clone(),
        target_path: target.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: handle.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();
    assert!(mounts_at(&target).is_empty() && mounts_at(&staging).is_empty());

    // DeleteVolume, as a provisioner would send it for the handle (or for
    // a careless handle naming the Gluster volume): nothing happens.
    let mut controller = driver.controller();
    for id in [handle.as_str(), volume.as_str()] {
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let info = driver.gluster(&["volume", "info", &volume]);
    assert!(info.contains("<statusStr>Started</statusStr>"), "{info}");
    assert!(!info.contains("user.csi."), "never marked: {info}");
    for server in &servers {
        let brick = driver.brick_dir(server, &volume);
        assert_eq!(
            std::fs::read(brick.join("uploads/before.txt")).unwrap(),
            b"written in 2021"
        );
    }
    let history = driver.command_history().concat();
    assert!(
        history
            .iter()
            .any(|line| line.contains(&format!("volume create {volume} "))),
        "glusterd's command history shows the test's own create: {history:?}"
    );
    let touched: Vec<&String> = history
        .iter()
        .filter(|line| line.contains(&volume))
        .filter(|line| !line.contains(" create ") && !line.contains(" start "))
        .filter(|line| !line.contains(" info ") && !line.contains(" status "))
        .collect();
    assert!(
        touched.is_empty(),
        "the driver changed the volume: {touched:?}"
    );
}
