//! `glusterfs-csi doctor`: what a node needs for the driver, checked on the
//! node itself (or in a Job on it) and printed as a checklist with a fix for
//! every failure.
//!
//! - [`gluster`]: glusterd and its peers, gluster versions, brick
//!   multiplexing;
//! - [`host`]: brick roots, FUSE, the kubelet directory's mount
//!   propagation, the clock;
//! - [`ports`]: the host ports the node plugin listens on.
//!
//! Each check is a function of what was read (mountinfo text, statvfs
//! numbers, glusterd's XML), so tests feed it captured input; what reads
//! the system is bounded by the `--timeout-seconds` of every check.

pub mod gluster;
pub mod host;
pub mod ports;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::controller::params::validate_brick_root;
use crate::{AppResult, UsageError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing; does not fail the run.
    Warn,
    Fail,
}

impl Status {
    fn tag(self) -> &'static str {
        match self {
            Status::Ok => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        }
    }
}

/// One line of the checklist.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name: `glusterd`, `peers`, `brick root <path>`, `port <n>`...
    pub name: String,
    pub status: Status,
    /// What was found.
    pub finding: String,
    /// What to do: always given for a failure, sometimes for a warning.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: impl Into<String>, finding: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            finding: finding.into(),
            fix: None,
        }
    }

    pub fn warn(name: impl Into<String>, finding: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            finding: finding.into(),
            fix,
        }
    }

    pub fn fail(
        name: impl Into<String>,
        finding: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            finding: finding.into(),
            fix: Some(fix.into()),
        }
    }

    /// A check that could not run because another failed first.
    pub fn not_checked(name: impl Into<String>, because: &str) -> Check {
        Check::warn(name, format!("not checked: {because}"), None)
    }

    /// A check whose probe took longer than the limit.
    pub fn timed_out(name: impl Into<String>, what: &str, limit: Duration) -> Check {
        Check::fail(
            name,
            format!("{what} gave no answer within {} s", limit.as_secs()),
            format!(
                "find what hangs there (a dead network file system, a stuck daemon); \
                 --timeout-seconds (now {}) gives it longer",
                limit.as_secs()
            ),
        )
    }
}

/// Every check's result, in checklist order.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub failures: usize,
    pub warnings: usize,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Report {
        let count = |status| checks.iter().filter(|c| c.status == status).count();
        let failures = count(Status::Fail);
        Report {
            ok: failures == 0,
            failures,
            warnings: count(Status::Warn),
            checks,
        }
    }

    /// One line per check, then a summary line.
    pub fn checklist(&self) -> String {
        let mut text = String::new();
        for check in &self.checks {
            let _ = write!(
                text,
                "{} {}: {}",
                check.status.tag(),
                check.name,
                check.finding
            );
            if let Some(fix) = &check.fix {
                let _ = write!(text, " -- fix: {fix}");
            }
            text.push('\n');
        }
        let _ = writeln!(
            text,
            "{} checks: {} failed, {} warnings",
            self.checks.len(),
            self.failures,
            self.warnings
        );
        text
    }
}

/// What to check, from the command line, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub glusterd_socket: PathBuf,
    pub gluster_cli: PathBuf,
    pub glusterfs: PathBuf,
    pub brick_roots: Vec<String>,
    pub allow_root_filesystem_bricks: bool,
    pub min_free_bytes: u64,
    pub kubelet_dir: PathBuf,
    pub ports: Vec<ports::PortUse>,
    pub client_only: bool,
    pub timeout: Duration,
}

impl Settings {
    pub fn from_args(args: &DoctorArgs) -> Result<Settings, UsageError> {
        let mut brick_roots: Vec<String> = Vec::new();
        if !args.client_only {
            for root in &args.brick_roots {
                validate_brick_root(root).map_err(|e| UsageError(format!("--brick-root: {e}")))?;
                if !brick_roots.contains(root) {
                    brick_roots.push(root.clone());
                }
            }
        }
        if !args.kubelet_dir.is_absolute() {
            return Err(UsageError(format!(
                "--kubelet-dir: {} is not an absolute path",
                args.kubelet_dir.display()
            )));
        }
        let min_free_bytes = args.min_free_gib.checked_mul(1 << 30).ok_or_else(|| {
            UsageError(format!(
                "--min-free-gib: {} is too large",
                args.min_free_gib
            ))
        })?;
        let mut ports = vec![
            ports::PortUse {
                port: args.health_port,
                chart_value: "node.healthPort",
                flag: "--health-port",
            },
            ports::PortUse {
                port: args.registrar_health_port,
                chart_value: "node.registrarHealthPort",
                flag: "--registrar-health-port",
            },
        ];
        if !args.client_only {
            ports.push(ports::PortUse {
                port: args.brick_agent_port,
                chart_value: "brickAgent.port",
                flag: "--brick-agent-port",
            });
        }
        for (i, a) in ports.iter().enumerate() {
            if let Some(b) = ports[..i].iter().find(|b| b.port == a.port) {
                return Err(UsageError(format!(
                    "{} and {} are both {}: the node plugin needs them distinct",
                    b.flag, a.flag, a.port
                )));
            }
        }
        Ok(Settings {
            glusterd_socket: args.glusterd_socket.clone(),
            gluster_cli: args.gluster_cli.clone(),
            glusterfs: args.glusterfs.clone(),
            brick_roots,
            allow_root_filesystem_bricks: args.allow_root_filesystem_bricks,
            min_free_bytes,
            kubelet_dir: args.kubelet_dir.clone(),
            ports,
            client_only: args.client_only,
            timeout: Duration::from_secs(args.timeout_seconds),
        })
    }
}

pub async fn run(args: DoctorArgs) -> AppResult<()> {
    let settings = Settings::from_args(&args)?;
    let report = examine(&settings).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.checklist());
    }
    if report.ok {
        Ok(())
    } else {
        Err(format!(
            "{} of {} checks failed",
            report.failures,
            report.checks.len()
        )
        .into())
    }
}

/// Runs every check (at the same time, each within the limit) and puts
/// the results in checklist order.
pub async fn examine(settings: &Settings) -> Report {
    let limit = settings.timeout;
    let gluster = async {
        if settings.client_only {
            gluster::GlusterChecks {
                pool: Vec::new(),
                versions: vec![gluster::client_version(&settings.glusterfs, limit).await],
            }
        } else {
            gluster::examine(settings).await
        }
    };
    let roots = futures_util::future::join_all(settings.brick_roots.iter().map(|root| {
        host::brick_root(
            root.clone(),
            settings.allow_root_filesystem_bricks,
            settings.min_free_bytes,
            limit,
        )
    }));
    let local = async {
        let (fuse, helper, kubelet) = tokio::join!(
            host::fuse(limit),
            host::mount_helper(limit),
            host::kubelet_dir(settings.kubelet_dir.clone(), limit),
        );
        vec![fuse, helper, kubelet]
    };
    let ports = futures_util::future::join_all(
        settings
            .ports
            .iter()
            .map(|port| ports::check(port.clone(), limit)),
    );
    let (gluster, roots, local, ports, clock) =
        tokio::join!(gluster, roots, local, ports, host::clock(limit));
    let mut checks = gluster.pool;
    checks.extend(roots);
    checks.extend(local);
    checks.extend(ports);
    checks.extend(gluster.versions);
    checks.push(clock);
    Report::new(checks)
}

/// Runs blocking work (file system calls that can hang on a dead mount) on
/// a thread of its own, waiting at most `limit`. A thread that hangs is
/// left behind; it does not keep the process from exiting.
pub async fn blocking<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Elapsed> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("doctor-check".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|_| Elapsed)?;
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(value)) => Ok(value),
        _ => Err(Elapsed),
    }
}

/// A check's probe did not finish within its limit.
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

/// Bytes as people read them, with the exact number: `1.5 GiB (1610612736 bytes)`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = "bytes";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "bytes" {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {unit} ({n} bytes)")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Mode};

    fn args(argv: &[&str]) -> DoctorArgs {
        let argv = ["glusterfs-csi", "doctor"].iter().chain(argv);
        match Cli::try_parse_from(argv).unwrap().mode {
            Mode::Doctor(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_are_validated_as_usage_errors() {
        for (argv, wanted) in [
            (vec!["--brick-root", "data/glusterfs"], "--brick-root"),
            (vec!["--brick-root", "/data/../etc"], "--brick-root"),
            (vec!["--brick-root", "/data/a b"], "--brick-root"),
            (vec!["--kubelet-dir", "var/lib/kubelet"], "--kubelet-dir"),
            (
                vec!["--min-free-gib", "18446744073709551615"],
                "--min-free-gib",
            ),
            (vec!["--health-port", "24017"], "--brick-agent-port"),
        ] {
            let err = Settings::from_args(&args(&argv)).unwrap_err();
            assert!(err.0.contains(wanted), "{argv:?}: {err}");
        }
        let settings = Settings::from_args(&args(&[
            "--brick-root=/a",
            "--brick-root=/b",
            "--brick-root=/a",
        ]))
        .unwrap();
        assert_eq!(settings.brick_roots, ["/a", "/b"]);
        assert_eq!(settings.ports.len(), 3);
        // A client-only node has no brick roots and no brick agent.
        let client = Settings::from_args(&args(&[
            "--client-only",
            "--brick-root=not-checked",
            "--health-port=24017",
        ]))
        .unwrap();
        assert!(client.brick_roots.is_empty());
        assert_eq!(
            client.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            [24017, 29684]
        );
    }

    #[test]
    fn checklist_lines_and_json() {
        let report = Report::new(vec![
            Check::ok("glusterd", "answers on /run/glusterd.socket"),
            Check::fail("peers", "127.0.0.3 is disconnected", "start glusterd there"),
            Check::warn("clock", "not synchronised", None),
        ]);
        assert!(!report.ok);
        assert_eq!((report.failures, report.warnings), (1, 1));
        assert_eq!(
            report.checklist(),
            "[ok]   glusterd: answers on /run/glusterd.socket\n\
             [FAIL] peers: 127.0.0.3 is disconnected -- fix: start glusterd there\n\
             [warn] clock: not synchronised\n\
             3 checks: 1 failed, 1 warnings\n"
        );
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][1]["fix"], "start glusterd there");
        assert_eq!(json["checks"][0]["fix"], serde_json::Value::Null);
        assert!(Report::new(vec![Check::warn("clock", "x", None)]).ok);
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(1536), "1.5 KiB (1536 bytes)");
        assert_eq!(bytes(5 << 30), "5.0 GiB (5368709120 bytes)");
    }

    #[tokio::test]
    async fn blocking_work_is_bounded() {
        assert_eq!(blocking(Duration::from_secs(5), || 7).await, Ok(7));
        let started = std::time::Instant::now();
        let hung = blocking(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2));
        })
        .await;
        assert_eq!(hung, Err(Elapsed));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
