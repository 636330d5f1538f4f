//! `glusterfs-csi dev` only ever touches what it made: a state directory it
//! did not make is refused, its teardown spares a gluster process that
//! merely names its state directory, and a run that was killed is cleaned
//! up by the next one in the same directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BINARY: &str = env!("CARGO_BIN_EXE_glusterfs-csi");

#[test]
fn a_state_directory_dev_did_not_make_is_refused_and_left_as_it_was() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("bricks")).unwrap();
    std::fs::write(data.path().join("bricks/precious"), "keep").unwrap();
    let mut dev = Command::new(BINARY)
        .args(["dev", "--state-dir"])
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Refused at once; a dev that started anyway is stopped, not waited for.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dev.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if dev.try_wait().unwrap().is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(dev.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let output = dev.wait_with_output().unwrap();
    assert!(
        !output.status.success(),
        "dev used a directory it did not make"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("was not made by glusterfs-csi dev"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(data.path().join("bricks/precious")).unwrap(),
        "keep"
    );
    let left: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["bricks"], "nothing made, nothing removed");
}

/// A process named like a gluster daemon whose arguments contain the state
/// directory's path: teardown must leave it running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_spares_a_gluster_process_that_only_names_the_state_directory() {
    let driver = DevDriver::start().await;
    create_volume(&driver, &pvc_name()).await;
    let state = driver.cluster.state_dir.clone();
    let bin = tempfile::tempdir().unwrap();
    // `tail` under a gluster daemon's name, following a file of the cluster.
    let impostor_program = bin.path().join("glusterfs");
    std::fs::copy("/usr/bin/tail", &impostor_program).unwrap();
    let mut impostor = Command::new(&impostor_program)
        .arg("-f")
        .arg(state.join("cluster.json"))
        .arg(format!("--pid={}", std::process::id()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bricks = brick_processes(&state);
    assert!(!bricks.is_empty(), "the cluster runs brick daemons");
    drop(driver);
    assert!(
        impostor.try_wait().unwrap().is_none(),
        "teardown ended a process that is not the cluster's"
    );
    for pid in bricks {
        assert!(!alive(pid), "the cluster's own daemon {pid} was ended");
    }
    impostor.kill().unwrap();
    impostor.wait().unwrap();
}

/// Killed outright (no teardown), dev leaves its cluster running; the next
/// run in the same state directory ends it and starts cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dev_run_is_cleaned_up_by_the_next_one() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let mut first = DevDriver::start_in(&state).await;
    let volume = create_volume(&first, &pvc_name()).await;
    let staging = first.staging_path(&volume.volume_id);
    first
        .node()
        .node_stage_volume(stage_request(&volume, &staging))
        .await
        .unwrap();
    let old_daemons = brick_processes(&state);
    let old_addresses = first.cluster.addresses();
    assert!(!old_daemons.is_empty());
    sigkill(first.pid() as i32);
    first.wait_exit();
    assert!(
        old_daemons.iter().any(|p| alive(*p)),
        "left running by the kill"
    );

    let second = DevDriver::start_in(&state).await;
    assert!(
        second
            .log()
            .contains("cleaning up after an earlier dev run")
    );
    for pid in &old_daemons {
        assert!(!alive(*pid), "daemon {pid} of the killed run still runs");
    }
    assert!(mounts_at(&staging).is_empty(), "its mounts are gone");
    let lo = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .unwrap();
    let lo = String::from_utf8_lossy(&lo.stdout);
    for address in old_addresses
        .iter()
        .filter(|a| !second.cluster.addresses().contains(a))
    {
        assert!(
            !lo.contains(&format!(" {address}/")),
            "{address} still on lo"
        );
    }
    let volume = create_volume(&second, &pvc_name()).await;
    assert!(second.volume_names().contains(&volume.volume_id));
    drop(first);
    drop(second);
    assert!(
        !state.exists(),
        "the last teardown removes the state directory"
    );
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

/// Brick daemons of the cluster in `state`: glusterfsd whose `-p` pid file is
/// under it.
fn brick_processes(state: &Path) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv: Vec<PathBuf> = raw
                .split(|b| *b == 0)
                .map(|a| PathBuf::from(String::from_utf8_lossy(a).into_owned()))
                .collect();
            let gluster = argv.first()?.file_name()? == "glusterfsd";
            let ours = argv
                .windows(2)
                .any(|w| w[0] == Path::new("-p") && w[1].starts_with(state));
            (gluster && ours).then_some(pid)
        })
        .collect()
}

/// How a dev run is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// The driver process alone (the reaper in front of it lives on).
    Driver,
    /// The process the user started: the reaper, so the driver gets
    /// SIGTERM from the kernel and tears down by itself (without a reaper
    /// for the FUSE clients it ends).
    Reaper,
    /// Everything in dev's process group at once (`kill -9 -PGID`):
    /// reaper, driver and its glusterds.
    Group,
    /// The driver, in the middle of writing its description, as a kill
    /// could catch the truncate-then-write save dev had before (the next
    /// run then skipped its cleanup and failed on the old working
    /// directories, leaving the old lock file and aliases).
    DriverWhileWritingItsDescription,
}

/// Killed with SIGKILL while a replica-3 volume is staged and published:
/// the FUSE client, bricks and self-heal daemons live on. The next run in
/// the same state directory ends all of it, serves, and its own teardown
/// leaves nothing.
async fn killed_with_a_published_volume(kill: Kill) {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let mut first = DevDriver::start_in(&state).await;
    let volume = create_volume(&first, &pvc_name()).await;
    // Kubelet paths that outlive `first`, so its slot is given back before
    // the next run takes one.
    let kubelet = tempfile::tempdir().unwrap();
    let staging = kubelet.path().join("globalmount");
    std::fs::create_dir(&staging).unwrap();
    let target = kubelet.path().join("mount");
    stage_and_publish(&mut first.node(), &volume, &staging, &target).await;
    std::fs::write(target.join("written-before-the-kill"), "x").unwrap();
    let old = Footprint::of(&first.cluster, &[&staging]);
    assert!(
        old.processes.iter().any(|p| p.is_fuse_client),
        "a FUSE client serves the staging path: {:?}",
        old.processes
    );
    // 3 glusterd, 3 bricks, 3 self-heal daemons, the FUSE client.
    assert!(old.processes.len() >= 10, "{:?}", old.processes);
    let _old_guard = old.end_on_panic();

    let driver = first.pid() as i32;
    match kill {
        Kill::Driver => sigkill(driver),
        Kill::Reaper => {
            sigkill(parent_of(driver));
            // Until it has torn down, the state directory is still in use.
            let old_driver = RunProcess::read(driver).unwrap();
            wait_until(Duration::from_secs(60), || !old_driver.alive());
        }
        Kill::Group => {
            sigkill(parent_of(driver));
            sigkill(driver);
            for server in &first.cluster.servers {
                sigkill(server.glusterd_pid.unwrap() as i32);
            }
        }
        Kill::DriverWhileWritingItsDescription => {
            sigkill(driver);
            let description = state.join("cluster.json");
            let text = std::fs::read(&description).unwrap();
            std::fs::write(&description, &text[..text.len() / 2]).unwrap();
        }
    }
    first.wait_exit();
    drop(first);

    let second = DevDriver::start_in(&state).await;
    old.assert_gone(Some(&second.cluster));
    assert!(mounts_at(&staging).is_empty(), "the staging mount is gone");
    assert!(mounts_at(&target).is_empty(), "the published mount is gone");
    let served = create_volume(&second, &pvc_name()).await;
    assert_eq!(
        second.volume_names(),
        [served.volume_id],
        "volumes do not survive a restart"
    );
    let new = Footprint::of(&second.cluster, &[]);
    drop(second);
    new.assert_gone_after_teardown();
    assert!(
        !state.exists(),
        "the last teardown removes the state directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_driver_killed_with_a_published_volume_is_cleaned_up_by_the_next_run() {
    killed_with_a_published_volume(Kill::Driver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_reaper_killed_with_a_published_volume_is_cleaned_up_by_the_next_run() {
    killed_with_a_published_volume(Kill::Reaper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_process_group_killed_with_a_published_volume_is_cleaned_up_by_the_next_run() {
    killed_with_a_published_volume(Kill::Group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_killed_while_writing_its_description_is_cleaned_up_by_the_next_run() {
    killed_with_a_published_volume(Kill::DriverWhileWritingItsDescription).await;
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(") ").unwrap().1;
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// SIGKILL while dev starts (description written, glusterds starting or
/// started): the next run in the same state directory cleans up and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_killed_during_start_up_is_cleaned_up_by_the_next_one() {
    // Right after the description names the servers, and once every
    // glusterd of it was started.
    for started in [0, 3] {
        let home = tempfile::tempdir().unwrap();
        let state = home.path().join("state");
        let mut starting = Command::new(BINARY)
            .args(["dev", "--state-dir"])
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reaper = starting.id();
        let description = {
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                let mut seen = None;
                wait_until(Duration::from_secs(60), || {
                    seen = glusterfs_csi::dev::ClusterDescription::load(&state)
                        .ok()
                        .filter(|d| {
                            d.servers
                                .iter()
                                .filter(|s| s.glusterd_pid.is_some())
                                .count()
                                >= started
                        });
                    seen.is_some()
                });
                seen.unwrap()
            })
            .await
            .unwrap()
        };
        let driver = driver_of(reaper);
        let old = Footprint::of(&description, &[]);
        let _old_guard = old.end_on_panic();
        sigkill(driver);
        starting.wait().unwrap();

        let second = DevDriver::start_in(&state).await;
        old.assert_gone(Some(&second.cluster));
        let served = create_volume(&second, &pvc_name()).await;
        assert_eq!(second.volume_names(), [served.volume_id]);
        let new = Footprint::of(&second.cluster, &[]);
        drop(second);
        new.assert_gone_after_teardown();
        assert!(
            !state.exists(),
            "killed after {started} glusterds: state left"
        );
    }
}

/// SIGKILL in the middle of a teardown (SIGTERM first, with a volume
/// published): the next run finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_killed_during_teardown_is_cleaned_up_by_the_next_one() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let mut first = DevDriver::start_in(&state).await;
    let volume = create_volume(&first, &pvc_name()).await;
    let kubelet = tempfile::tempdir().unwrap();
    let staging = kubelet.path().join("globalmount");
    std::fs::create_dir(&staging).unwrap();
    let target = kubelet.path().join("mount");
    stage_and_publish(&mut first.node(), &volume, &staging, &target).await;
    let old = Footprint::of(&first.cluster, &[&staging]);
    let _old_guard = old.end_on_panic();
    let driver = first.pid() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(driver),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    {
        let first = &first;
        wait_until(Duration::from_secs(30), || {
            first.log().contains("dev cluster: tearing down")
        });
    }
    sigkill(driver);
    first.wait_exit();
    drop(first);

    let second = DevDriver::start_in(&state).await;
    old.assert_gone(Some(&second.cluster));
    assert!(mounts_at(&target).is_empty(), "the published mount is gone");
    let served = create_volume(&second, &pvc_name()).await;
    assert_eq!(second.volume_names(), [served.volume_id]);
    let new = Footprint::of(&second.cluster, &[]);
    drop(second);
    new.assert_gone_after_teardown();
    assert!(!state.exists());
}

/// The dev driver a reaper started (its child named `glusterfs-csi`).
fn driver_of(reaper: u32) -> i32 {
    let mut driver = None;
    wait_until(Duration::from_secs(10), || {
        driver = std::fs::read_to_string(format!("/proc/{reaper}/task/{reaper}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "glusterfs-csi")
            });
        driver.is_some()
    });
    driver.unwrap()
}

/// A process of a dev run, recorded with its whole command line so a reused
/// pid is never mistaken for it.
#[derive(Debug, Clone)]
struct RunProcess {
    pid: i32,
    argv: Vec<String>,
    is_fuse_client: bool,
}

impl RunProcess {
    fn read(pid: i32) -> Option<RunProcess> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (!argv.is_empty()).then_some(RunProcess {
            pid,
            argv,
            is_fuse_client: false,
        })
    }

    fn alive(&self) -> bool {
        alive(self.pid) && RunProcess::read(self.pid).is_some_and(|now| now.argv == self.argv)
    }
}

/// What a dev run has made on the machine, recorded from its description
/// and the pid files under its state directory, not by matching text.
#[derive(Clone)]
struct Footprint {
    description: glusterfs_csi::dev::ClusterDescription,
    block_lock: PathBuf,
    processes: Vec<RunProcess>,
}

impl Footprint {
    /// Its glusterds (by the pids dev recorded), the daemons whose pid files
    /// lie in its state directory, and the FUSE clients serving `mounts`.
    fn of(description: &glusterfs_csi::dev::ClusterDescription, mounts: &[&Path]) -> Footprint {
        let mut pids: Vec<i32> = description
            .servers
            .iter()
            .filter_map(|s| s.glusterd_pid.map(|p| p as i32))
            .collect();
        pids.extend(pid_files(&description.state_dir.join("nodes")));
        // A stale pid file may name a pid reused since: gluster daemons only.
        let mut processes: Vec<RunProcess> = pids
            .into_iter()
            .filter_map(RunProcess::read)
            .filter(|p| {
                Path::new(&p.argv[0])
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| matches!(n, "glusterd" | "glusterfsd" | "glusterfs"))
            })
            .collect();
        processes.extend(fuse_clients(mounts));
        processes.sort_by_key(|p| p.pid);
        processes.dedup_by_key(|p| p.pid);
        let prefix = description.servers[0]
            .address
            .rsplit_once('.')
            .unwrap()
            .0
            .to_string();
        Footprint {
            description: description.clone(),
            block_lock: Path::new("/run/glusterfs-csi-dev").join(format!("{prefix}.lock")),
            processes,
        }
    }

    fn addresses(&self) -> Vec<String> {
        self.description.addresses()
    }

    /// Nothing of this run is left; `next` is the run that cleaned up (it
    /// may have taken the same address block again).
    fn assert_gone(&self, next: Option<&glusterfs_csi::dev::ClusterDescription>) {
        let reused = next.is_some_and(|next| next.addresses() == self.addresses());
        let running: Vec<_> = self.processes.iter().filter(|p| p.alive()).collect();
        assert!(running.is_empty(), "still running: {running:?}");
        let mounts = gluster_mounts_of(&self.addresses());
        assert!(mounts.is_empty(), "FUSE mounts left: {mounts:?}");
        if !reused {
            let on_lo = lo_addresses();
            let left: Vec<_> = self
                .addresses()
                .into_iter()
                .filter(|a| on_lo.contains(a))
                .collect();
            assert!(left.is_empty(), "aliases left on lo: {left:?}");
            assert!(
                !self.block_lock.exists(),
                "{} left",
                self.block_lock.display()
            );
        }
    }

    /// After the run's own teardown.
    fn assert_gone_after_teardown(&self) {
        self.assert_gone(None);
    }

    /// A guard that ends what is left of this run if the test panics.
    fn end_on_panic(&self) -> EndOnPanic {
        EndOnPanic(self.clone())
    }
}

struct EndOnPanic(Footprint);

impl Drop for EndOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let description = self.0.description.clone();
        // Its own runtime: this may run inside the test's.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(glusterfs_csi::dev::cluster::end_cluster(
                    &description,
                    &mut [],
                ))
        })
        .join();
        for process in self.0.processes.iter().filter(|p| p.alive()) {
            sigkill(process.pid);
        }
        let _ = std::fs::remove_file(&self.0.block_lock);
    }
}

/// Pids in the `*.pid` files under `dir`.
fn pid_files(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(path),
                Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "pid") => {
                    if let Some(pid) = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        pids.push(pid);
                    }
                }
                _ => {}
            }
        }
    }
    pids
}

/// The glusterfs FUSE clients whose mount point (their last argument) is
/// one of `mounts`.
fn fuse_clients(mounts: &[&Path]) -> Vec<RunProcess> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| RunProcess::read(e.file_name().to_str()?.parse().ok()?))
        .filter(|p| {
            Path::new(&p.argv[0]).file_name() == Some("glusterfs".as_ref())
                && p.argv
                    .last()
                    .is_some_and(|last| mounts.iter().any(|m| Path::new(last) == *m))
        })
        .map(|p| RunProcess {
            is_fuse_client: true,
            ..p
        })
        .collect()
}

/// Gluster FUSE mounts (bind mounts included) served by one of `addresses`.
fn gluster_mounts_of(addresses: &[String]) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    glusterfs_csi::mount::mountinfo::parse(&text)
        .into_iter()
        .filter(|m| {
            m.is_glusterfs()
                && m.source
                    .split_once(':')
                    .is_some_and(|(host, _)| addresses.iter().any(|a| a == host))
        })
        .map(|m| m.mount_point)
        .collect()
}

/// The IPv4 addresses on `lo`, exactly.
fn lo_addresses() -> Vec<String> {
    let output = Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", "lo"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            Some(words.next()?.split('/').next()?.to_string())
        })
        .collect()
}
