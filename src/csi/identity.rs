//! CSI Identity service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{observe, status};
use crate::controller::Provisioner;
use crate::node::NodeVolumes;
use crate::proto::csi::identity_server::Identity;
use crate::proto::csi::plugin_capability::{Service, Type, service};
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
            Ok(Response::new(GetPluginCapabilitiesResponse {
                capabilities: self.provisioner.iter().map(|_| controller).collect(),
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
