//! CSI Controller service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::validate::{self, invalid};
use super::{observe, status, unimplemented};
use crate::controller::{
    CreateRequest, ProvisionedVolume, Provisioner, StorageClassParams, VolumeHealth,
};
use crate::names::{PoolDirectory, VolumeName, validate_csi_name};
use crate::operations::{Operations, caller_deadline};
use crate::proto::csi::controller_server::Controller;
use crate::proto::csi::controller_service_capability::{Rpc, rpc};
use crate::proto::csi::*;

pub struct ControllerService {
    provisioner: Arc<Provisioner>,
    operations: Operations,
}

impl ControllerService {
    pub fn new(provisioner: Arc<Provisioner>) -> Self {
        ControllerService {
            provisioner,
            operations: Operations::default(),
        }
    }

    /// The operations this service runs (for the drain at shutdown).
    pub fn operations(&self) -> Operations {
        self.operations.clone()
    }
}

/// Advertised, and nothing else: every other RPC answers UNIMPLEMENTED.
const CAPABILITIES: [rpc::Type; 7] = [
    rpc::Type::CreateDeleteVolume,
    rpc::Type::ListVolumes,
    rpc::Type::SingleNodeMultiWriter,
    rpc::Type::ExpandVolume,
    rpc::Type::GetCapacity,
    rpc::Type::GetVolume,
    rpc::Type::VolumeCondition,
];

fn to_csi(volume: ProvisionedVolume) -> Volume {
    Volume {
        capacity_bytes: i64::try_from(volume.capacity_bytes).unwrap_or(i64::MAX),
        volume_id: volume.id,
        volume_context: volume.context.to_map(),
        content_source: None,
        accessible_topology: Vec::new(),
    }
}

/// A volume's condition; one whose health could not be read is abnormal
/// with the reason.
fn condition(health: Result<VolumeHealth, String>) -> VolumeCondition {
    match health {
        Ok(health) => VolumeCondition {
            abnormal: health.abnormal(),
            message: health.message(),
        },
        Err(e) => VolumeCondition {
            abnormal: true,
            message: format!("could not read the volume's health from gluster: {e}"),
        },
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let deadline = caller_deadline(request.metadata());
        let req = request.into_inner();
        observe("CreateVolume", &req.name, async {
            validate::required("name", &req.name)?;
            validate_csi_name(&req.name).map_err(|e| invalid("name", e))?;
            validate::capabilities("volume_capabilities", &req.volume_capabilities)?;
            let capacity = validate::capacity(req.capacity_range.as_ref())?;
            if req.volume_content_source.is_some() {
                return Err(invalid(
                    "volume_content_source",
                    "cloning and restoring snapshots are not supported",
                ));
            }
            if !req.mutable_parameters.is_empty() {
                return Err(invalid(
                    "mutable_parameters",
                    "volume modification is not supported",
                ));
            }
            let params = StorageClassParams::parse(&req.parameters)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let name = VolumeName::for_csi_name(&req.name).map_err(|e| invalid("name", e))?;
            // One operation per id: the volume, or the pool's directory.
            let key = match &params.pool {
                Some(pool) => PoolDirectory::new(pool, name)
                    .map(|id| id.to_string())
                    .ok_or_else(|| invalid("parameters.pool", "not a pool name"))?,
                None => name.to_string(),
            };
            let create = CreateRequest {
                csi_name: req.name.clone(),
                capacity,
                params,
            };
            let asked = format!("{:?} {:?}", create.capacity, create.params);
            let provisioner = Arc::clone(&self.provisioner);
            let volume = self
                .operations
                .run("CreateVolume", &key, asked, deadline, async move {
                    provisioner.create(&create).await.map_err(status)
                })
                .await?;
            Ok(Response::new(CreateVolumeResponse {
                volume: Some(to_csi(volume)),
            }))
        })
        .await
    }

    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let deadline = caller_deadline(request.metadata());
        let req = request.into_inner();
        observe("DeleteVolume", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            let provisioner = Arc::clone(&self.provisioner);
            let volume_id = id.to_string();
            self.operations
                .run("DeleteVolume", id, String::new(), deadline, async move {
                    provisioner.delete(&volume_id).await.map_err(status)
                })
                .await?;
            Ok(Response::new(DeleteVolumeResponse {}))
        })
        .await
    }

    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = request.into_inner();
        observe("ValidateVolumeCapabilities", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            if req.volume_capabilities.is_empty() {
                return Err(invalid("volume_capabilities", "missing"));
            }
            if self.provisioner.get(id).await.map_err(status)?.is_none() {
                return Err(Status::not_found(format!("volume {id} does not exist")));
            }
            let unsupported: Vec<String> = req
                .volume_capabilities
                .iter()
                .enumerate()
                .filter_map(|(i, cap)| {
                    validate::capability(cap)
                        .err()
                        .map(|u| format!("volume_capabilities[{i}].{u}"))
                })
                .collect();
            let response = if unsupported.is_empty() {
                ValidateVolumeCapabilitiesResponse {
                    confirmed: Some(validate_volume_capabilities_response::Confirmed {
                        volume_context: req.volume_context.clone(),
                        volume_capabilities: req.volume_capabilities.clone(),
                        parameters: req.parameters.clone(),
                        mutable_parameters: Default::default(),
                    }),
                    message: String::new(),
                }
            } else {
                ValidateVolumeCapabilitiesResponse {
                    confirmed: None,
                    message: unsupported.join("; "),
                }
            };
            Ok(Response::new(response))
        })
        .await
    }

    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let req = request.into_inner();
        observe("ListVolumes", "", async {
            let max_entries = usize::try_from(req.max_entries)
                .map_err(|_| invalid("max_entries", format!("{} is negative", req.max_entries)))?;
            let after = match req.starting_token.as_str() {
                "" => None,
                token
                    if VolumeName::parse(token).is_some()
                        || PoolDirectory::parse(token).is_some() =>
                {
                    Some(token)
                }
                token => {
                    return Err(Status::aborted(format!(
                        "starting_token: {token:?} is not a token this driver issued"
                    )));
                }
            };
            let (page, health) = self
                .provisioner
                .list_with_health(after, max_entries)
                .await
                .map_err(status)?;
            Ok(Response::new(ListVolumesResponse {
                entries: page
                    .volumes
                    .into_iter()
                    .zip(health)
                    .map(|(v, health)| list_volumes_response::Entry {
                        volume: Some(to_csi(v)),
                        status: Some(list_volumes_response::VolumeStatus {
                            published_node_ids: Vec::new(),
                            volume_condition: Some(condition(health)),
                        }),
                    })
                    .collect(),
                next_token: page.next.unwrap_or_default(),
            }))
        })
        .await
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        observe("ControllerGetCapabilities", "", async {
            Ok(Response::new(ControllerGetCapabilitiesResponse {
                capabilities: CAPABILITIES
                    .iter()
                    .map(|t| ControllerServiceCapability {
                        r#type: Some(controller_service_capability::Type::Rpc(Rpc {
                            r#type: *t as i32,
                        })),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn controller_publish_volume(
        &self,
        _: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        unimplemented("ControllerPublishVolume").await
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        unimplemented("ControllerUnpublishVolume").await
    }

    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        let req = request.into_inner();
        observe("GetCapacity", "", async {
            let params = StorageClassParams::parse(&req.parameters)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            // No volume with a capability this driver cannot serve fits.
            if req
                .volume_capabilities
                .iter()
                .any(|cap| validate::capability(cap).is_err())
            {
                return Ok(Response::new(GetCapacityResponse::default()));
            }
            let capacity = self.provisioner.capacity(&params).await.map_err(status)?;
            let bytes = i64::try_from(capacity.available_bytes).unwrap_or(i64::MAX);
            Ok(Response::new(GetCapacityResponse {
                available_capacity: bytes,
                maximum_volume_size: Some(bytes),
                minimum_volume_size: None,
            }))
        })
        .await
    }

    async fn create_snapshot(
        &self,
        _: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        unimplemented("CreateSnapshot").await
    }

    async fn delete_snapshot(
        &self,
        _: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        unimplemented("DeleteSnapshot").await
    }

    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        unimplemented("ListSnapshots").await
    }

    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let deadline = caller_deadline(request.metadata());
        let req = request.into_inner();
        observe("ControllerExpandVolume", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            let range = req
                .capacity_range
                .as_ref()
                .ok_or_else(|| invalid("capacity_range", "missing"))?;
            let capacity = validate::capacity(Some(range))?;
            if capacity.required_bytes == 0 && capacity.limit_bytes == 0 {
                return Err(invalid(
                    "capacity_range",
                    "neither required_bytes nor limit_bytes is set",
                ));
            }
            if let Some(capability) = &req.volume_capability {
                validate::capability(capability)
                    .map_err(|u| invalid("volume_capability", u.to_string()))?;
            }
            let provisioner = Arc::clone(&self.provisioner);
            let volume_id = id.to_string();
            let bytes = self
                .operations
                .run(
                    "ControllerExpandVolume",
                    id,
                    format!("{capacity:?}"),
                    deadline,
                    async move {
                        provisioner
                            .expand(&volume_id, capacity)
                            .await
                            .map_err(status)
                    },
                )
                .await?;
            Ok(Response::new(ControllerExpandVolumeResponse {
                capacity_bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                // The quota limit is the whole story: FUSE clients see it at once.
                node_expansion_required: false,
            }))
        })
        .await
    }

    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = request.into_inner();
        observe("ControllerGetVolume", &req.volume_id, async {
            let id = validate::volume_id("volume_id", &req.volume_id)?;
            let Some((volume, health)) = self.provisioner.health(id).await.map_err(status)? else {
                return Err(Status::not_found(format!("volume {id} does not exist")));
            };
            Ok(Response::new(ControllerGetVolumeResponse {
                volume: Some(to_csi(volume)),
                status: Some(controller_get_volume_response::VolumeStatus {
                    published_node_ids: Vec::new(),
                    volume_condition: Some(condition(Ok(health))),
                }),
            }))
        })
        .await
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        unimplemented("ControllerModifyVolume").await
    }
}
