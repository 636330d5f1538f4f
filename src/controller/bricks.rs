//! Removal of brick directories on the servers, behind a trait so the
//! controller does not care how it reaches them (the node plugin's brick
//! agent today; ssh later).

use async_trait::async_trait;
use tonic::Code;

use crate::names::VolumeName;

#[derive(Debug, thiserror::Error)]
#[error("removing brick {host}:{path}: {message}")]
pub struct BrickError {
    pub host: String,
    pub path: String,
    pub message: String,
    pub code: Code,
}

impl BrickError {
    /// A constructor for one brick's errors: `BrickError::at(host, path)(code, message)`.
    pub fn at<'a>(host: &'a str, path: &'a str) -> impl Fn(Code, String) -> BrickError + 'a {
        move |code, message| BrickError {
            host: host.to_string(),
            path: path.to_string(),
            message,
            code,
        }
    }
}

#[async_trait]
pub trait BrickRemover: Send + Sync {
    /// Removes the brick directory `path` of `volume` on `host`. Returns
    /// false when it was already gone. The far side refuses anything glusterd
    /// still needs.
    async fn remove(&self, host: &str, volume: &VolumeName, path: &str)
    -> Result<bool, BrickError>;
}
