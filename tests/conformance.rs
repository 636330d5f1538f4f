//! CSI conformance suite: the driver over its gRPC socket (`glusterfs-csi
//! dev`, a real 3-server glusterd cluster with real FUSE mounts), held to
//! what csi-sanity (kubernetes-csi/csi-test v5.3.1, `pkg/sanity`) checks for
//! this driver's capabilities, plus rules of the CSI spec (v1.10) that
//! csi-sanity does not check.
//!
//! Every csi-sanity `It` that runs against this driver has a step here named
//! `<Describe>/<It>`; checks that only the spec asks for are named
//! `spec: ...`. Requests are built the way csi-sanity builds them: empty
//! parameters, a `SINGLE_NODE_WRITER` mount capability, 10 GiB, names with an
//! uppercase hex suffix, `fake-vol-id-...` ids. Paths are handled the way
//! csi-sanity handles them: before each test one mount dir and one staging
//! dir are made with `mkdir` (failing if they exist), every volume is staged
//! at that one staging dir and published at `<mountdir>/target` (which the
//! driver must create); after each test every volume created is cleaned up
//! (`NodeUnpublishVolume`, `NodeUnstageVolume`, `DeleteVolume`, as
//! `Resources.Cleanup` does) and both directories must be removable with
//! `rmdir`, with `<mountdir>/target` gone.

mod common;

use std::collections::HashSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{DevDriver, mount_capability, mounts_at};
use glusterfs_csi::proto::csi::controller_client::ControllerClient;
use glusterfs_csi::proto::csi::controller_service_capability::rpc::Type as ControllerRpc;
use glusterfs_csi::proto::csi::group_controller_client::GroupControllerClient;
use glusterfs_csi::proto::csi::node_client::NodeClient;
use glusterfs_csi::proto::csi::node_service_capability::rpc::Type as NodeRpc;
use glusterfs_csi::proto::csi::plugin_capability::service::Type as ServiceType;
use glusterfs_csi::proto::csi::plugin_capability::volume_expansion::Type as ExpansionType;
use glusterfs_csi::proto::csi::volume_capability::access_mode::Mode;
use glusterfs_csi::proto::csi::volume_capability::{AccessMode, AccessType, BlockVolume};
use glusterfs_csi::proto::csi::*;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

/// csi-sanity's `TestVolumeSize` default: 10 GiB.
const TEST_VOLUME_SIZE: i64 = 10 * 1024 * 1024 * 1024;
/// csi-sanity's `IdempotentCount` default.
const IDEMPOTENT_COUNT: usize = 10;

// ---------------------------------------------------------------------------
// Names and requests, as csi-sanity makes them.

/// csi-sanity's `PseudoUUID()`: `%08X-%08X`, uppercase, fixed per process.
fn pseudo_uuid() -> &'static str {
    static SUFFIX: OnceLock<String> = OnceLock::new();
    SUFFIX.get_or_init(|| {
        let bits = uuid::Uuid::new_v4().as_u128();
        format!("{:08X}-{:08X}", bits as u32, (bits >> 32) as u32)
    })
}

/// csi-sanity's `UniqueString(prefix)`.
fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", pseudo_uuid())
}

/// csi-sanity's `UniqueStringWithLength(prefix, length)`: padded with `a`.
fn unique_with_length(prefix: &str, length: usize) -> String {
    let name = unique(prefix);
    let padding = length.saturating_sub(name.len());
    name + &"a".repeat(padding)
}

/// csi-sanity's `GenerateUniqueValidVolumeID()`: well-formed, never created.
fn fake_volume_id() -> String {
    format!("fake-vol-id-{}", &uuid::Uuid::new_v4().to_string()[..10])
}

/// `TestVolumeCapabilityWithAccessType(sc, SINGLE_NODE_WRITER)`.
fn snw() -> VolumeCapability {
    mount_capability(Mode::SingleNodeWriter)
}

fn block_capability() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

fn capacity(required: i64, limit: i64) -> Option<CapacityRange> {
    Some(CapacityRange {
        required_bytes: required,
        limit_bytes: limit,
    })
}

/// CreateVolume as csi-sanity sends it: no parameters, no secrets.
fn create_request(name: &str, range: Option<CapacityRange>) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.to_string(),
        capacity_range: range,
        volume_capabilities: vec![snw()],
        ..Default::default()
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 test path").to_string()
}

// ---------------------------------------------------------------------------
// Outcome checks (csi-sanity's `ExpectErrorCode` and friends).

#[track_caller]
fn expect_ok<T>(result: Result<Response<T>, Status>, step: &str) -> T {
    match result {
        Ok(response) => response.into_inner(),
        Err(status) => panic!(
            "{step}: expected OK, got {:?}: {}",
            status.code(),
            status.message()
        ),
    }
}

#[track_caller]
fn expect_code<T: Debug>(result: Result<Response<T>, Status>, code: Code, step: &str) {
    match result {
        Ok(response) => panic!(
            "{step}: expected {code:?}, got OK: {:?}",
            response.into_inner()
        ),
        Err(status) => assert_eq!(
            status.code(),
            code,
            "{step}: wrong code (message: {})",
            status.message()
        ),
    }
}

/// What `Resources.Cleanup` accepts from NodeUnpublish and NodeUnstage.
#[track_caller]
fn expect_ok_or_not_found<T>(result: Result<Response<T>, Status>, step: &str) {
    if let Err(status) = result {
        assert_eq!(
            status.code(),
            Code::NotFound,
            "{step}: expected OK or NotFound (message: {})",
            status.message()
        );
    }
}

#[track_caller]
fn assert_missing(path: &Path, step: &str) {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(meta) => panic!(
            "{step}: {} still exists ({:?})",
            path.display(),
            meta.file_type()
        ),
        Err(e) => panic!("{step}: stat {}: {e}", path.display()),
    }
}

/// The GetPluginInfo name check: csi-sanity's regexp
/// `^[a-zA-Z][A-Za-z0-9-\.\_]{0,61}[a-zA-Z]$`.
fn sanity_plugin_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b))
}

/// NodeGetVolumeStats on a healthy mounted volume: csi-sanity wants some
/// usage; the spec wants sane values and, with VOLUME_CONDITION advertised,
/// a volume condition.
#[track_caller]
fn check_healthy_stats(stats: &NodeGetVolumeStatsResponse, step: &str) {
    assert!(!stats.usage.is_empty(), "{step}: usage is empty");
    for usage in &stats.usage {
        let unit = volume_usage::Unit::try_from(usage.unit);
        assert!(
            matches!(
                unit,
                Ok(volume_usage::Unit::Bytes | volume_usage::Unit::Inodes)
            ),
            "spec: {step}: usage unit is REQUIRED: {usage:?}"
        );
        assert!(
            usage.total >= 0 && usage.available >= 0 && usage.used >= 0,
            "spec: {step}: usage values MUST NOT be negative: {usage:?}"
        );
    }
    assert!(
        stats
            .usage
            .iter()
            .any(|u| u.unit == volume_usage::Unit::Bytes as i32 && u.total > 0),
        "spec: {step}: no BYTES usage with a total: {:?}",
        stats.usage
    );
    let condition = stats.volume_condition.as_ref().unwrap_or_else(|| {
        panic!("spec: {step}: VOLUME_CONDITION is advertised, so volume_condition MUST be set")
    });
    assert!(
        !condition.abnormal && !condition.message.is_empty(),
        "spec: {step}: a healthy mounted volume reported {condition:?}"
    );
}

fn controller_rpcs(response: &ControllerGetCapabilitiesResponse) -> HashSet<ControllerRpc> {
    response
        .capabilities
        .iter()
        .map(|cap| match cap.r#type {
            Some(controller_service_capability::Type::Rpc(rpc)) => {
                ControllerRpc::try_from(rpc.r#type).unwrap_or(ControllerRpc::Unknown)
            }
            None => ControllerRpc::Unknown,
        })
        .collect()
}

fn node_rpcs(response: &NodeGetCapabilitiesResponse) -> HashSet<NodeRpc> {
    response
        .capabilities
        .iter()
        .map(|cap| match cap.r#type {
            Some(node_service_capability::Type::Rpc(rpc)) => {
                NodeRpc::try_from(rpc.r#type).unwrap_or(NodeRpc::Unknown)
            }
            None => NodeRpc::Unknown,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// One csi-sanity test: Setup, the volumes it made, Cleanup and Teardown.

struct Sanity {
    /// `<Describe>/<It>`, prefixed to every failure.
    test: &'static str,
    controller: ControllerClient<Channel>,
    node: NodeClient<Channel>,
    /// `--csi.mountdir`; the driver publishes at `<mount_dir>/target`.
    mount_dir: PathBuf,
    /// `--csi.stagingdir`; every volume is staged here.
    staging_dir: PathBuf,
    /// Ids registered by successful CreateVolume calls, cleaned up LIFO.
    volumes: Vec<String>,
}

impl Sanity {
    /// `SanityContext.Setup`: `os.Mkdir` of both directories, which fails
    /// if something of the previous test is still there.
    fn setup(driver: &DevDriver, test: &'static str) -> Sanity {
        let mount_dir = driver.kubelet.path().join("csi-mount");
        let staging_dir = driver.kubelet.path().join("csi-staging");
        for dir in [&mount_dir, &staging_dir] {
            if let Err(e) = std::fs::create_dir(dir) {
                panic!("{test}: setup: mkdir {}: {e}", dir.display());
            }
        }
        Sanity {
            test,
            controller: driver.controller(),
            node: driver.node(),
            mount_dir,
            staging_dir,
            volumes: Vec::new(),
        }
    }

    fn step(&self, what: &str) -> String {
        format!("{}: {what}", self.test)
    }

    fn target(&self) -> PathBuf {
        self.mount_dir.join("target")
    }

    /// `MustCreateVolume`: success, a volume, an id; registered for cleanup.
    async fn create_volume(&mut self, request: CreateVolumeRequest) -> Volume {
        let step = self.step(&format!("CreateVolume {:?}", request.name));
        let response = expect_ok(self.controller.create_volume(request).await, &step);
        let volume = response
            .volume
            .unwrap_or_else(|| panic!("{step}: no volume in the response"));
        assert!(!volume.volume_id.is_empty(), "{step}: empty volume_id");
        assert!(
            volume.volume_id.len() <= 128,
            "spec: {step}: volume_id exceeds the 128-byte string limit: {:?}",
            volume.volume_id
        );
        assert!(
            volume.capacity_bytes >= 0,
            "spec: {step}: negative capacity_bytes {}",
            volume.capacity_bytes
        );
        self.volumes.push(volume.volume_id.clone());
        volume
    }

    async fn node_id(&mut self) -> String {
        let step = self.step("NodeGetInfo");
        let info = expect_ok(self.node.node_get_info(NodeGetInfoRequest {}).await, &step);
        assert!(!info.node_id.is_empty(), "{step}: empty node_id");
        info.node_id
    }

    fn stage_request(&self, volume: &Volume, cap: VolumeCapability) -> NodeStageVolumeRequest {
        NodeStageVolumeRequest {
            volume_id: volume.volume_id.clone(),
            staging_target_path: path_str(&self.staging_dir),
            volume_capability: Some(cap),
            volume_context: volume.volume_context.clone(),
            ..Default::default()
        }
    }

    fn publish_request(
        &self,
        volume: &Volume,
        target: &Path,
        cap: VolumeCapability,
    ) -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            staging_target_path: path_str(&self.staging_dir),
            target_path: path_str(target),
            volume_capability: Some(cap),
            readonly: false,
            volume_context: volume.volume_context.clone(),
            ..Default::default()
        }
    }

    async fn stage(&mut self, volume: &Volume, what: &str) {
        let request = self.stage_request(volume, snw());
        let step = self.step(what);
        expect_ok(self.node.node_stage_volume(request).await, &step);
    }

    async fn publish(&mut self, volume: &Volume, what: &str) {
        let request = self.publish_request(volume, &self.target(), snw());
        let step = self.step(what);
        expect_ok(self.node.node_publish_volume(request).await, &step);
    }

    async fn stats(
        &mut self,
        volume_id: &str,
        path: &str,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        self.node
            .node_get_volume_stats(NodeGetVolumeStatsRequest {
                volume_id: volume_id.to_string(),
                volume_path: path.to_string(),
                staging_target_path: String::new(),
            })
            .await
    }

    async fn unpublish(
        &mut self,
        volume_id: &str,
        target: &Path,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: volume_id.to_string(),
                target_path: path_str(target),
            })
            .await
    }

    async fn unstage(
        &mut self,
        volume_id: &str,
        staging: &Path,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        self.node
            .node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: volume_id.to_string(),
                staging_target_path: path_str(staging),
            })
            .await
    }

    async fn delete(&mut self, volume_id: &str) -> Result<Response<DeleteVolumeResponse>, Status> {
        self.controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: volume_id.to_string(),
                secrets: Default::default(),
            })
            .await
    }

    /// `Resources.Cleanup` (every volume, LIFO; errors fail the test), then
    /// `SanityContext.Teardown`, whose `rmdir`s must succeed here: anything
    /// left makes the next test's Setup fail.
    async fn teardown(mut self) {
        let target = self.target();
        let staging = self.staging_dir.clone();
        while let Some(id) = self.volumes.pop() {
            let result = self.unpublish(&id, &target).await;
            expect_ok_or_not_found(
                result,
                &self.step(&format!("cleanup: NodeUnpublishVolume {id}")),
            );
            let caps = self
                .node
                .node_get_capabilities(NodeGetCapabilitiesRequest {})
                .await;
            let caps = expect_ok(caps, &self.step("cleanup: NodeGetCapabilities"));
            if node_rpcs(&caps).contains(&NodeRpc::StageUnstageVolume) {
                let result = self.unstage(&id, &staging).await;
                expect_ok_or_not_found(
                    result,
                    &self.step(&format!("cleanup: NodeUnstageVolume {id}")),
                );
            }
            let result = self.delete(&id).await;
            expect_ok(result, &self.step(&format!("cleanup: DeleteVolume {id}")));
        }
        assert_missing(&target, &self.step("teardown: <mountdir>/target"));
        // csi-sanity tolerates a driver that removed the staging dir itself.
        match std::fs::remove_dir(&staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                panic!(
                    "{}",
                    self.step(&format!("teardown: rmdir staging dir: {e}"))
                )
            }
            _ => {}
        }
        if let Err(e) = std::fs::remove_dir(&self.mount_dir) {
            panic!("{}", self.step(&format!("teardown: rmdir mount dir: {e}")));
        }
    }
}

// ---------------------------------------------------------------------------
// Identity and Controller.

/// csi-sanity "Identity Service" (GetPluginCapabilities, Probe,
/// GetPluginInfo) and "Controller Service [Controller Server]"
/// (ControllerGetCapabilities, ListVolumes, CreateVolume, DeleteVolume,
/// ValidateVolumeCapabilities), plus the spec's rules on capabilities,
/// UNIMPLEMENTED RPCs and block volumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_controller() {
    let driver = DevDriver::start().await;
    identity_service(&driver).await;
    controller_requests_without_volumes(&driver).await;
    list_volumes_sees_new_and_deleted_volumes(&driver).await;
    create_volume_values(&driver).await;
    validate_volume_capabilities_values(&driver).await;
    get_volume_values(&driver).await;
}

/// csi-sanity "ControllerGetVolume": a created volume is returned with its
/// id and (VOLUME_CONDITION) a condition; once deleted it is NOT_FOUND.
async fn get_volume_values(driver: &DevDriver) {
    let mut s = Sanity::setup(driver, "Controller Service (ControllerGetVolume)");
    let volume = s
        .create_volume(create_request(&unique("sanity-get"), None))
        .await;
    let mut controller = driver.controller();
    let step = "ControllerGetVolume/should return appropriate values (no optional values added)";
    let got = expect_ok(
        controller
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: volume.volume_id.clone(),
            })
            .await,
        step,
    );
    assert_eq!(
        got.volume.as_ref().map(|v| v.volume_id.as_str()),
        Some(volume.volume_id.as_str()),
        "{step}"
    );
    let condition = got
        .status
        .and_then(|s| s.volume_condition)
        .unwrap_or_else(|| panic!("{step}: no volume condition"));
    assert!(!condition.abnormal, "{step}: {}", condition.message);
    expect_ok(s.delete(&volume.volume_id).await, "DeleteVolume");
    expect_code(
        controller
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: volume.volume_id.clone(),
            })
            .await,
        Code::NotFound,
        "ControllerGetVolume of a deleted volume",
    );
    s.teardown().await;
}

async fn identity_service(driver: &DevDriver) {
    let mut identity = driver.identity();

    let step = "GetPluginCapabilities/should return appropriate capabilities";
    let caps = expect_ok(
        identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await,
        step,
    )
    .capabilities;
    let mut services = HashSet::new();
    for cap in &caps {
        match cap.r#type {
            Some(plugin_capability::Type::Service(service)) => {
                let kind = ServiceType::try_from(service.r#type);
                assert!(
                    matches!(
                        kind,
                        Ok(ServiceType::ControllerService
                            | ServiceType::VolumeAccessibilityConstraints
                            | ServiceType::GroupControllerService)
                    ),
                    "{step}: unknown service {cap:?}"
                );
                services.insert(kind.unwrap());
            }
            Some(plugin_capability::Type::VolumeExpansion(expansion)) => assert!(
                matches!(
                    ExpansionType::try_from(expansion.r#type),
                    Ok(ExpansionType::Online | ExpansionType::Offline)
                ),
                "{step}: unknown volume expansion {cap:?}"
            ),
            None => panic!("{step}: capability without a type"),
        }
    }
    assert!(
        services.contains(&ServiceType::ControllerService),
        "spec: GetPluginCapabilities: the controller service is served, so CONTROLLER_SERVICE must be advertised: {caps:?}"
    );
    assert!(
        caps.iter().any(|cap| matches!(
            cap.r#type,
            Some(plugin_capability::Type::VolumeExpansion(e))
                if e.r#type == ExpansionType::Online as i32
        )),
        "spec: GetPluginCapabilities: quota limits grow under live mounts, so VolumeExpansion ONLINE: {caps:?}"
    );
    assert!(
        !services.contains(&ServiceType::GroupControllerService),
        "spec: GetPluginCapabilities: GROUP_CONTROLLER_SERVICE advertised: {caps:?}"
    );
    let mut group = GroupControllerClient::new(driver.channel.clone());
    expect_code(
        group
            .group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {})
            .await,
        Code::Unimplemented,
        "spec: GroupControllerGetCapabilities without GROUP_CONTROLLER_SERVICE",
    );

    let step = "Probe/should return appropriate information";
    let probe = expect_ok(identity.probe(ProbeRequest {}).await, step);
    assert_eq!(
        probe.ready,
        Some(true),
        "spec: Probe: a started dev cluster is ready"
    );

    let step = "GetPluginInfo/should return appropriate information";
    let info = expect_ok(
        identity.get_plugin_info(GetPluginInfoRequest {}).await,
        step,
    );
    assert!(
        sanity_plugin_name(&info.name),
        "{step}: name {:?} does not match ^[a-zA-Z][A-Za-z0-9-\\.\\_]{{0,61}}[a-zA-Z]$",
        info.name
    );
    assert!(
        !info.vendor_version.is_empty(),
        "spec: GetPluginInfo: vendor_version is REQUIRED"
    );
}

/// Controller tests that create no volume, and the RPCs the driver does not
/// advertise.
async fn controller_requests_without_volumes(driver: &DevDriver) {
    let s = Sanity::setup(driver, "Controller Service (requests without volumes)");
    let mut controller = driver.controller();

    let step = "ControllerGetCapabilities/should return appropriate capabilities";
    let caps = expect_ok(
        controller
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await,
        step,
    );
    let advertised = controller_rpcs(&caps);
    assert!(
        !advertised.contains(&ControllerRpc::Unknown),
        "{step}: unknown capability in {caps:?}"
    );
    let expected = HashSet::from([
        ControllerRpc::CreateDeleteVolume,
        ControllerRpc::ListVolumes,
        ControllerRpc::SingleNodeMultiWriter,
        ControllerRpc::ExpandVolume,
        ControllerRpc::GetCapacity,
        ControllerRpc::GetVolume,
        ControllerRpc::VolumeCondition,
    ]);
    assert_eq!(
        advertised, expected,
        "{step}: the capabilities this suite (and the csi-sanity checklist) is written for"
    );

    // spec: every optional RPC whose capability is not advertised answers
    // UNIMPLEMENTED (requests are well-formed, so nothing else would fit).
    let id = fake_volume_id();
    expect_code(
        controller
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: id.clone(),
                node_id: "fake-node-id".into(),
                volume_capability: Some(snw()),
                ..Default::default()
            })
            .await,
        Code::Unimplemented,
        "spec: ControllerPublishVolume without PUBLISH_UNPUBLISH_VOLUME",
    );
    expect_code(
        controller
            .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                volume_id: id.clone(),
                node_id: "fake-node-id".into(),
                ..Default::default()
            })
            .await,
        Code::Unimplemented,
        "spec: ControllerUnpublishVolume without PUBLISH_UNPUBLISH_VOLUME",
    );
    // csi-sanity "GetCapacity": with no optional values, then with a
    // capability; the spec: a capability the driver cannot serve has none.
    let step = "GetCapacity/should return capacity (no optional values added)";
    let plain = expect_ok(
        controller.get_capacity(GetCapacityRequest::default()).await,
        step,
    );
    assert!(plain.available_capacity > 0, "{step}: {plain:?}");
    let step = "GetCapacity/with a mount capability";
    let with_cap = expect_ok(
        controller
            .get_capacity(GetCapacityRequest {
                volume_capabilities: vec![snw()],
                ..Default::default()
            })
            .await,
        step,
    );
    assert!(with_cap.available_capacity > 0, "{step}: {with_cap:?}");
    let step = "spec: GetCapacity for a block capability";
    let block = expect_ok(
        controller
            .get_capacity(GetCapacityRequest {
                volume_capabilities: vec![block_capability()],
                ..Default::default()
            })
            .await,
        step,
    );
    assert_eq!(block.available_capacity, 0, "{step}");
    expect_code(
        controller
            .get_capacity(GetCapacityRequest {
                parameters: [("replica".to_string(), "many".to_string())].into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "GetCapacity with an invalid parameter",
    );
    expect_code(
        controller
            .create_snapshot(CreateSnapshotRequest {
                source_volume_id: id.clone(),
                name: unique("sanity-snapshot"),
                ..Default::default()
            })
            .await,
        Code::Unimplemented,
        "spec: CreateSnapshot without CREATE_DELETE_SNAPSHOT",
    );
    expect_code(
        controller
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: "fake-snapshot-id".into(),
                ..Default::default()
            })
            .await,
        Code::Unimplemented,
        "spec: DeleteSnapshot without CREATE_DELETE_SNAPSHOT",
    );
    expect_code(
        controller
            .list_snapshots(ListSnapshotsRequest::default())
            .await,
        Code::Unimplemented,
        "spec: ListSnapshots without LIST_SNAPSHOTS",
    );
    expect_code(
        controller
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: id.clone(),
            })
            .await,
        Code::NotFound,
        "ControllerGetVolume/should fail when the volume does not exist",
    );
    expect_code(
        controller
            .controller_modify_volume(ControllerModifyVolumeRequest {
                volume_id: id.clone(),
                mutable_parameters: [("iops".to_string(), "1".to_string())].into(),
                ..Default::default()
            })
            .await,
        Code::Unimplemented,
        "spec: ControllerModifyVolume without MODIFY_VOLUME",
    );

    let step = "ListVolumes/should return appropriate values (no optional values added)";
    let list = expect_ok(
        controller.list_volumes(ListVolumesRequest::default()).await,
        step,
    );
    for entry in &list.entries {
        let volume = entry
            .volume
            .as_ref()
            .unwrap_or_else(|| panic!("{step}: entry without volume"));
        assert!(!volume.volume_id.is_empty(), "{step}: empty volume_id");
    }
    expect_code(
        controller
            .list_volumes(ListVolumesRequest {
                starting_token: "invalid-token".into(),
                ..Default::default()
            })
            .await,
        Code::Aborted,
        "ListVolumes/should fail when an invalid starting_token is passed",
    );
    expect_code(
        controller
            .list_volumes(ListVolumesRequest {
                max_entries: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "spec: ListVolumes: max_entries MUST NOT be negative",
    );

    expect_code(
        controller
            .create_volume(CreateVolumeRequest::default())
            .await,
        Code::InvalidArgument,
        "CreateVolume/should fail when no name is provided",
    );
    expect_code(
        controller
            .create_volume(CreateVolumeRequest {
                name: unique("sanity-controller-create-no-volume-capabilities"),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "CreateVolume/should fail when no volume capabilities are provided",
    );
    expect_code(
        controller
            .create_volume(CreateVolumeRequest {
                name: unique("sanity-controller-create-block"),
                capacity_range: capacity(TEST_VOLUME_SIZE, 0),
                volume_capabilities: vec![block_capability()],
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "spec: CreateVolume with a block capability (unsupported) is INVALID_ARGUMENT",
    );

    expect_code(
        controller
            .delete_volume(DeleteVolumeRequest::default())
            .await,
        Code::InvalidArgument,
        "DeleteVolume/should fail when no volume id is provided",
    );
    expect_ok(
        controller
            .delete_volume(DeleteVolumeRequest {
                volume_id: "fake-vol-id".into(),
                ..Default::default()
            })
            .await,
        "DeleteVolume/should succeed when an invalid volume id is used",
    );

    expect_code(
        controller
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest::default())
            .await,
        Code::InvalidArgument,
        "ValidateVolumeCapabilities/should fail when no volume id is provided",
    );
    expect_code(
        controller
            .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
                volume_id: fake_volume_id(),
                volume_capabilities: vec![snw()],
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "ValidateVolumeCapabilities/should fail when the requested volume does not exist",
    );
    s.teardown().await;
}

fn listed_ids(list: &ListVolumesResponse) -> Vec<String> {
    list.entries
        .iter()
        .filter_map(|e| e.volume.as_ref().map(|v| v.volume_id.clone()))
        .collect()
}

async fn list_volumes_sees_new_and_deleted_volumes(driver: &DevDriver) {
    let mut s = Sanity::setup(
        driver,
        "ListVolumes/check the presence of new volumes and absence of deleted ones in the volume list",
    );
    let mut controller = driver.controller();
    let before = listed_ids(&expect_ok(
        controller.list_volumes(ListVolumesRequest::default()).await,
        &s.step("ListVolumes before"),
    ));
    // The literal name "sanity", no capacity range.
    let volume = s.create_volume(create_request("sanity", None)).await;
    let during = listed_ids(&expect_ok(
        controller.list_volumes(ListVolumesRequest::default()).await,
        &s.step("ListVolumes after CreateVolume"),
    ));
    assert_eq!(
        during.len(),
        before.len() + 1,
        "{}",
        s.step("one more volume listed")
    );
    assert!(
        during.contains(&volume.volume_id),
        "spec: {}: new volume {} not listed: {during:?}",
        s.test,
        volume.volume_id
    );
    let result = s.delete(&volume.volume_id).await;
    expect_ok(result, &s.step("DeleteVolume"));
    let after = listed_ids(&expect_ok(
        controller.list_volumes(ListVolumesRequest::default()).await,
        &s.step("ListVolumes after DeleteVolume"),
    ));
    assert_eq!(after.len(), before.len(), "{}", s.step("count back"));
    assert!(
        !after.contains(&volume.volume_id),
        "{}",
        s.step("deleted volume still listed")
    );
    // The volume stays registered: cleanup deletes it a second time.
    s.teardown().await;
}

/// csi-sanity: `capacity_bytes` is at least the request, or 0 (unknown).
#[track_caller]
fn assert_capacity_fits(volume: &Volume, range: CapacityRange, step: &str) {
    let bytes = volume.capacity_bytes;
    let fits =
        bytes >= range.required_bytes && (range.limit_bytes == 0 || bytes <= range.limit_bytes);
    assert!(
        bytes == 0 || fits,
        "{step}: capacity_bytes {bytes} outside {range:?}"
    );
}

async fn create_volume_values(driver: &DevDriver) {
    let range = CapacityRange {
        required_bytes: TEST_VOLUME_SIZE,
        limit_bytes: 0,
    };

    let mut s = Sanity::setup(
        driver,
        "CreateVolume/should return appropriate values SingleNodeWriter NoCapacity",
    );
    s.create_volume(create_request(
        &unique("sanity-controller-create-single-no-capacity"),
        Some(range),
    ))
    .await;
    s.teardown().await;

    // csi-sanity skips this one on OUT_OF_RANGE or UNIMPLEMENTED; this
    // driver records any capacity, so it must succeed.
    let mut s = Sanity::setup(
        driver,
        "CreateVolume/should return appropriate values SingleNodeWriter WithCapacity 1Gi",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-controller-create-single-with-capacity"),
            Some(range),
        ))
        .await;
    assert_capacity_fits(&volume, range, s.test);
    s.teardown().await;

    let mut s = Sanity::setup(
        driver,
        "CreateVolume/should not fail when requesting to create a volume with already existing name and same capacity",
    );
    let name = unique("sanity-controller-create-twice");
    let first = s.create_volume(create_request(&name, Some(range))).await;
    assert_capacity_fits(&first, range, &s.step("first"));
    let second = s.create_volume(create_request(&name, Some(range))).await;
    assert_capacity_fits(&second, range, &s.step("second"));
    assert_eq!(
        first.volume_id,
        second.volume_id,
        "{}",
        s.step("same volume id")
    );
    // Both registered: cleanup deletes the same id twice.
    s.teardown().await;

    let mut s = Sanity::setup(
        driver,
        "CreateVolume/should fail when requesting to create a volume with already existing name and different capacity",
    );
    let name = unique("sanity-controller-create-twice-different");
    let exact = capacity(TEST_VOLUME_SIZE, TEST_VOLUME_SIZE);
    let volume = s.create_volume(create_request(&name, exact)).await;
    assert_capacity_fits(&volume, exact.unwrap(), &s.step("first"));
    let result = s
        .controller
        .create_volume(create_request(
            &name,
            capacity(2 * TEST_VOLUME_SIZE, 2 * TEST_VOLUME_SIZE),
        ))
        .await;
    expect_code(
        result,
        Code::AlreadyExists,
        &s.step("second, twice the size"),
    );
    s.teardown().await;

    let mut s = Sanity::setup(
        driver,
        "CreateVolume/should not fail when creating volume with maximum-length name",
    );
    let name = unique_with_length("sanity-controller-create-maxlen", 128);
    let volume = s.create_volume(create_request(&name, Some(range))).await;
    assert_capacity_fits(&volume, range, s.test);
    s.teardown().await;

    let mut s = Sanity::setup(
        driver,
        "DeleteVolume/should return appropriate values (no optional values added)",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-controller-create-appropriate"),
            Some(range),
        ))
        .await;
    let result = s.delete(&volume.volume_id).await;
    expect_ok(result, &s.step("DeleteVolume"));
    assert!(
        !driver.volume_names().contains(&volume.volume_id),
        "spec: {}: gluster volume {} still exists after DeleteVolume",
        s.test,
        volume.volume_id
    );
    s.teardown().await;
}

async fn validate_volume_capabilities_values(driver: &DevDriver) {
    let mut s = Sanity::setup(
        driver,
        "ValidateVolumeCapabilities/should fail when no volume capabilities are provided",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-controller-validate-nocaps"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    let result = s
        .controller
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: volume.volume_id.clone(),
            ..Default::default()
        })
        .await;
    expect_code(result, Code::InvalidArgument, s.test);
    s.teardown().await;

    let mut s = Sanity::setup(
        driver,
        "ValidateVolumeCapabilities/should return appropriate values (no optional values added)",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-controller-validate"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    let validate = |caps: Vec<VolumeCapability>| ValidateVolumeCapabilitiesRequest {
        volume_id: volume.volume_id.clone(),
        volume_context: volume.volume_context.clone(),
        volume_capabilities: caps,
        ..Default::default()
    };
    let response = expect_ok(
        s.controller
            .validate_volume_capabilities(validate(vec![snw()]))
            .await,
        s.test,
    );
    if let Some(confirmed) = &response.confirmed {
        assert!(
            !confirmed.volume_capabilities.is_empty(),
            "{}",
            s.step("confirmed without capabilities")
        );
    }
    // spec: what the driver supports is confirmed, what it does not is
    // answered with `confirmed` unset and a message, not with an error.
    assert!(
        response.confirmed.is_some(),
        "spec: ValidateVolumeCapabilities: SINGLE_NODE_WRITER mount not confirmed: {}",
        response.message
    );
    for mode in [Mode::SingleNodeSingleWriter, Mode::SingleNodeMultiWriter] {
        let response = expect_ok(
            s.controller
                .validate_volume_capabilities(validate(vec![mount_capability(mode)]))
                .await,
            &format!("spec: ValidateVolumeCapabilities {mode:?}"),
        );
        assert_eq!(
            response.confirmed.map(|c| c.volume_capabilities),
            Some(vec![mount_capability(mode)]),
            "spec: ValidateVolumeCapabilities: SINGLE_NODE_MULTI_WRITER is advertised, so {mode:?} must be confirmed"
        );
    }
    let response = expect_ok(
        s.controller
            .validate_volume_capabilities(validate(vec![block_capability()]))
            .await,
        "spec: ValidateVolumeCapabilities with a block capability",
    );
    assert!(
        response.confirmed.is_none() && !response.message.is_empty(),
        "spec: ValidateVolumeCapabilities: a block capability must not be confirmed, and the message says why: {response:?}"
    );
    s.teardown().await;
}

// ---------------------------------------------------------------------------
// Node: requests the driver must refuse.

/// csi-sanity "Node Service": NodeGetCapabilities, NodeGetInfo and every
/// "should fail when ..." of NodePublishVolume, NodeUnpublishVolume,
/// NodeStageVolume, NodeUnstageVolume and NodeGetVolumeStats, plus the
/// spec's UNIMPLEMENTED for NodeExpandVolume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refuses_incomplete_requests() {
    let driver = DevDriver::start().await;
    let s = Sanity::setup(&driver, "Node Service (requests without volumes)");
    let mut node = driver.node();
    let target = path_str(&s.target());
    let staging = path_str(&s.staging_dir);

    let step = "NodeGetCapabilities/should return appropriate capabilities";
    let caps = expect_ok(
        node.node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await,
        step,
    );
    let advertised = node_rpcs(&caps);
    let expected = HashSet::from([
        NodeRpc::StageUnstageVolume,
        NodeRpc::GetVolumeStats,
        NodeRpc::VolumeCondition,
        NodeRpc::SingleNodeMultiWriter,
    ]);
    assert_eq!(
        advertised, expected,
        "{step}: the capabilities this suite (and the csi-sanity checklist) is written for"
    );
    expect_code(
        node.node_expand_volume(NodeExpandVolumeRequest {
            volume_id: fake_volume_id(),
            volume_path: target.clone(),
            capacity_range: capacity(2 * TEST_VOLUME_SIZE, 0),
            ..Default::default()
        })
        .await,
        Code::Unimplemented,
        "spec: NodeExpandVolume without node EXPAND_VOLUME",
    );

    let step = "NodeGetInfo/should return appropriate values";
    let info = expect_ok(node.node_get_info(NodeGetInfoRequest {}).await, step);
    assert!(!info.node_id.is_empty(), "{step}: empty node_id");
    assert!(info.max_volumes_per_node >= 0, "{step}: {info:?}");
    assert!(
        info.node_id.len() <= 256,
        "spec: NodeGetInfo: node_id longer than 256 bytes"
    );

    expect_code(
        node.node_publish_volume(NodePublishVolumeRequest::default())
            .await,
        Code::InvalidArgument,
        "NodePublishVolume/should fail when no volume id is provided",
    );
    expect_code(
        node.node_publish_volume(NodePublishVolumeRequest {
            volume_id: fake_volume_id(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodePublishVolume/should fail when no target path is provided",
    );
    expect_code(
        node.node_publish_volume(NodePublishVolumeRequest {
            volume_id: fake_volume_id(),
            target_path: target.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodePublishVolume/should fail when no volume capability is provided",
    );

    expect_code(
        node.node_unpublish_volume(NodeUnpublishVolumeRequest::default())
            .await,
        Code::InvalidArgument,
        "NodeUnpublishVolume/should fail when no volume id is provided",
    );
    expect_code(
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: fake_volume_id(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodeUnpublishVolume/should fail when no target path is provided",
    );

    let mock_device = || [("device".to_string(), "/dev/mock".to_string())].into();
    expect_code(
        node.node_stage_volume(NodeStageVolumeRequest {
            staging_target_path: staging.clone(),
            volume_capability: Some(snw()),
            publish_context: mock_device(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodeStageVolume/should fail when no volume id is provided",
    );
    expect_code(
        node.node_stage_volume(NodeStageVolumeRequest {
            volume_id: fake_volume_id(),
            volume_capability: Some(snw()),
            publish_context: mock_device(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodeStageVolume/should fail when no staging target path is provided",
    );

    expect_code(
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            staging_target_path: staging.clone(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodeUnstageVolume/should fail when no volume id is provided",
    );
    expect_code(
        node.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: fake_volume_id(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodeUnstageVolume/should fail when no staging target path is provided",
    );

    expect_code(
        node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_path: "some/path".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodeGetVolumeStats/should fail when no volume id is provided",
    );
    expect_code(
        node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: fake_volume_id(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "NodeGetVolumeStats/should fail when no volume path is provided",
    );
    expect_code(
        node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: fake_volume_id(),
            volume_path: "some/path".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "NodeGetVolumeStats/should fail when volume is not found",
    );
    expect_code(
        node.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: fake_volume_id(),
            volume_path: staging.clone(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "spec: NodeGetVolumeStats on an existing directory where no volume is mounted",
    );
    s.teardown().await;

    let mut s = Sanity::setup(
        &driver,
        "NodeStageVolume/should fail when no volume capability is provided",
    );
    // No capacity range, like csi-sanity.
    let volume = s
        .create_volume(create_request(&unique("sanity-node-stage-nocaps"), None))
        .await;
    let mut request = s.stage_request(&volume, snw());
    request.volume_capability = None;
    request.volume_context = Default::default();
    request.publish_context = mock_device();
    let result = s.node.node_stage_volume(request).await;
    expect_code(result, Code::InvalidArgument, s.test);
    assert!(
        mounts_at(&s.staging_dir).is_empty(),
        "{}",
        s.step("refused, yet mounted")
    );
    s.teardown().await;
}

// ---------------------------------------------------------------------------
// Node: whole lifecycles.

/// csi-sanity "NodeUnpublishVolume/should remove target path",
/// "NodeGetVolumeStats/should fail when volume does not exist on the
/// specified path", "Node Service/should work" and "Node Service/should be
/// idempotent" (10 NodeStage and 10 NodePublish calls), one after the other
/// on the same staging dir and `<mountdir>/target`, plus the spec's rules for
/// repeated calls with other arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_lifecycles() {
    let driver = DevDriver::start().await;
    node_unpublish_removes_target_path(&driver).await;
    node_stats_on_a_path_without_the_volume(&driver).await;
    node_full_lifecycle(&driver, "Node Service/should work", "sanity-node-full-1", 1).await;
    node_full_lifecycle(
        &driver,
        "Node Service/should be idempotent",
        "sanity-node-full-10",
        IDEMPOTENT_COUNT,
    )
    .await;
    node_repeated_calls_with_other_arguments(&driver).await;
}

async fn node_unpublish_removes_target_path(driver: &DevDriver) {
    let mut s = Sanity::setup(driver, "NodeUnpublishVolume/should remove target path");
    let volume = s
        .create_volume(create_request(
            &unique("sanity-node-unpublish-volume"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    s.node_id().await;
    s.stage(&volume, "NodeStageVolume").await;
    s.publish(&volume, "NodePublishVolume").await;
    let target = s.target();
    let meta = std::fs::symlink_metadata(&target).unwrap_or_else(|e| {
        panic!(
            "{}",
            s.step(&format!(
                "target path should have been created by the CSI driver: {e}"
            ))
        )
    });
    assert!(
        meta.is_dir(),
        "{}",
        s.step("target of a mount volume is a directory")
    );
    let result = s.unpublish(&volume.volume_id, &target).await;
    expect_ok(result, &s.step("NodeUnpublishVolume"));
    assert_missing(
        &target,
        &s.step(
            "target path should have been removed by the CSI driver during NodeUnpublishVolume",
        ),
    );
    s.teardown().await;
}

async fn node_stats_on_a_path_without_the_volume(driver: &DevDriver) {
    let mut s = Sanity::setup(
        driver,
        "NodeGetVolumeStats/should fail when volume does not exist on the specified path",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-node-get-volume-stats"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    s.node_id().await;
    s.stage(&volume, "NodeStageVolume").await;
    s.publish(&volume, "NodePublishVolume").await;
    let result = s.stats(&volume.volume_id, "some/path").await;
    expect_code(result, Code::NotFound, s.test);
    s.teardown().await;
}

/// csi-sanity's `runControllerTest` without ControllerPublish: NodeStage and
/// NodePublish `count` times each, then NodeGetVolumeStats on the target.
async fn node_full_lifecycle(driver: &DevDriver, test: &'static str, prefix: &str, count: usize) {
    let mut s = Sanity::setup(driver, test);
    s.node_id().await;
    let volume = s
        .create_volume(create_request(
            &unique(prefix),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    for i in 1..=count {
        s.stage(&volume, &format!("NodeStageVolume call {i} of {count}"))
            .await;
    }
    for i in 1..=count {
        s.publish(&volume, &format!("NodePublishVolume call {i} of {count}"))
            .await;
    }
    assert_eq!(
        mounts_at(&s.staging_dir).len(),
        1,
        "{}",
        s.step("repeated NodeStageVolume must not stack mounts")
    );
    assert_eq!(
        mounts_at(&s.target()).len(),
        1,
        "{}",
        s.step("repeated NodePublishVolume must not stack mounts")
    );
    let target = path_str(&s.target());
    let stats = s.stats(&volume.volume_id, &target).await;
    let stats = expect_ok(stats, &s.step("NodeGetVolumeStats on the target"));
    check_healthy_stats(&stats, &s.step("NodeGetVolumeStats on the target"));
    s.teardown().await;
}

/// Spec rules csi-sanity does not exercise: NodeStage/NodePublish again with
/// incompatible arguments is ALREADY_EXISTS; with SINGLE_NODE_MULTI_WRITER a
/// second target is fine; NodeGetVolumeStats works on the staging path and is
/// NOT_FOUND for another volume's id.
async fn node_repeated_calls_with_other_arguments(driver: &DevDriver) {
    let mut s = Sanity::setup(driver, "spec: repeated node calls with other arguments");
    // Created first, so cleanup (LIFO) reaches it after the staged volume.
    let other = s
        .create_volume(create_request(
            &unique("sanity-spec-node-other"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    let multi = mount_capability(Mode::SingleNodeMultiWriter);
    let mut request = create_request(
        &unique("sanity-spec-node-rules"),
        capacity(TEST_VOLUME_SIZE, 0),
    );
    request.volume_capabilities = vec![multi.clone()];
    let volume = s.create_volume(request).await;

    let stage = s.stage_request(&volume, multi.clone());
    let result = s.node.node_stage_volume(stage).await;
    expect_ok(result, &s.step("NodeStageVolume"));
    let read_only_stage = s.stage_request(&volume, mount_capability(Mode::MultiNodeReaderOnly));
    let result = s.node.node_stage_volume(read_only_stage).await;
    expect_code(
        result,
        Code::AlreadyExists,
        &s.step("NodeStageVolume again, read-only: staged but incompatible"),
    );

    let target = s.target();
    let publish = s.publish_request(&volume, &target, multi.clone());
    let result = s.node.node_publish_volume(publish.clone()).await;
    expect_ok(result, &s.step("NodePublishVolume"));
    let mut read_only = publish.clone();
    read_only.readonly = true;
    let result = s.node.node_publish_volume(read_only).await;
    expect_code(
        result,
        Code::AlreadyExists,
        &s.step("NodePublishVolume again with readonly: published but incompatible"),
    );
    assert_eq!(
        mounts_at(&target).len(),
        1,
        "{}",
        s.step("refused publish left a mount")
    );

    let second = s.mount_dir.join("target-2");
    let request = s.publish_request(&volume, &second, multi.clone());
    let result = s.node.node_publish_volume(request).await;
    expect_ok(
        result,
        &s.step("SINGLE_NODE_MULTI_WRITER: NodePublishVolume at a second target"),
    );
    assert_eq!(
        mounts_at(&second).len(),
        1,
        "{}",
        s.step("second target mounted")
    );
    let result = s.unpublish(&volume.volume_id, &second).await;
    expect_ok(result, &s.step("NodeUnpublishVolume of the second target"));
    assert_missing(
        &second,
        &s.step("second target removed by NodeUnpublishVolume"),
    );
    assert_eq!(
        mounts_at(&target).len(),
        1,
        "{}",
        s.step("first target untouched")
    );

    let staging = path_str(&s.staging_dir);
    let stats = s.stats(&volume.volume_id, &staging).await;
    let stats = expect_ok(stats, &s.step("NodeGetVolumeStats on the staging path"));
    check_healthy_stats(&stats, &s.step("NodeGetVolumeStats on the staging path"));
    let result = s.stats(&other.volume_id, &path_str(&target)).await;
    expect_code(
        result,
        Code::NotFound,
        &s.step(
            "NodeGetVolumeStats with another volume's id: volume does not exist on volume_path",
        ),
    );
    s.teardown().await;
}

// ---------------------------------------------------------------------------
// Cleanup rules.

/// What `Resources.Cleanup` does after every csi-sanity test, spelled out:
/// NodeUnpublish of a never-published volume and NodeUnstage of a
/// never-staged one are OK or NOT_FOUND, DeleteVolume twice is OK; plus the
/// spec's idempotency of NodeUnpublish, NodeUnstage and DeleteVolume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_rules() {
    let driver = DevDriver::start().await;

    let mut s = Sanity::setup(&driver, "cleanup: a volume never staged or published");
    let volume = s
        .create_volume(create_request(
            &unique("sanity-cleanup-untouched"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    let id = volume.volume_id.clone();
    let (target, staging) = (s.target(), s.staging_dir.clone());
    let result = s.unpublish(&id, &target).await;
    expect_ok_or_not_found(result, &s.step("NodeUnpublishVolume, target path missing"));
    assert_missing(&target, &s.step("NodeUnpublishVolume created the target"));
    let result = s.unstage(&id, &staging).await;
    expect_ok_or_not_found(
        result,
        &s.step("NodeUnstageVolume, staging dir not mounted"),
    );
    let result = s.delete(&id).await;
    expect_ok(result, &s.step("DeleteVolume"));
    assert!(
        !driver.volume_names().contains(&id),
        "{}",
        s.step("gluster volume still exists after DeleteVolume")
    );
    let result = s.delete(&id).await;
    expect_ok(
        result,
        &s.step("DeleteVolume again: a deleted volume MUST be OK"),
    );
    let result = s.delete("csi-sanity-never-created").await;
    expect_ok(
        result,
        &s.step("DeleteVolume of a well-formed id that never existed"),
    );
    // Still registered: teardown runs the whole cleanup once more.
    s.teardown().await;

    let mut s = Sanity::setup(&driver, "cleanup: the same volume registered twice");
    let name = unique("sanity-cleanup-twice");
    let first = s
        .create_volume(create_request(&name, capacity(TEST_VOLUME_SIZE, 0)))
        .await;
    let second = s
        .create_volume(create_request(&name, capacity(TEST_VOLUME_SIZE, 0)))
        .await;
    assert_eq!(first.volume_id, second.volume_id, "{}", s.step("same id"));
    s.teardown().await;
    assert!(
        !driver.volume_names().contains(&first.volume_id),
        "cleanup: the same volume registered twice: gluster volume left behind"
    );

    let mut s = Sanity::setup(
        &driver,
        "cleanup: after a whole lifecycle, every undo again",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-cleanup-lifecycle"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    let id = volume.volume_id.clone();
    s.stage(&volume, "NodeStageVolume").await;
    s.publish(&volume, "NodePublishVolume").await;
    for round in ["", " again"] {
        let result = s.unpublish(&id, &target).await;
        expect_ok(result, &s.step(&format!("NodeUnpublishVolume{round}")));
        assert_missing(
            &target,
            &s.step(&format!("target after NodeUnpublishVolume{round}")),
        );
    }
    for round in ["", " again"] {
        let result = s.unstage(&id, &staging).await;
        expect_ok(result, &s.step(&format!("NodeUnstageVolume{round}")));
        assert!(
            mounts_at(&staging).is_empty(),
            "{}",
            s.step(&format!(
                "staging dir mounted after NodeUnstageVolume{round}"
            ))
        );
    }
    let gone = driver.kubelet.path().join("no-such-staging-dir");
    let result = s.unstage(&id, &gone).await;
    expect_ok(
        result,
        &s.step("NodeUnstageVolume at a path that does not exist"),
    );
    std::fs::create_dir(&target).unwrap();
    let result = s.unpublish(&id, &target).await;
    expect_ok(
        result,
        &s.step("NodeUnpublishVolume of a target directory that is not a mount"),
    );
    assert_missing(
        &target,
        &s.step("NodeUnpublishVolume leaves an unmounted target directory"),
    );
    s.teardown().await;
}

// ---------------------------------------------------------------------------
// Spec error codes csi-sanity does not check.

/// CSI spec, NodePublishVolume errors: "Staging target path not set:
/// 9 FAILED_PRECONDITION: STAGE_UNSTAGE_VOLUME capability is set but no
/// staging_target_path was set." Missing fields that csi-sanity expects
/// INVALID_ARGUMENT for stay INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_node_publish_without_staging_path_is_failed_precondition() {
    let driver = DevDriver::start().await;
    let mut s = Sanity::setup(
        &driver,
        "spec: NodePublishVolume without staging_target_path",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-spec-no-staging-path"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    s.stage(&volume, "NodeStageVolume").await;
    let mut request = s.publish_request(&volume, &s.target(), snw());
    request.staging_target_path = String::new();
    request.volume_capability = None;
    let result = s.node.node_publish_volume(request.clone()).await;
    expect_code(
        result,
        Code::InvalidArgument,
        &s.step("no capability and no staging path (csi-sanity's \"no volume capability\" case)"),
    );
    request.volume_capability = Some(snw());
    let result = s.node.node_publish_volume(request).await;
    expect_code(
        result,
        Code::FailedPrecondition,
        &s.step("volume staged, request complete but for staging_target_path"),
    );
    assert_missing(&s.target(), &s.step("refused publish created the target"));
    s.teardown().await;
}

/// CSI spec, NodeStageVolume errors: "Volume does not exist: 5 NOT_FOUND".
/// Staged here: a volume this driver created and then deleted, with the
/// volume_context CreateVolume returned for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_node_stage_of_a_deleted_volume_is_not_found() {
    let driver = DevDriver::start().await;
    let mut s = Sanity::setup(
        &driver,
        "spec: NodeStageVolume of a volume that does not exist",
    );
    let volume = s
        .create_volume(create_request(
            &unique("sanity-spec-deleted"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    let result = s.delete(&volume.volume_id).await;
    expect_ok(result, &s.step("DeleteVolume"));
    let request = s.stage_request(&volume, snw());
    let result = s.node.node_stage_volume(request).await;
    expect_code(result, Code::NotFound, &s.step("NodeStageVolume"));
    assert!(
        mounts_at(&s.staging_dir).is_empty(),
        "{}",
        s.step("staging dir mounted")
    );
    s.teardown().await;
}

// ---------------------------------------------------------------------------
// ControllerExpandVolume.

fn expand_request(volume_id: &str, range: Option<CapacityRange>) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: volume_id.to_string(),
        capacity_range: range,
        volume_capability: Some(snw()),
        ..Default::default()
    }
}

/// csi-sanity "ExpandVolume [Controller Server]" (run: EXPAND_VOLUME is
/// advertised), plus the spec's rules: idempotent, NOT_FOUND for a volume
/// that does not exist, 0 OK when the volume is already as large as
/// required, OUT_OF_RANGE for a range the volume cannot meet (it would have
/// to shrink), and no NodeExpandVolume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_volume() {
    let driver = DevDriver::start().await;

    let mut s = Sanity::setup(&driver, "ExpandVolume/should fail if no volume id is given");
    expect_code(
        s.controller
            .controller_expand_volume(expand_request("", capacity(2 * TEST_VOLUME_SIZE, 0)))
            .await,
        Code::InvalidArgument,
        s.test,
    );
    s.teardown().await;

    let mut s = Sanity::setup(
        &driver,
        "ExpandVolume/should fail if no capacity range is given",
    );
    expect_code(
        s.controller
            .controller_expand_volume(expand_request("", None))
            .await,
        Code::InvalidArgument,
        s.test,
    );
    s.teardown().await;

    let mut s = Sanity::setup(&driver, "ExpandVolume/should work");
    let volume = s
        .create_volume(create_request(
            &unique("sanity-expand-volume"),
            capacity(TEST_VOLUME_SIZE, 0),
        ))
        .await;
    let id = volume.volume_id.clone();
    for attempt in ["", " (again: idempotent)"] {
        let expanded = expect_ok(
            s.controller
                .controller_expand_volume(expand_request(&id, capacity(2 * TEST_VOLUME_SIZE, 0)))
                .await,
            &s.step(&format!("ControllerExpandVolume{attempt}")),
        );
        assert_eq!(
            expanded.capacity_bytes,
            2 * TEST_VOLUME_SIZE,
            "{}",
            s.step("capacity_bytes is the expanded size")
        );
        assert!(
            !expanded.node_expansion_required,
            "{}",
            s.step("spec: no NODE EXPAND_VOLUME capability, so no NodeExpandVolume")
        );
    }
    let smaller = expect_ok(
        s.controller
            .controller_expand_volume(expand_request(&id, capacity(TEST_VOLUME_SIZE, 0)))
            .await,
        &s.step("spec: already larger than the target capacity: 0 OK"),
    );
    assert_eq!(smaller.capacity_bytes, 2 * TEST_VOLUME_SIZE);
    expect_code(
        s.controller
            .controller_expand_volume(expand_request(
                &id,
                capacity(TEST_VOLUME_SIZE, TEST_VOLUME_SIZE),
            ))
            .await,
        Code::OutOfRange,
        &s.step("spec: Unsupported capacity_range (the volume would have to shrink)"),
    );
    expect_code(
        s.controller
            .controller_expand_volume(expand_request(
                &fake_volume_id(),
                capacity(2 * TEST_VOLUME_SIZE, 0),
            ))
            .await,
        Code::NotFound,
        &s.step("spec: Volume does not exist"),
    );
    expect_code(
        s.controller
            .controller_expand_volume(expand_request(&id, capacity(-1, 0)))
            .await,
        Code::InvalidArgument,
        &s.step("spec: negative required_bytes"),
    );
    s.teardown().await;
}
