//! CSI Identity service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{observe, status};
use crate::controller::Provisioner;
use crate::node::NodeVolumes;
use crate::proto::csi::identity_server::Identity;
use crate::proto::csi::plugin_capability::{
    Service, Type, VolumeExpansion, service, volume_expansion,
};
use crate::proto::csi::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, PluginCapability, ProbeRequest, ProbeResponse,
};

pub struct IdentityService {
    driver_name: String,
    provisioner: Option<Arc<Provisioner>>,
    node: Option<Arc<NodeVolumes>>,
}

impl IdentityService {
    pub fn new(
        driver_name: String,
        provisioner: Option<Arc<Provisioner>>,
        node: Option<Arc<NodeVolumes>>,
    ) -> Self {
        IdentityService {
            driver_name,
            provisioner,
            node,
        }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        observe("GetPluginInfo", "", async {
            Ok(Response::new(GetPluginInfoResponse {
                name: self.driver_name.clone(),
                vendor_version: env!("CARGO_PKG_VERSION").to_string(),
                manifest: Default::default(),
            }))
        })
        .await
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        observe("GetPluginCapabilities", "", async {
            let controller = PluginCapability {
                r#type: Some(Type::Service(Service {
                    r#type: service::Type::ControllerService as i32,
                })),
            };
            // Quota limits change under live mounts: no unpublish needed.
            let expansion = PluginCapability {
                r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                    r#type: volume_expansion::Type::Online as i32,
                })),
            };
            let capabilities = match self.provisioner {
                Some(_) => vec![controller, expansion],
                None => Vec::new(),
            };
            Ok(Response::new(GetPluginCapabilitiesResponse {
                capabilities,
            }))
        })
        .await
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        observe("Probe", "", async {
            if let Some(provisioner) = &self.provisioner {
                provisioner.probe().await.map_err(status)?;
            }
            if let Some(node) = &self.node {
                node.probe().map_err(status)?;
            }
            Ok(Response::new(ProbeResponse { ready: Some(true) }))
        })
        .await
    }
}
