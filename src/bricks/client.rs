//! [`BrickRemover`] that asks the brick agent on each server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::agent::{REMOVE_BRICK_DEADLINE, TOKEN_HEADER};
use crate::controller::{BrickError, BrickRemover};
use crate::names::VolumeName;
use crate::proto::brick_agent::RemoveBrickRequest;
use crate::proto::brick_agent::brick_agent_client::BrickAgentClient;

/// Longer than the agent's own deadline, so its DEADLINE_EXCEEDED answer
/// arrives instead of this side giving up first.
const AGENT_TIMEOUT: Duration = REMOVE_BRICK_DEADLINE.saturating_add(Duration::from_secs(30));

pub struct AgentBrickRemover {
    port: u16,
    token: Option<String>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl AgentBrickRemover {
    pub fn new(port: u16, token: Option<String>) -> Self {
        AgentBrickRemover {
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
            .connect_lazy();
        channels.insert(host.to_string(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl BrickRemover for AgentBrickRemover {
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
        let mut request = tonic::Request::new(RemoveBrickRequest {
            volume: volume.to_string(),
            path: path.to_string(),
        });
        if let Some(token) = &self.token {
            let value = token.parse().map_err(|_| {
                error(
                    Code::Internal,
                    "brick agent token is not valid ASCII".into(),
                )
            })?;
            request.metadata_mut().insert(TOKEN_HEADER, value);
        }
        match BrickAgentClient::new(channel).remove_brick(request).await {
            Ok(response) => Ok(response.into_inner().removed),
            Err(status) => {
                let code = status.code();
                let message = match code {
                    // tonic's own timeout comes back as CANCELLED.
                    Code::Cancelled => format!(
                        "the brick agent on {host}:{} gave no answer within {} s ({})",
                        self.port,
                        AGENT_TIMEOUT.as_secs(),
                        status.message()
                    ),
                    Code::DeadlineExceeded => format!(
                        "the brick agent on {host} did not finish in time: {}",
                        status.message()
                    ),
                    Code::Unavailable | Code::Unknown => format!(
                        "the brick agent on {host}:{} did not answer ({}); is the node plugin \
                         running there?",
                        self.port,
                        status.message()
                    ),
                    _ => format!("the brick agent on {host} refused: {}", status.message()),
                };
                let code = match code {
                    Code::Unknown => Code::Unavailable,
                    Code::Cancelled => Code::DeadlineExceeded,
                    code => code,
                };
                Err(error(code, message))
            }
        }
    }
}
