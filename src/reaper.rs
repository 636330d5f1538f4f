//! Reaping orphans without stealing anyone's exit status.
//!
//! A node plugin without hostPID is PID 1 of its PID namespace, so every
//! daemonised FUSE client becomes its child when mount.glusterfs exits; a
//! PID 1 that never waits for them leaves a zombie per unmount. Waiting for
//! "any child" inside the driver would also take the statuses tokio waits
//! for (mount, the gluster CLI), so PID 1 runs nothing else: it starts the
//! driver as its only child, forwards signals to it, reaps whatever else
//! ends, and exits with the driver's status. `dev` does the same as a child
//! subreaper, so its FUSE clients are reaped even where the machine's init
//! does not reap (this one's does not).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cli::Mode;

/// Set in the driver a reaper started, so it does not start another.
const SUPERVISED_ENV: &str = "GLUSTERFS_CSI_SUPERVISED";

/// Signals passed on to the driver.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How the process should reap: `None` runs the driver in this process.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaping {
    /// PID 1 of its namespace: orphans come here by themselves.
    AsInit,
    /// Claim orphans of our descendants (PR_SET_CHILD_SUBREAPER).
    AsSubreaper,
}

/// Whether this process must become a reaper in front of the driver.
pub fn needed(mode: &Mode) -> Option<Reaping> {
    if std::env::var_os(SUPERVISED_ENV).is_some() {
        return None;
    }
    if std::process::id() == 1 {
        return Some(Reaping::AsInit);
    }
    matches!(mode, Mode::Dev(_)).then_some(Reaping::AsSubreaper)
}

/// True in the driver a reaper started: its parent is the reaper.
pub fn is_supervised() -> bool {
    std::env::var_os(SUPERVISED_ENV).is_some()
}

/// Runs the same command line as a child and reaps until it ends; returns
/// its exit status (128 + signal when a signal ended it).
pub fn supervise(reaping: Reaping) -> ExitCode {
    if reaping == Reaping::AsSubreaper
        && let Err(e) = nix::sys::prctl::set_child_subreaper(true)
    {
        eprintln!("glusterfs-csi: cannot become a child subreaper: {e}");
    }
    let mut waited = SigSet::empty();
    waited.add(Signal::SIGCHLD);
    for signal in FORWARDED {
        waited.add(signal);
    }
    // Blocked here, taken with sigwait below; unblocked again in the child.
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None) {
        eprintln!("glusterfs-csi: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    // By its path, so the driver's process name is the binary's own.
    let program = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let mut driver = Command::new(program);
    driver.arg0(arg0).args(args).env(SUPERVISED_ENV, "1");
    // SAFETY: prctl and sigprocmask are async-signal-safe; nothing else
    // runs before exec.
    unsafe {
        driver.pre_exec(|| {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let child = match driver.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            eprintln!("glusterfs-csi: cannot start the driver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {
                if let Some(status) = reap_all(child) {
                    break status;
                }
            }
            Ok(signal) => {
                let _ = kill(child, signal);
            }
            Err(e) => {
                eprintln!("glusterfs-csi: waiting for signals: {e}");
                let _ = kill(child, Signal::SIGKILL);
            }
        }
    };
    if reaping == Reaping::AsSubreaper {
        // FUSE clients unmounted during teardown may still be exiting.
        drain_children(Duration::from_secs(5));
    }
    exit_code(status)
}

/// Reaps every child that has ended; the driver's status once it is among
/// them.
fn reap_all(driver: Pid) -> Option<std::process::ExitStatus> {
    let mut driver_status = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == driver => {
                driver_status = Some(std::process::ExitStatus::from_raw((code & 0xff) << 8));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == driver => {
                driver_status = Some(std::process::ExitStatus::from_raw(signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return driver_status,
            Ok(_) => {}
        }
    }
}

/// Waits up to `limit` for the remaining children, reaping them.
fn drain_children(limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) => {}
            Err(_) => return, // ECHILD: none left
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signal)) => ExitCode::from(128u8.wrapping_add(signal as u8)),
        _ => ExitCode::FAILURE,
    }
}

/// This process has a PID namespace of its own (a container without
/// hostPID): it, or the reaper in front of it, is PID 1 there.
pub fn own_pid_namespace() -> bool {
    std::process::id() == 1 || (is_supervised() && nix::unistd::getppid().as_raw() == 1)
}
