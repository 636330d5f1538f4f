//! The ports the node plugin listens on with host networking: free, or
//! held by the node plugin itself. Checked by binding (and releasing) each
//! on 0.0.0.0, as the sidecars and the brick agent bind; who holds a port
//! in use is looked up in /proc (the owner is visible with hostPID or on
//! the host).

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use super::{Check, blocking};

/// A port the node plugin needs, and where it is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortUse {
    pub port: u16,
    /// The chart value that sets it.
    pub chart_value: &'static str,
    /// doctor's flag for it.
    pub flag: &'static str,
}

impl PortUse {
    pub fn name(&self) -> String {
        format!("port {}", self.port)
    }
}

/// Processes of the node plugin's pod, by the name the kernel keeps (15
/// bytes): the driver, the livenessprobe and node-driver-registrar sidecars.
const PLUGIN_PROCESSES: [&str; 3] = ["glusterfs-csi", "livenessprobe", "csi-node-driver"];

/// A process holding a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub name: String,
}

/// What binding the port found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    Free,
    InUse(Option<Owner>),
    Refused(String),
}

pub async fn check(port: PortUse, limit: Duration) -> Check {
    let number = port.port;
    match blocking(limit, move || try_bind(number)).await {
        Ok(binding) => judge_port(&port, &binding),
        Err(_) => Check::timed_out(port.name(), &format!("binding port {number}"), limit),
    }
}

fn try_bind(port: u16) -> Binding {
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(listener) => {
            drop(listener);
            Binding::Free
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Binding::InUse(owner_of_listener(port, Path::new("/proc")))
        }
        Err(e) => Binding::Refused(e.to_string()),
    }
}

pub fn judge_port(port: &PortUse, binding: &Binding) -> Check {
    let change = format!(
        "or set the chart value {} to a free port (and {} here)",
        port.chart_value, port.flag
    );
    match binding {
        Binding::Free => Check::ok(
            port.name(),
            format!("free on 0.0.0.0 ({})", port.chart_value),
        ),
        Binding::InUse(Some(owner)) if PLUGIN_PROCESSES.contains(&owner.name.as_str()) => {
            Check::ok(
                port.name(),
                format!(
                    "held by {} (pid {}), part of the node plugin: it already runs here ({})",
                    owner.name, owner.pid, port.chart_value
                ),
            )
        }
        Binding::InUse(Some(owner)) => Check::fail(
            port.name(),
            format!(
                "in use by {} (pid {}); the node plugin needs it for {}",
                owner.name, owner.pid, port.chart_value
            ),
            format!("stop {} {change}", owner.name),
        ),
        Binding::InUse(None) => Check::fail(
            port.name(),
            format!(
                "in use by a process not visible here (run with hostPID to name it); the node \
                 plugin needs it for {}",
                port.chart_value
            ),
            format!("free it (ss -ltnp 'sport = :{}') {change}", port.port),
        ),
        Binding::Refused(e) => Check::fail(
            port.name(),
            format!("cannot bind it: {e}"),
            format!("run doctor as root with host networking, {change}"),
        ),
    }
}

/// Who listens on TCP `port` (IPv4 or IPv6), found through `proc`:
/// the socket's inode in net/tcp{,6}, then the process with a descriptor
/// for it.
pub fn owner_of_listener(port: u16, proc: &Path) -> Option<Owner> {
    let mut inodes = Vec::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(proc.join(table)) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
        });
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            return Some(Owner {
                pid,
                name: name.trim_end().to_string(),
            });
        }
    }
    None
}

/// Inodes of sockets listening on `port` in a /proc/net/tcp or tcp6 table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, local_port) = fields.get(1)?.rsplit_once(':')?;
            let listening = *fields.get(3)? == LISTEN;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    // Captured from /proc/net/tcp: a listener on 127.0.0.1:29683 (0x73F3),
    // a connection from that port, a listener on 0.0.0.0:24017 (0x5DD1).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:73F3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:73F3 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 20 4 30 10 -1
   2: 00000000:5DD1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:73F4 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";

    #[test]
    fn listeners_from_proc_net_tables() {
        assert_eq!(listening_inodes(TCP, 29683), [31337]);
        assert_eq!(listening_inodes(TCP, 24017), [4242]);
        assert_eq!(listening_inodes(TCP, 29684), Vec::<u64>::new());
        assert_eq!(listening_inodes(TCP6, 29684), [777]);
        assert!(listening_inodes("garbage\nmore garbage", 1).is_empty());
    }

    #[test]
    fn finds_the_process_holding_a_port() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let owner = owner_of_listener(port, Path::new("/proc")).expect("this test holds it");
        assert_eq!(owner.pid, std::process::id());
        assert!(matches!(try_bind(port), Binding::InUse(Some(o)) if o == owner));
        drop(listener);
        assert_eq!(try_bind(port), Binding::Free);
    }

    fn health() -> PortUse {
        PortUse {
            port: 29683,
            chart_value: "node.healthPort",
            flag: "--health-port",
        }
    }

    #[test]
    fn a_port_in_use_names_the_value_to_change() {
        assert_eq!(judge_port(&health(), &Binding::Free).status, Status::Ok);
        let taken = judge_port(
            &health(),
            &Binding::InUse(Some(Owner {
                pid: 812,
                name: "nginx".into(),
            })),
        );
        assert_eq!(taken.status, Status::Fail);
        assert_eq!(taken.name, "port 29683");
        assert!(taken.finding.contains("nginx (pid 812)"), "{taken:?}");
        let fix = taken.fix.unwrap();
        assert!(
            fix.contains("node.healthPort") && fix.contains("--health-port"),
            "{fix}"
        );
        let unseen = judge_port(&health(), &Binding::InUse(None));
        assert!(unseen.fix.unwrap().contains("ss -ltnp 'sport = :29683'"));
        let ours = judge_port(
            &health(),
            &Binding::InUse(Some(Owner {
                pid: 9,
                name: "livenessprobe".into(),
            })),
        );
        assert_eq!(ours.status, Status::Ok, "{ours:?}");
        assert!(ours.finding.contains("already runs here"));
    }
}
