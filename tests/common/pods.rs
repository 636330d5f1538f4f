//! "Pods" for the survival tests: a process in a mount namespace of its own
//! that sees a volume through its own private bind of the kubelet's target
//! path (as the container runtime gives a container its volume) and writes
//! to it the whole time (`tests/helpers/pod.py`). The rest of the namespace
//! is a slave of the host's: a real container has pivoted away from the
//! host's mounts, so it must not keep copies of them either (a private copy
//! of a FUSE mount the host has since unmounted keeps that FUSE client
//! connected for as long as the pod lives).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const POD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/helpers/pod.py");

pub struct Pod {
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<serde_json::Value>,
    /// Where the pod sees the volume (exists only in its namespace).
    pub view: PathBuf,
}

impl Pod {
    /// Starts a pod that binds `volume` (a target path) at `views/<name>`
    /// in its own mount namespace and writes `<name>.log` there.
    pub fn start(volume: &Path, views: &Path, name: &str) -> Pod {
        let view = views.join(name);
        std::fs::create_dir_all(&view).unwrap();
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "--", "sh", "-c"])
            .arg(r#"mount --bind "$0" "$1" && mount --make-private "$1" && exec python3 "$2" "$1" "$3""#)
            .arg(volume)
            .arg(&view)
            .arg(POD_SCRIPT)
            .arg(format!("{name}.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a pod (unshare, python3)");
        let stdout = child.stdout.take().unwrap();
        let (sender, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str(&line) {
                    let _ = sender.send(event);
                }
            }
        });
        let stdin = child.stdin.take();
        let mut pod = Pod {
            child,
            stdin,
            events,
            view,
        };
        pod.expect("started", Duration::from_secs(20));
        pod
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next event named `kind` (earlier events of other kinds are
    /// dropped); panics after `limit`.
    pub fn expect(&mut self, kind: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event["event"] == kind => return event,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("pod: no {kind:?} within {limit:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("pod exited before {kind:?}"),
            }
        }
    }

    /// An event named `kind` if one comes within `limit`.
    pub fn maybe(&mut self, kind: &str, limit: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event["event"] == kind => return Some(event),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("pod still running");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Writes `file` in the pod's view of the volume; the pod's answer.
    pub fn write(&mut self, file: &str, text: &str) -> serde_json::Value {
        self.send(&format!("write {file} {text}"));
        loop {
            let event = self.expect_any(Duration::from_secs(30));
            if event["event"] == "written" || event["event"] == "failed" {
                return event;
            }
        }
    }

    fn expect_any(&mut self, limit: Duration) -> serde_json::Value {
        self.events
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("pod: no answer within {limit:?}: {e}"))
    }

    /// Stops the writer and returns its report: lines written, write
    /// errors, and whether the file reads back exactly.
    pub fn stop(mut self) -> serde_json::Value {
        self.send("stop");
        let report = self.expect("report", Duration::from_secs(60));
        self.stdin = None;
        let _ = self.child.wait();
        report
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The FUSE client serving the mount at `mount_point`: a `glusterfs`
/// process whose last argument is exactly that path.
pub fn fuse_client_of(mount_point: &Path) -> Option<i32> {
    let wanted = mount_point.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        let program = Path::new(std::ffi::OsStr::from_bytes(args.first()?));
        (program.file_name()? == "glusterfs" && *args.last()? == wanted).then_some(pid)
    })
}
