//! [`VolumeLookup`] over `gluster --remote-host` (read-only, no socket).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{GlusterCli, GlusterError, Glusterd, GlusterdAddress, VolumeLookup, VolumeStatus};

pub struct RemoteVolumeLookup {
    program: PathBuf,
}

impl RemoteVolumeLookup {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        RemoteVolumeLookup {
            program: program.into(),
        }
    }
}

#[async_trait]
impl VolumeLookup for RemoteVolumeLookup {
    async fn status(
        &self,
        server: &str,
        volume: &str,
    ) -> Result<Option<VolumeStatus>, GlusterError> {
        let address = GlusterdAddress::RemoteHost(server.to_string());
        address.check_listening().await?;
        let cli = GlusterCli::one_shot(self.program.clone(), address, Duration::from_secs(10));
        Ok(cli.volume(volume).await?.map(|v| v.status))
    }
}
