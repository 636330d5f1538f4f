//! What can go wrong talking to glusterd, and the one place where gluster's
//! error text is read.
//!
//! With `--xml` the CLI exits 0 even when an operation failed; only
//! `opRet`/`opErrno`/`opErrstr` tell. `opErrno` is specific for lock contention
//! (30802) and a missing volume on `volume info` (30806); everything else comes
//! back as 30800 with English text, which [`classify`] reads. Every pattern it
//! matches is covered by a test built from output captured from glusterfs 10.3
//! and 11.1 (`tests/fixtures/gluster/`).

use tonic::Code;

/// glusterd's "another transaction is in progress" (lock held on the volume).
pub const ERRNO_LOCK_CONTENTION: i32 = 30802;
/// `volume info` of a volume that does not exist.
pub const ERRNO_VOLUME_NOT_FOUND: i32 = 30806;

#[derive(Debug, thiserror::Error)]
pub enum GlusterError {
    #[error("glusterd is not answering at {target}: {detail}")]
    Unreachable { target: String, detail: String },

    #[error("gluster {command} did not finish within {seconds}s")]
    Timeout { command: String, seconds: u64 },

    #[error("glusterd is busy with another operation ({message}); gave up after retrying")]
    Busy { message: String },

    #[error("gluster volume {0} does not exist")]
    NoSuchVolume(String),

    #[error("gluster volume {0} already exists")]
    VolumeExists(String),

    #[error("a gluster peer is down: {message}")]
    PeerDown { message: String },

    #[error("a server could not make the brick directory: {message}")]
    BrickDirectory { message: String },

    #[error("glusterd refuses bricks on the root file system without force: {message}")]
    RootPartition { message: String },

    #[error("a brick directory is already marked as a brick: {message}")]
    BrickInUse { message: String },

    #[error("glusterd rejected `{command}`: {message} (opErrno {errno})")]
    Rejected {
        command: String,
        errno: i32,
        message: String,
    },

    #[error("unexpected output from `gluster {command}`: {detail}")]
    BadOutput { command: String, detail: String },

    #[error("refusing to pass {0:?} to the gluster CLI: not a plain word")]
    UnsafeArgument(String),

    /// The server's own allowlist (`glusterfs-csi ssh-command`) refused the
    /// command: final, never a reason to try another server.
    #[error("glusterfs-csi ssh-command on {target} {message}")]
    Refused { target: String, message: String },

    #[error("could not run the gluster CLI: {0}")]
    Spawn(#[source] std::io::Error),
}

impl GlusterError {
    /// The gRPC code a caller should see when this error ends a request.
    pub fn code(&self) -> Code {
        match self {
            GlusterError::Unreachable { .. } => Code::Unavailable,
            GlusterError::Timeout { .. } => Code::DeadlineExceeded,
            GlusterError::Busy { .. } => Code::Aborted,
            GlusterError::NoSuchVolume(_) => Code::NotFound,
            GlusterError::VolumeExists(_) => Code::AlreadyExists,
            GlusterError::PeerDown { .. } => Code::Unavailable,
            GlusterError::BrickDirectory { .. } => Code::FailedPrecondition,
            GlusterError::RootPartition { .. } => Code::FailedPrecondition,
            GlusterError::BrickInUse { .. } => Code::FailedPrecondition,
            GlusterError::Rejected { .. } => Code::Internal,
            GlusterError::BadOutput { .. } => Code::Internal,
            GlusterError::UnsafeArgument(_) => Code::InvalidArgument,
            GlusterError::Refused { .. } => Code::PermissionDenied,
            GlusterError::Spawn(_) => Code::Internal,
        }
    }

    /// Lock contention that is worth retrying after a short wait.
    pub fn is_lock_contention(&self) -> bool {
        matches!(self, GlusterError::Busy { .. })
    }
}

/// Turns a failed CLI answer (`opRet` -1) into an error.
///
/// `command` is the CLI command without arguments, e.g. `volume create`, and
/// `volume` the volume it was about, if any.
pub fn classify(command: &str, volume: Option<&str>, errno: i32, errstr: &str) -> GlusterError {
    let message = errstr.trim().to_string();
    let volume_name = volume.unwrap_or_default().to_string();
    if errno == ERRNO_LOCK_CONTENTION || message.contains("Locking failed on") {
        return GlusterError::Busy { message };
    }
    if errno == ERRNO_VOLUME_NOT_FOUND
        || (message.starts_with("Volume ") && message.ends_with("does not exist"))
    {
        return GlusterError::NoSuchVolume(volume_name);
    }
    if message.starts_with("Volume ") && message.ends_with("already exists") {
        return GlusterError::VolumeExists(volume_name);
    }
    if message.contains("not connected") || message.contains("peers are down") {
        return GlusterError::PeerDown { message };
    }
    if message.contains("Failed to create brick directory") {
        return GlusterError::BrickDirectory { message };
    }
    if message.contains("is being created in the root partition") {
        return GlusterError::RootPartition { message };
    }
    if message.contains("is already part of a volume") {
        return GlusterError::BrickInUse { message };
    }
    GlusterError::Rejected {
        command: command.to_string(),
        errno,
        message,
    }
}

/// Reads what the CLI printed when it produced no XML at all: it could not
/// reach glusterd, or it refused the command line.
pub fn classify_cli_failure(
    command: &str,
    address: &impl std::fmt::Display,
    text: &str,
) -> GlusterError {
    let text = text.trim();
    if text.contains("Connection failed") {
        return GlusterError::Unreachable {
            target: address.to_string(),
            detail: text.to_string(),
        };
    }
    // A text-mode answer of a transaction another peer failed or held.
    if [
        "Commit failed on",
        "Staging failed on",
        "Locking failed on",
        "Another transaction",
    ]
    .iter()
    .any(|m| text.contains(m))
    {
        return GlusterError::Busy {
            message: text.chars().take(500).collect(),
        };
    }
    let detail: String = text.chars().take(500).collect();
    GlusterError::BadOutput {
        command: command.to_string(),
        detail: if detail.is_empty() {
            "no output".to_string()
        } else {
            detail
        },
    }
}

/// `volume start` of a started volume and `volume stop` of a stopped one fail
/// in glusterd; callers that want the end state treat these as success.
pub fn is_already_started(errstr: &str) -> bool {
    errstr.trim_end().ends_with("already started")
}

pub fn is_not_started(errstr: &str) -> bool {
    errstr.contains("is not in the started state")
}

/// `volume quota V enable` when it is: callers want the end state.
pub fn is_quota_already_enabled(errstr: &str) -> bool {
    errstr.trim() == "Quota is already enabled"
}

/// `volume quota V list|limit-usage` before `enable`.
pub fn is_quota_disabled(errstr: &str) -> bool {
    errstr.trim().starts_with("Quota is disabled")
}

/// `volume quota V remove /DIR` of a directory that has no limit
/// ("removexattr failed on ... Reason : No data available") or is not
/// there ("Failed to get trusted.gfid attribute on path ... Reason : No
/// such file or directory").
pub fn is_quota_limit_absent(errstr: &str) -> bool {
    let errstr = errstr.trim();
    errstr.ends_with("Reason : No data available")
        || errstr.ends_with("Reason : No such file or directory")
}

/// `volume status V` of a volume that is not started.
pub fn is_not_started_status(errstr: &str) -> bool {
    errstr.trim_end().ends_with("is not started")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::{CAPTURES, Capture};

    fn classify_fixture(c: &Capture, name: &str, command: &str, volume: &str) -> GlusterError {
        let envelope = c.envelope(name);
        assert_eq!(
            envelope.op_ret, -1,
            "{} {name} is a failure fixture",
            c.release
        );
        classify(
            command,
            Some(volume),
            envelope.op_errno,
            &envelope.op_errstr,
        )
    }

    #[test]
    fn lock_contention_is_busy_and_aborted() {
        for c in &CAPTURES {
            let err = classify_fixture(c, "volume_set_locked.xml", "volume set", "v2");
            assert!(err.is_lock_contention(), "{}: {err:?}", c.release);
            assert_eq!(err.code(), Code::Aborted);
            let err = classify_fixture(c, "volume_set_locking_failed.xml", "volume set", "v3");
            assert!(err.is_lock_contention(), "{}: {err:?}", c.release);
        }
    }

    #[test]
    fn missing_volume_is_not_found_for_every_command() {
        for c in &CAPTURES {
            for (fixture, command) in [
                ("volume_info_missing.xml", "volume info"),
                ("volume_start_missing.xml", "volume start"),
                ("volume_stop_missing.xml", "volume stop"),
                ("volume_delete_missing.xml", "volume delete"),
            ] {
                let err = classify_fixture(c, fixture, command, "nosuch");
                assert!(
                    matches!(err, GlusterError::NoSuchVolume(ref v) if v == "nosuch"),
                    "{} {fixture}: {err:?}",
                    c.release
                );
                assert_eq!(err.code(), Code::NotFound);
            }
        }
    }

    #[test]
    fn existing_volume_on_create() {
        for c in &CAPTURES {
            let err = classify_fixture(c, "volume_create_exists.xml", "volume create", "v1");
            assert!(
                matches!(err, GlusterError::VolumeExists(_)),
                "{}: {err:?}",
                c.release
            );
        }
    }

    #[test]
    fn peer_down_is_unavailable() {
        for c in &CAPTURES {
            let err = classify_fixture(c, "volume_delete_peer_down.xml", "volume delete", "r11");
            assert!(
                matches!(err, GlusterError::PeerDown { .. }),
                "{}: {err:?}",
                c.release
            );
            assert_eq!(err.code(), Code::Unavailable);
            let err = classify_fixture(c, "volume_create_peer_down.xml", "volume create", "pd");
            let node3 = format!("{}.3", c.block);
            assert!(
                matches!(err, GlusterError::PeerDown { ref message } if message.contains(&node3)),
                "{}: {err:?}",
                c.release
            );
        }
    }

    #[test]
    fn missing_brick_parent_is_failed_precondition() {
        for c in &CAPTURES {
            let err = classify_fixture(c, "volume_create_brickdir_fail.xml", "volume create", "hm");
            assert!(
                matches!(err, GlusterError::BrickDirectory { .. }),
                "{}: {err:?}",
                c.release
            );
            assert_eq!(err.code(), Code::FailedPrecondition);
            assert!(err.to_string().contains(&format!("{}.3", c.block)));
        }
    }

    #[test]
    fn bricks_on_the_root_partition_are_failed_precondition() {
        for c in &CAPTURES {
            // Refused by the glusterd the CLI talks to, and by two other peers.
            for (fixture, servers) in [
                (
                    "volume_create_root_partition.xml",
                    vec![format!("{}.1", c.block)],
                ),
                (
                    "volume_create_root_partition_staging.xml",
                    vec![
                        format!("{}.2", c.staging_block),
                        format!("{}.3", c.staging_block),
                    ],
                ),
            ] {
                let err = classify_fixture(c, fixture, "volume create", "hm");
                assert!(
                    matches!(err, GlusterError::RootPartition { .. }),
                    "{} {fixture}: {err:?}",
                    c.release
                );
                assert_eq!(err.code(), Code::FailedPrecondition);
                for server in servers {
                    assert!(err.to_string().contains(&server), "{}: {err}", c.release);
                }
            }
        }
    }

    #[test]
    fn a_brick_directory_left_by_a_failed_create_is_in_use() {
        for c in &CAPTURES {
            let err = classify_fixture(c, "volume_create_brick_in_use.xml", "volume create", "hm");
            assert!(
                matches!(err, GlusterError::BrickInUse { .. }),
                "{}: {err:?}",
                c.release
            );
            assert_eq!(err.code(), Code::FailedPrecondition);
        }
    }

    #[test]
    fn rejected_option_keeps_glusterd_message() {
        for c in &CAPTURES {
            let err = classify_fixture(c, "volume_set_bad_value.xml", "volume set", "v2");
            match err {
                GlusterError::Rejected { message, .. } => {
                    assert!(message.contains("cache-size"), "{}: {message}", c.release)
                }
                other => panic!("{}: {other:?}", c.release),
            }
            let err = classify_fixture(c, "volume_set_unknown_key.xml", "volume set", "v2");
            assert!(
                matches!(err, GlusterError::Rejected { .. }),
                "{}: {err:?}",
                c.release
            );
        }
    }

    #[test]
    fn cli_without_glusterd() {
        // Printed by the one-shot CLI when nothing listens on the socket.
        let err = classify_cli_failure(
            "volume list",
            &"unix:/x",
            "Connection failed. Please check if gluster daemon is operational.\n",
        );
        assert!(matches!(err, GlusterError::Unreachable { .. }), "{err:?}");
        assert_eq!(err.code(), Code::Unavailable);
        let err = classify_cli_failure("volume list", &"unix:/x", "");
        assert!(matches!(err, GlusterError::BadOutput { .. }), "{err:?}");
    }

    #[test]
    fn quota_idempotency_texts_and_refusals() {
        for c in &CAPTURES {
            let errstr = |name: &str| c.envelope(name).op_errstr;
            assert!(
                is_quota_already_enabled(&errstr("quota_enable_already.xml")),
                "{}",
                c.release
            );
            for name in [
                "quota_list_not_enabled.xml",
                "quota_limit_usage_not_enabled.xml",
            ] {
                assert!(is_quota_disabled(&errstr(name)), "{} {name}", c.release);
                assert!(
                    !is_quota_already_enabled(&errstr(name)),
                    "{} {name}",
                    c.release
                );
            }
            // Before the first start: refused, and not mistaken for either.
            let stopped = errstr("quota_enable_stopped.xml");
            assert!(
                !is_quota_already_enabled(&stopped) && !is_quota_disabled(&stopped),
                "{}: {stopped}",
                c.release
            );
            for (fixture, command) in [
                ("quota_enable_missing.xml", "volume quota"),
                ("quota_limit_usage_missing.xml", "volume quota"),
                ("quota_list_missing.xml", "volume quota"),
            ] {
                let err = classify_fixture(c, fixture, command, "nosuch");
                assert!(
                    matches!(err, GlusterError::NoSuchVolume(ref v) if v == "nosuch"),
                    "{} {fixture}: {err:?}",
                    c.release
                );
            }
        }
    }

    #[test]
    fn start_and_stop_idempotency_texts() {
        for c in &CAPTURES {
            let errstr = |name: &str| c.envelope(name).op_errstr;
            assert!(
                is_already_started(&errstr("volume_start_already.xml")),
                "{}",
                c.release
            );
            assert!(
                is_not_started(&errstr("volume_stop_not_started.xml")),
                "{}",
                c.release
            );
            assert!(
                !is_already_started(&errstr("volume_start_missing.xml")),
                "{}",
                c.release
            );
        }
    }

    #[test]
    fn quota_removal_of_a_directory_without_a_limit_is_told_apart() {
        for c in &CAPTURES {
            let errstr = |name: &str| c.envelope(name).op_errstr;
            assert!(!c.envelope("quota_remove.xml").failed(), "{}", c.release);
            for absent in ["quota_remove_no_limit.xml", "quota_remove_missing_path.xml"] {
                assert!(c.envelope(absent).failed(), "{} {absent}", c.release);
                assert!(
                    is_quota_limit_absent(&errstr(absent)),
                    "{} {absent}",
                    c.release
                );
            }
            for other in [
                "quota_limit_usage_not_enabled.xml",
                "quota_enable_missing.xml",
                "quota_enable_stopped.xml",
            ] {
                assert!(
                    !is_quota_limit_absent(&errstr(other)),
                    "{} {other}",
                    c.release
                );
            }
        }
    }
}
