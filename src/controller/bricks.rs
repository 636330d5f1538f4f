//! The servers' side of bricks, behind a trait so the controller does not
//! care how it reaches them (the node plugin's brick agent, or ssh): brick
//! roots are checked before a volume is created, and brick directories are
//! removed when it is deleted.

use std::fmt;

use async_trait::async_trait;
use tonic::Code;

use crate::names::VolumeName;

/// What the controller was doing on a server when a [`BrickError`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrickAction {
    Removing,
    CheckingRoot,
}

impl fmt::Display for BrickAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrickAction::Removing => "removing brick",
            BrickAction::CheckingRoot => "checking brick root",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{action} {host}:{path}: {message}")]
pub struct BrickError {
    pub action: BrickAction,
    pub host: String,
    pub path: String,
    pub message: String,
    pub code: Code,
}

impl BrickError {
    /// A constructor for one brick's errors: `BrickError::at(host, path)(code, message)`.
    pub fn at<'a>(host: &'a str, path: &'a str) -> impl Fn(Code, String) -> BrickError + 'a {
        Self::doing(BrickAction::Removing, host, path)
    }

    /// The same for checking the brick root `path` on `host`.
    pub fn checking<'a>(host: &'a str, path: &'a str) -> impl Fn(Code, String) -> BrickError + 'a {
        Self::doing(BrickAction::CheckingRoot, host, path)
    }

    fn doing<'a>(
        action: BrickAction,
        host: &'a str,
        path: &'a str,
    ) -> impl Fn(Code, String) -> BrickError + 'a {
        move |code, message| BrickError {
            action,
            host: host.to_string(),
            path: path.to_string(),
            message,
            code,
        }
    }
}

/// What a brick root is on one server, as that server sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrickRootReport {
    pub exists: bool,
    pub is_directory: bool,
    /// A whole file system is mounted exactly there (not a directory of a
    /// larger one, not a bind mount of a directory).
    pub own_file_system: bool,
    /// Where the file system holding the root is mounted on the server
    /// (`/`: the root file system), if the server can tell.
    pub file_system_mount_point: Option<String>,
    pub file_system_type: String,
    pub file_system_source: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

impl BrickRootReport {
    /// Where the root is, for messages: "on the root file system (ext4
    /// /dev/vda)".
    pub fn whereabouts(&self) -> String {
        let file_system = match (
            self.file_system_type.is_empty(),
            self.file_system_source.is_empty(),
        ) {
            (false, false) => format!(" ({} {})", self.file_system_type, self.file_system_source),
            (false, true) => format!(" ({})", self.file_system_type),
            (true, false) => format!(" ({})", self.file_system_source),
            (true, true) => String::new(),
        };
        match self.file_system_mount_point.as_deref() {
            Some("/") => format!("on the root file system{file_system}"),
            Some(at) => format!("a directory of the file system mounted at {at}{file_system}"),
            None => format!("a directory inside a file system, not its top{file_system}"),
        }
    }
}

/// The answer to "what is this brick root on that server?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCheck {
    Checked(BrickRootReport),
    /// This way of reaching the servers cannot check yet; glusterd's own
    /// refusal of bricks on the root file system is all that applies.
    NotChecked,
}

#[async_trait]
pub trait BrickServers: Send + Sync {
    /// Removes the brick directory `path` of `volume` on `host`. Returns
    /// false when it was already gone. The far side refuses anything glusterd
    /// still needs.
    async fn remove(&self, host: &str, volume: &VolumeName, path: &str)
    -> Result<bool, BrickError>;

    /// What the brick root `root` is on `host`. Read-only.
    async fn check_root(&self, host: &str, root: &str) -> Result<RootCheck, BrickError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whereabouts_name_the_file_system() {
        let mut report = BrickRootReport {
            exists: true,
            is_directory: true,
            file_system_mount_point: Some("/".into()),
            file_system_type: "ext4".into(),
            file_system_source: "/dev/vda".into(),
            ..Default::default()
        };
        assert_eq!(
            report.whereabouts(),
            "on the root file system (ext4 /dev/vda)"
        );
        report.file_system_mount_point = Some("/data".into());
        assert_eq!(
            report.whereabouts(),
            "a directory of the file system mounted at /data (ext4 /dev/vda)"
        );
        report.file_system_mount_point = None;
        report.file_system_source.clear();
        assert_eq!(
            report.whereabouts(),
            "a directory inside a file system, not its top (ext4)"
        );
    }

    #[test]
    fn errors_say_what_was_being_done() {
        let removing = BrickError::at("h", "/b/v")(Code::Unavailable, "down".into());
        assert_eq!(removing.to_string(), "removing brick h:/b/v: down");
        let checking = BrickError::checking("h", "/b")(Code::Unavailable, "down".into());
        assert_eq!(checking.to_string(), "checking brick root h:/b: down");
    }
}
