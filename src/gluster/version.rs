//! Which gluster versions meet: the FUSE client (and CLI) in this image, and
//! the pool's op-version, which glusterd raises only once every server runs
//! a release that supports it. Logged at start-up; a client older than the
//! pool's op-version may lack what the pool's volumes use, and one newer
//! than the newest release the servers run is a pairing gluster does not
//! promise to support.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Glusterd;

/// A gluster release as `--version` prints it: `glusterfs 10.3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
}

impl Release {
    /// The first line of `glusterfs --version` / `gluster --version`.
    pub fn parse_version_output(text: &str) -> Option<Release> {
        let first = text.lines().next()?;
        let version = first
            .strip_prefix("glusterfs ")?
            .split_whitespace()
            .next()?;
        let mut parts = version.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts
            .next()
            .map(|m| {
                m.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        Some(Release { major, minor })
    }

    /// `<binary> --version`, run directly (no shell), bounded by a timeout.
    pub async fn of_binary(program: &Path) -> Result<Release, String> {
        let run = tokio::process::Command::new(program)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .map_err(|_| format!("{} --version did not answer", program.display()))?
            .map_err(|e| format!("{} --version: {e}", program.display()))?;
        let text = String::from_utf8_lossy(&output.stdout);
        Release::parse_version_output(&text).ok_or_else(|| {
            format!(
                "{} --version printed no version: {:?}",
                program.display(),
                text.lines().next().unwrap_or("")
            )
        })
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The pool's `cluster.op-version` and `cluster.max-op-version`: 100000 is
/// 10.0, 110000 is 11.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpVersions {
    pub current: u32,
    pub max: u32,
}

impl OpVersions {
    fn major(op_version: u32) -> u32 {
        op_version / 10_000
    }

    /// What to warn about when `client` mounts this pool's volumes.
    pub fn warnings(&self, client: Release) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.current < self.max {
            warnings.push(format!(
                "the pool runs at op-version {} though every server supports {}: after \
                 upgrading all servers, raise it (gluster volume set all cluster.op-version {})",
                self.current, self.max, self.max
            ));
        }
        if client.major < Self::major(self.current) {
            warnings.push(format!(
                "the gluster client here ({client}) is older than the pool's op-version {} \
                 ({}.x): volumes may use features it lacks; use an image with a client of at \
                 least {}.x",
                self.current,
                Self::major(self.current),
                Self::major(self.current)
            ));
        }
        if client.major > Self::major(self.max) {
            warnings.push(format!(
                "the gluster client here ({client}) is newer than any release the servers run \
                 (op-version {}, {}.x): gluster supports newer servers with older clients, not \
                 the reverse; upgrade the servers first",
                self.max,
                Self::major(self.max)
            ));
        }
        warnings
    }
}

/// Logs the gluster client release of this image (the FUSE client that
/// mounts) and, where glusterd can be asked, the pool's op-versions, with a
/// warning for a pairing known to be trouble. Never fails the start-up.
pub async fn report(glusterd: Option<Arc<dyn Glusterd>>, client: PathBuf) {
    let client = match Release::of_binary(&client).await {
        Ok(release) => release,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell the gluster client's version");
            return;
        }
    };
    if let Some(glusterd) = &glusterd {
        report_multiplexing(glusterd.as_ref()).await;
    }
    let pool = match glusterd {
        Some(glusterd) => match glusterd.op_versions().await {
            Ok(pool) => pool,
            Err(e) => {
                tracing::warn!(error = %e, gluster_client = %client, "cannot ask the pool's op-version");
                return;
            }
        },
        None => None,
    };
    match pool {
        Some(pool) => {
            tracing::info!(
                gluster_client = %client,
                pool_op_version = pool.current,
                pool_max_op_version = pool.max,
                "gluster versions"
            );
            for warning in pool.warnings(client) {
                tracing::warn!(gluster_client = %client, "{warning}");
            }
        }
        None => tracing::info!(gluster_client = %client, "gluster versions"),
    }
}

/// Whether the bricks of a server share processes: it decides how much
/// memory a volume costs and what one brick process crash takes down.
async fn report_multiplexing(glusterd: &dyn Glusterd) {
    match glusterd.brick_multiplex().await {
        Ok(Some(true)) => tracing::info!(
            brick_multiplex = true,
            "brick multiplexing is on: the bricks of a server share glusterfsd processes \
             (volumes with the same options share one; a crash of it stops all of them on that \
             server)"
        ),
        Ok(Some(false)) => tracing::info!(
            brick_multiplex = false,
            "brick multiplexing is off: every brick runs its own glusterfsd process \
             (`gluster volume set all cluster.brick-multiplex on` shares them)"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot ask whether brick multiplexing is on"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_from_captured_version_output() {
        for c in &crate::gluster::CAPTURES {
            for file in ["glusterfs_version.txt", "gluster_version.txt"] {
                assert_eq!(
                    Release::parse_version_output(&c.fixture(file)),
                    Some(c.release),
                    "{file}"
                );
            }
        }
        let ten = Release {
            major: 10,
            minor: 3,
        };
        assert_eq!(ten.to_string(), "10.3");
        for bad in ["", "gluster 10.3", "glusterfs x.y", "Repository revision"] {
            assert_eq!(Release::parse_version_output(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn warnings_for_known_bad_pairings_only() {
        let ten = Release {
            major: 10,
            minor: 3,
        };
        let eleven = Release {
            major: 11,
            minor: 1,
        };
        let pool_10 = OpVersions {
            current: 100000,
            max: 100000,
        };
        assert!(pool_10.warnings(ten).is_empty());
        let newer_client = pool_10.warnings(eleven);
        assert_eq!(newer_client.len(), 1);
        assert!(newer_client[0].contains("upgrade the servers first"));
        let pool_11 = OpVersions {
            current: 110000,
            max: 110000,
        };
        assert!(pool_11.warnings(eleven).is_empty());
        let older_client = pool_11.warnings(ten);
        assert_eq!(older_client.len(), 1);
        assert!(older_client[0].contains("older than the pool's op-version 110000"));
        let half_upgraded = OpVersions {
            current: 100000,
            max: 110000,
        };
        let w = half_upgraded.warnings(ten);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("cluster.op-version 110000"), "{w:?}");
    }
}
