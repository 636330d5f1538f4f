//! `glusterfs-csi ping`: the liveness check of a running driver. It asks
//! the driver's socket for GetPluginInfo, which needs nothing but a serving
//! process, so a glusterd that is down (the readiness check's business)
//! never gets the driver restarted.

use std::time::Duration;

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::AppResult;
use crate::cli::PingArgs;
use crate::proto::csi::GetPluginInfoRequest;
use crate::proto::csi::identity_client::IdentityClient;

pub async fn run(args: PingArgs) -> AppResult<()> {
    let socket = super::socket_path(&args.endpoint)?;
    let timeout = Duration::from_secs(args.timeout_seconds.max(1));
    let answer = tokio::time::timeout(timeout, async {
        let channel = channel(socket).await?;
        let info = IdentityClient::new(channel)
            .get_plugin_info(GetPluginInfoRequest {})
            .await?
            .into_inner();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(info)
    })
    .await;
    match answer {
        Ok(Ok(info)) => {
            println!(
                "{} {} answers on {}",
                info.name, info.vendor_version, args.endpoint
            );
            Ok(())
        }
        Ok(Err(e)) => Err(format!("{}: {e}", args.endpoint).into()),
        Err(_) => Err(format!("{}: no answer within {timeout:?}", args.endpoint).into()),
    }
}

/// A gRPC channel to the driver listening on the unix socket `socket`.
pub async fn channel(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    // The URI is required by tonic and never used: the connector dials the
    // unix socket.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
}
