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
