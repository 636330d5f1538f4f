//! [`BrickServers`] that asks the brick agent on each server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::agent::{AgentToken, REMOVE_BRICK_DEADLINE, TOKEN_HEADER};
use crate::controller::{BrickError, BrickRootReport, BrickServers, RootCheck};
use crate::names::VolumeName;
use crate::proto::brick_agent::brick_agent_client::BrickAgentClient;
use crate::proto::brick_agent::{CheckBrickRootRequest, RemoveBrickRequest};

/// Longer than the agent's own deadline, so its DEADLINE_EXCEEDED answer
/// arrives instead of this side giving up first.
const AGENT_TIMEOUT: Duration = REMOVE_BRICK_DEADLINE.saturating_add(Duration::from_secs(30));

/// A brick root check reads a directory and the mount table: no reason to
/// wait long for it.
const CHECK_ROOT_TIMEOUT: Duration = Duration::from_secs(20);

pub struct AgentBrickServers {
    port: u16,
    token: AgentToken,
    channels: Mutex<HashMap<String, Channel>>,
}

impl AgentBrickServers {
    pub fn new(port: u16, token: AgentToken) -> Self {
        AgentBrickServers {
            port,
            token,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, host: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(host) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{host}:{}", self.port))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(3))
            .timeout(AGENT_TIMEOUT)
            // A connection to a server that went silent (packets dropped)
            // is found dead and replaced, not waited on after it is back.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(host.to_string(), channel.clone());
        Ok(channel)
    }

    /// A request carrying the token.
    fn request<T>(&self, message: T) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(message);
        let value = self
            .token
            .as_str()
            .parse()
            .map_err(|_| "brick agent token is not valid ASCII".to_string())?;
        request.metadata_mut().insert(TOKEN_HEADER, value);
        Ok(request)
    }

    /// An agent's refusal or silence, worded for the operator.
    fn explain(&self, host: &str, timeout: Duration, status: &tonic::Status) -> (Code, String) {
        let code = status.code();
        let message = match code {
            // tonic's own timeout comes back as CANCELLED.
            Code::Cancelled => format!(
                "the brick agent on {host}:{} gave no answer within {} s ({})",
                self.port,
                timeout.as_secs(),
                status.message()
            ),
            Code::DeadlineExceeded => format!(
                "the brick agent on {host} did not finish in time: {}",
                status.message()
            ),
            Code::Unavailable | Code::Unknown => format!(
                "the brick agent on {host}:{} did not answer ({}); is the node plugin running \
                 there?",
                self.port,
                status.message()
            ),
            Code::Unimplemented => format!(
                "the brick agent on {host} does not know this request; upgrade the node plugin \
                 there ({})",
                status.message()
            ),
            _ => format!("the brick agent on {host} refused: {}", status.message()),
        };
        let code = match code {
            Code::Unknown => Code::Unavailable,
            Code::Cancelled => Code::DeadlineExceeded,
            Code::Unimplemented => Code::FailedPrecondition,
            code => code,
        };
        (code, message)
    }
}

#[async_trait]
impl BrickServers for AgentBrickServers {
    async fn remove(
        &self,
        host: &str,
        volume: &VolumeName,
        path: &str,
    ) -> Result<bool, BrickError> {
        let error = BrickError::at(host, path);
        let channel = self
            .channel(host)
            .map_err(|e| error(Code::InvalidArgument, e))?;
        let request = self
            .request(RemoveBrickRequest {
                volume: volume.to_string(),
                path: path.to_string(),
            })
            .map_err(|e| error(Code::Internal, e))?;
        match BrickAgentClient::new(channel).remove_brick(request).await {
            Ok(response) => Ok(response.into_inner().removed),
            Err(status) => {
                let (code, message) = self.explain(host, AGENT_TIMEOUT, &status);
                Err(error(code, message))
            }
        }
    }

    async fn check_root(&self, host: &str, root: &str) -> Result<RootCheck, BrickError> {
        let error = BrickError::checking(host, root);
        let channel = self
            .channel(host)
            .map_err(|e| error(Code::InvalidArgument, e))?;
        let mut request = self
            .request(CheckBrickRootRequest {
                path: root.to_string(),
            })
            .map_err(|e| error(Code::Internal, e))?;
        request.set_timeout(CHECK_ROOT_TIMEOUT);
        match BrickAgentClient::new(channel)
            .check_brick_root(request)
            .await
        {
            Ok(response) => {
                let answer = response.into_inner();
                Ok(RootCheck::Checked(BrickRootReport {
                    exists: answer.exists,
                    is_directory: answer.is_directory,
                    own_file_system: answer.own_file_system,
                    file_system_mount_point: Some(answer.file_system_mount_point)
                        .filter(|p| !p.is_empty()),
                    file_system_type: answer.file_system_type,
                    file_system_source: answer.file_system_source,
                    total_bytes: answer.total_bytes,
                    available_bytes: answer.available_bytes,
                }))
            }
            Err(status) => {
                let (code, message) = self.explain(host, CHECK_ROOT_TIMEOUT, &status);
                Err(error(code, message))
            }
        }
    }
}
