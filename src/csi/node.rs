//! CSI Node service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::validate::{self, invalid};
use super::{begin, observe, status, unimplemented};
use crate::in_flight::InFlight;
use crate::mount::FsUsage;
use crate::node::{MountOptions, NodeVolumes, PublishRequest, StageRequest, VolumeHealth};
use crate::proto::csi::node_server::Node;
use crate::proto::csi::node_service_capability::{Rpc, rpc};
use crate::proto::csi::*;
use crate::volume_context::VolumeContext;

pub struct NodeService {
    volumes: Arc<NodeVolumes>,
    in_flight: InFlight,
}

impl NodeService {
    pub fn new(volumes: Arc<NodeVolumes>) -> Self {
        NodeService {
            volumes,
            in_flight: InFlight::new(),
        }
    }
}

const CAPABILITIES: [rpc::Type; 4] = [
    rpc::Type::StageUnstageVolume,
    rpc::Type::GetVolumeStats,
    rpc::Type::VolumeCondition,
    rpc::Type::SingleNodeMultiWriter,
];

fn bytes(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        request: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        let req = request.into_inner();
        observe("NodeStageVolume", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            let staging_path =
                validate::staging_path("staging_target_path", &req.staging_target_path)?;
            let mount =
                validate::required_capability("volume_capability", req.volume_capability.as_ref())?;
            let context = VolumeContext::from_map(&req.volume_context)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            validate::context_matches_id(id, &context)?;
            let mut options = MountOptions::parse(
                context
                    .mount_options
                    .iter()
                    .chain(mount.options.as_slice())
                    .map(String::as_str),
            )
            .map_err(|e| invalid("volume_context.mountOptions", e))?;
            if mount.read_only {
                options = options.with_read_only();
            }
            let _guard = begin(&self.in_flight, id)?;
            self.volumes
                .stage(&StageRequest {
                    volume_id: id.to_string(),
                    staging_path,
                    context,
                    options,
                })
                .await
                .map_err(status)?;
            Ok(Response::new(NodeStageVolumeResponse {}))
        })
        .await
    }

    async fn node_unstage_volume(
        &self,
        request: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        let req = request.into_inner();
        observe("NodeUnstageVolume", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            let staging_path = validate::path("staging_target_path", &req.staging_target_path)?;
            let _guard = begin(&self.in_flight, id)?;
            self.volumes
                .unstage(id, &staging_path)
                .await
                .map_err(status)?;
            Ok(Response::new(NodeUnstageVolumeResponse {}))
        })
        .await
    }

    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = request.into_inner();
        observe("NodePublishVolume", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            let target_path = validate::path("target_path", &req.target_path)?;
            let mount = validate::required_capability(
                "volume_capability",
                req.volume_capability.as_ref(),
            )?;
            // Spec: with STAGE_UNSTAGE_VOLUME advertised, a missing staging
            // path is FAILED_PRECONDITION, not INVALID_ARGUMENT.
            if req.staging_target_path.is_empty() {
                return Err(Status::failed_precondition(
                    "staging_target_path: missing; this driver stages volumes (NodeStageVolume first)",
                ));
            }
            let staging_path = validate::path("staging_target_path", &req.staging_target_path)?;
            // Pods of one volume publish in parallel; each target is its own key.
            let _guard = begin(&self.in_flight, &format!("{id}@{}", target_path.display()))?;
            self.volumes
                .publish(&PublishRequest {
                    volume_id: id.to_string(),
                    staging_path,
                    target_path,
                    read_only: req.readonly || mount.read_only,
                    single_writer: mount.single_writer,
                })
                .await
                .map_err(status)?;
            Ok(Response::new(NodePublishVolumeResponse {}))
        })
        .await
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        observe("NodeUnpublishVolume", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            let target_path = validate::path("target_path", &req.target_path)?;
            let _guard = begin(&self.in_flight, &format!("{id}@{}", target_path.display()))?;
            self.volumes
                .unpublish(id, &target_path)
                .await
                .map_err(status)?;
            Ok(Response::new(NodeUnpublishVolumeResponse {}))
        })
        .await
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let req = request.into_inner();
        observe("NodeGetVolumeStats", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            validate::required("volume_path", &req.volume_path)?;
            // Whatever is not an absolute path has no volume mounted on it.
            let path = validate::path("volume_path", &req.volume_path).map_err(|e| {
                Status::not_found(format!("volume {id} is not mounted there: {}", e.message()))
            })?;
            let (usage, abnormal, message) =
                match self.volumes.stats(id, &path).await.map_err(status)? {
                    VolumeHealth::Healthy(usage) => {
                        (Some(usage), false, "mounted and answering".into())
                    }
                    VolumeHealth::Degraded(usage, message) => (Some(usage), true, message),
                    VolumeHealth::Abnormal(message) => (None, true, message),
                };
            let response = NodeGetVolumeStatsResponse {
                usage: usage.map(usage_entries).unwrap_or_default(),
                volume_condition: Some(VolumeCondition { abnormal, message }),
            };
            Ok(Response::new(response))
        })
        .await
    }

    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        unimplemented("NodeExpandVolume").await
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        observe("NodeGetCapabilities", "", async {
            Ok(Response::new(NodeGetCapabilitiesResponse {
                capabilities: CAPABILITIES
                    .iter()
                    .map(|t| NodeServiceCapability {
                        r#type: Some(node_service_capability::Type::Rpc(Rpc {
                            r#type: *t as i32,
                        })),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        observe("NodeGetInfo", "", async {
            Ok(Response::new(NodeGetInfoResponse {
                node_id: self.volumes.node_id().to_string(),
                max_volumes_per_node: 0,
                accessible_topology: None,
            }))
        })
        .await
    }
}

/// Bytes and inodes, as NodeGetVolumeStats reports them.
fn usage_entries(usage: FsUsage) -> Vec<VolumeUsage> {
    vec![
        VolumeUsage {
            available: bytes(usage.available_bytes),
            total: bytes(usage.total_bytes),
            used: bytes(usage.used_bytes),
            unit: volume_usage::Unit::Bytes as i32,
        },
        VolumeUsage {
            available: bytes(usage.free_inodes),
            total: bytes(usage.total_inodes),
            used: bytes(usage.used_inodes),
            unit: volume_usage::Unit::Inodes as i32,
        },
    ]
}
