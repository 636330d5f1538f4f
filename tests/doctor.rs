//! `glusterfs-csi doctor` as a user runs it: on a healthy dev cluster
//! nothing fails; with one peer's glusterd down and a brick root missing,
//! exactly those two checks fail, each with its fix; a glusterd that
//! accepts connections but never answers fails the run within the timeout;
//! a port in use names the value to change; bad flags exit 2.
//! Needs root, glusterfs-server, unshare (see README).

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_glusterfs-csi");

struct Run {
    code: Option<i32>,
    report: Value,
    stderr: String,
}

impl Run {
    fn with_status(&self, status: &str) -> BTreeSet<String> {
        self.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == status)
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn check(&self, name: &str) -> &Value {
        self.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {:#}", self.report))
    }
}

/// `doctor --json`, in a mount namespace of its own whose mounts are all
/// shared (this machine's root mount is private; a node's, under systemd,
/// is shared), so the kubelet directory's check can pass.
fn doctor(args: &[String]) -> Run {
    doctor_in(&["--mount", "--propagation", "shared"], args)
}

/// `doctor --json` in the namespaces `unshare` makes with `namespaces`.
fn doctor_in(namespaces: &[&str], args: &[String]) -> Run {
    let output = Command::new("unshare")
        .args(namespaces)
        .args([BINARY, "doctor", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: doctor printed {stdout:?}; stderr {stderr}"));
    Run {
        code: output.status.code(),
        report,
        stderr,
    }
}

/// A port nothing listens on (released again at once).
fn free_port() -> u16 {
    TcpListener::bind(("0.0.0.0", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn arg(flag: &str, value: impl std::fmt::Display) -> String {
    format!("--{flag}={value}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_exactly_the_broken_items() {
    let started = Instant::now();
    let mut driver = DevDriver::start().await;
    let first = driver.cluster.servers[0].clone();
    let down = driver.cluster.servers[2].address.clone();
    let brick_root = driver.cluster.brick_root.to_str().unwrap().to_string();
    let missing_root = format!("{brick_root}-missing");
    let healthy_args = vec![
        arg("glusterd-socket", first.glusterd_socket.display()),
        arg("brick-root", &brick_root),
        // The dev servers' bricks are directories of this machine's root.
        "--allow-root-filesystem-bricks".into(),
        arg("kubelet-dir", driver.kubelet.path().display()),
        arg("health-port", free_port()),
        arg("registrar-health-port", free_port()),
        // Held by the dev driver's brick agents: the node plugin's own.
        arg("brick-agent-port", driver.cluster.brick_agent_port),
    ];

    let healthy = doctor(&healthy_args);
    assert_eq!(
        healthy.with_status("fail"),
        BTreeSet::new(),
        "{:#}",
        healthy.report
    );
    assert_eq!(healthy.code, Some(0), "{}", healthy.stderr);
    assert_eq!(healthy.report["ok"], true);
    let peers = healthy.check("peers")["finding"].as_str().unwrap();
    for server in &driver.cluster.servers[1..] {
        assert!(peers.contains(&server.address), "{peers}");
    }
    assert!(peers.starts_with("3 servers in the pool, all connected"));
    let agent = healthy.check(&format!("port {}", driver.cluster.brick_agent_port));
    assert!(
        agent["finding"]
            .as_str()
            .unwrap()
            .contains("held by glusterfs-csi"),
        "{agent}"
    );
    for name in [
        "glusterd",
        "gluster client",
        "op-version",
        "brick multiplexing",
    ] {
        assert_eq!(healthy.check(name)["status"], "ok", "{:#}", healthy.report);
    }
    let root = healthy.check(&format!("brick root {brick_root}"));
    assert!(
        root["finding"].as_str().unwrap().contains("bytes) free"),
        "{root}"
    );

    driver.stop_glusterd(&down);
    // The first server notices the peer gone.
    wait_until(Duration::from_secs(20), || {
        gluster(&first.glusterd_socket, &["pool", "list"])
            .is_ok_and(|xml| xml.contains("<connected>0</connected>"))
    });
    let mut broken_args = healthy_args.clone();
    broken_args.push(arg("brick-root", &missing_root));
    let broken = doctor(&broken_args);
    let missing_check = format!("brick root {missing_root}");
    assert_eq!(
        broken.with_status("fail"),
        BTreeSet::from(["peers".to_string(), missing_check.clone()]),
        "{:#}",
        broken.report
    );
    assert_eq!(broken.code, Some(1), "{}", broken.stderr);
    assert!(broken.stderr.contains("2 of "), "{}", broken.stderr);
    let peers = broken.check("peers");
    assert_eq!(peers["finding"], format!("disconnected: {down}"));
    assert!(
        peers["fix"]
            .as_str()
            .unwrap()
            .starts_with(&format!("start glusterd on {down}")),
        "{peers}"
    );
    let missing = broken.check(&missing_check);
    assert_eq!(missing["finding"], "does not exist");
    assert!(
        missing["fix"]
            .as_str()
            .unwrap()
            .starts_with(&format!("mount the brick disk at {missing_root}")),
        "{missing}"
    );

    driver.start_glusterd(&down);
    let again = doctor(&healthy_args);
    assert_eq!(
        again.with_status("fail"),
        BTreeSet::new(),
        "{:#}",
        again.report
    );
    assert_eq!(again.code, Some(0));
    eprintln!("doctor on a dev cluster: {:?}", started.elapsed());
}

#[test]
fn a_hung_glusterd_fails_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("glusterd.socket");
    // Accepts connections (the kernel queues them) and never answers.
    let _hung = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let started = Instant::now();
    // As PID 1 of a PID namespace, as in a Job's container: the gluster CLI
    // killed at the timeout is reaped there (this machine's init does not
    // reap), and ends with the namespace at the latest.
    let run = doctor_in(
        &["--fork", "--pid", "--mount-proc"],
        &[
            arg("glusterd-socket", socket.display()),
            arg("brick-root", dir.path().display()),
            "--allow-root-filesystem-bricks".into(),
            arg("health-port", free_port()),
            arg("registrar-health-port", free_port()),
            arg("brick-agent-port", free_port()),
            arg("timeout-seconds", 1),
        ],
    );
    let took = started.elapsed();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let glusterd = run.check("glusterd");
    assert_eq!(glusterd["status"], "fail", "{glusterd}");
    assert!(
        glusterd["finding"]
            .as_str()
            .unwrap()
            .contains("no answer within 1 s"),
        "{glusterd}"
    );
    for dependent in ["peers", "op-version", "brick multiplexing"] {
        let check = run.check(dependent);
        assert_eq!(check["status"], "warn", "{check}");
        assert!(
            check["finding"]
                .as_str()
                .unwrap()
                .starts_with("not checked")
        );
    }
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn a_port_in_use_names_the_value_to_change() {
    let held = TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let run = doctor(&[
        "--client-only".into(),
        arg("registrar-health-port", port),
        arg("health-port", free_port()),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let check = run.check(&format!("port {port}"));
    assert_eq!(check["status"], "fail", "{check}");
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert!(
        check["finding"].as_str().unwrap().contains(&format!(
            "in use by {} (pid {})",
            me.trim_end(),
            std::process::id()
        )),
        "{check}"
    );
    let fix = check["fix"].as_str().unwrap();
    assert!(
        fix.contains("node.registrarHealthPort") && fix.contains("--registrar-health-port"),
        "{fix}"
    );
    // A client-only node is not asked about glusterd, peers or brick roots.
    let names: Vec<&str> = run.report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| ["glusterd", "peers", "op-version"].contains(n) || n.starts_with("brick root")),
        "{names:?}"
    );
    assert!(
        names.contains(&"gluster client") && names.contains(&"fuse"),
        "{names:?}"
    );
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        vec!["--brick-root", "data/glusterfs"],
        vec!["--brick-root", "/data/../etc"],
        vec!["--kubelet-dir", "relative"],
        vec!["--health-port", "0"],
        vec!["--no-such-flag"],
    ] {
        let output = Command::new(BINARY)
            .arg("doctor")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing checked");
    }
    let output = Command::new(BINARY)
        .args(["doctor", "--brick-root", "data/glusterfs"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--brick-root") && stderr.contains("not an absolute path"),
        "{stderr}"
    );
}
