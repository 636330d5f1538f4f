//! A `glusterfs-csi controller` process of its own against a dev cluster's
//! glusterd and brick agents: the controller Deployment's part, so a drill
//! can kill it without touching the cluster or the agents.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glusterfs_csi::dev::ClusterDescription;
use glusterfs_csi::proto::csi::controller_client::ControllerClient;
use tonic::transport::Channel;

pub struct StandaloneController {
    child: Child,
    pub socket: PathBuf,
    pub channel: Channel,
    log: Arc<Mutex<Vec<String>>>,
}

impl StandaloneController {
    /// Starts a controller on `socket` for `cluster` (its first server's
    /// glusterd, every server's agent, the per-server brick layout of a
    /// one-machine pool) and waits until it serves.
    pub async fn start(cluster: &ClusterDescription, socket: PathBuf) -> StandaloneController {
        StandaloneController::start_with(cluster, socket, &[]).await
    }

    /// [`StandaloneController::start`] with extra controller flags.
    pub async fn start_with(
        cluster: &ClusterDescription,
        socket: PathBuf,
        flags: &[String],
    ) -> StandaloneController {
        let first = &cluster.servers[0];
        let mut command = Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"));
        command
            .arg("controller")
            .arg(format!("--endpoint=unix://{}", socket.display()))
            .arg(format!(
                "--glusterd-socket={}",
                first.glusterd_socket.display()
            ))
            .arg(format!("--server-name={}", first.address))
            .arg(format!(
                "--default-brick-root={}",
                cluster.brick_root.display()
            ))
            .arg(format!("--brick-agent-port={}", cluster.brick_agent_port))
            .arg("--allow-root-filesystem-bricks")
            .arg("--test-cluster-brick-layout")
            .args(flags)
            .env(
                "GLUSTERFS_CSI_BRICK_AGENT_TOKEN",
                &cluster.brick_agent_token,
            )
            .env("GLUSTERFS_CSI_LOG", "info,glusterfs_csi=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: only an async-signal-safe prctl between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().expect("start glusterfs-csi controller");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let channel = super::connect_when_listening(&socket, Duration::from_secs(30)).await;
        StandaloneController {
            child,
            socket,
            channel,
            log,
        }
    }

    pub fn client(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel.clone())
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL, then reaped; returns the processes it had started (its
    /// gluster CLI sessions), which outlive it.
    pub fn kill(mut self) -> Vec<i32> {
        let pid = self.pid();
        let children: Vec<i32> =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
        super::sigkill(pid);
        let _ = self.child.wait();
        children
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for StandaloneController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
