//! Brick removal against a hostile brick: a tree 10,000 levels deep and a
//! directory of 1,000,000 entries, written straight into one server's brick
//! directory, must not hurt the process running the brick agent (here the
//! `glusterfs-csi dev` process) and must be purged by the child process.
//! Needs root and glusterfs-server (see README).

mod common;

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use glusterfs_csi::bricks::trash::TRASH_DIR;
use glusterfs_csi::proto::csi::*;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};

const LEVELS: usize = 10_000;
const ENTRIES: usize = 1_000_000;
/// ext4 caps a file's hard links at 65,000.
const LINKS_PER_FILE: usize = 62_500;
/// Measured 5.7-5.9 MiB for the purge child, whatever the tree (most of it
/// the binary and its runtime): room for noise, none for anything that
/// grows with the tree.
const PURGE_PEAK_RSS_KIB: u64 = 16 * 1024;
/// Measured ~8 MiB for the whole dev process (controller, node, three
/// agents) through this test.
const DEV_PEAK_RSS_KIB: u64 = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_brick_is_purged_outside_the_agent_process() {
    let driver = DevDriver::start().await;
    let mut controller = driver.controller();
    // replica 3, the default.
    let volume = create_volume(&driver, &pvc_name()).await;
    let id = volume.volume_id.clone();
    let servers = driver.cluster.addresses();
    let roots: Vec<PathBuf> = servers
        .iter()
        .map(|s| driver.cluster.brick_root.join(s))
        .collect();
    // Declared after the driver, so it runs before the dev cluster's teardown.
    let _leftovers = Leftovers {
        roots: roots.clone(),
        volume: id.clone(),
    };

    let brick = driver.brick_dir(&servers[0], &id);
    let started = Instant::now();
    let (deep, wide) = (brick.join("deep"), brick.join("wide"));
    let deep_chain = std::thread::spawn(move || {
        let t = Instant::now();
        deep_chain(&deep, LEVELS);
        t.elapsed()
    });
    let wide_dir = std::thread::spawn(move || {
        let t = Instant::now();
        wide_dir(&wide, ENTRIES);
        t.elapsed()
    });
    let (deep_took, wide_took) = (deep_chain.join().unwrap(), wide_dir.join().unwrap());
    eprintln!(
        "built {LEVELS} levels in {deep_took:?} and {ENTRIES} entries in {wide_took:?} \
         ({:?} in all)",
        started.elapsed()
    );

    let started = Instant::now();
    controller
        .delete_volume(delete_request(&id))
        .await
        .expect("DeleteVolume with a hostile brick");
    eprintln!("DeleteVolume took {:?}", started.elapsed());
    assert!(!driver.volume_names().contains(&id));
    for server in &servers {
        let brick = driver.brick_dir(server, &id);
        assert!(!brick.exists(), "{} left behind", brick.display());
    }

    let purge_started = Instant::now();
    let trashes: Vec<PathBuf> = roots.iter().map(|r| r.join(TRASH_DIR)).collect();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(120), || {
            trashes
                .iter()
                .all(|t| std::fs::read_dir(t).is_ok_and(|mut d| d.next().is_none()))
        })
    });
    eprintln!(
        "trash empty {:?} after DeleteVolume",
        purge_started.elapsed()
    );

    let trash = &trashes[0];
    let mut log = None;
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || {
            log = purge_summary(&driver.log(), trash);
            log.is_some()
        })
    });
    let log = log.unwrap();
    eprintln!("purge summary for {}: {log:?}", trash.display());
    assert_eq!(field(&log, "purged"), 1, "{log:?}");
    assert_eq!(field(&log, "errors"), 0, "{log:?}");
    assert!(field(&log, "files") >= ENTRIES as u64, "{log:?}");
    assert!(field(&log, "directories") > LEVELS as u64, "{log:?}");
    assert!(
        field(&log, "peak_rss_kib") < PURGE_PEAK_RSS_KIB,
        "purge child peak RSS: {log:?}"
    );

    let pid = driver.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        "the dev process died:\n{}",
        driver.log()
    );
    let dev_peak = status_kib(&status, "VmHWM:");
    eprintln!("dev process peak RSS {dev_peak} KiB");
    assert!(
        dev_peak < DEV_PEAK_RSS_KIB,
        "dev process peak RSS {dev_peak} KiB"
    );
    assert!(
        !driver.log().contains("has overflowed its stack"),
        "{}",
        driver.log()
    );

    controller
        .delete_volume(delete_request(&id))
        .await
        .expect("retried DeleteVolume");
}

fn delete_request(id: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest {
        volume_id: id.to_string(),
        ..Default::default()
    }
}

/// The "brick trash purged" line the agent logged for `trash`, as key=value pairs.
fn purge_summary(log: &str, trash: &Path) -> Option<Vec<(String, String)>> {
    let wanted = format!("trash={}", trash.display());
    let line = log.lines().find(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        l.contains("brick trash purged")
            && words.contains(&wanted.as_str())
            && words.contains(&"already_running=false")
    })?;
    Some(
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn field(summary: &[(String, String)], key: &str) -> u64 {
    summary
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key} in {summary:?}"))
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {status}"))
}

fn open_dir(path: &Path) -> OwnedFd {
    open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap()
}

/// `levels` nested directories, one descriptor at a time (paths that long
/// cannot be used).
fn deep_chain(top: &Path, levels: usize) {
    std::fs::create_dir(top).unwrap();
    let mut fd = open_dir(top);
    for _ in 0..levels {
        mkdirat(fd.as_fd(), "d", Mode::S_IRWXU).unwrap();
        fd = openat(
            fd.as_fd(),
            "d",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
    }
}

/// `entries` names in one directory: hard links, which cost no inode each
/// (creating inodes is ~10x slower on this disk).
fn wide_dir(dir: &Path, entries: usize) {
    std::fs::create_dir(dir).unwrap();
    let fd = open_dir(dir);
    let mut source = CString::default();
    let mut name = [0u8; 24];
    for i in 0..entries {
        if i % LINKS_PER_FILE == 0 {
            source = CString::new(format!("source-{}", i / LINKS_PER_FILE)).unwrap();
            drop(
                openat(
                    fd.as_fd(),
                    source.as_c_str(),
                    OFlag::O_CREAT | OFlag::O_WRONLY,
                    Mode::S_IRUSR,
                )
                .unwrap(),
            );
        }
        let len = decimal(i, &mut name);
        // SAFETY: NUL-terminated names, valid descriptor.
        let rc = unsafe {
            libc::linkat(
                fd.as_raw_fd(),
                source.as_ptr(),
                fd.as_raw_fd(),
                name[..=len].as_ptr().cast(),
                0,
            )
        };
        assert_eq!(rc, 0, "link {i}: {}", std::io::Error::last_os_error());
    }
}

/// Writes `n` in decimal into `out`, NUL-terminated; returns its length.
fn decimal(mut n: usize, out: &mut [u8; 24]) -> usize {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[i] = digits[len - 1 - i];
    }
    out[len] = 0;
    len
}

/// On failure, what this test left in the brick roots goes through the
/// driver's own purge (the dev teardown's recursive removal cannot take a
/// tree 10,000 levels deep).
struct Leftovers {
    roots: Vec<PathBuf>,
    volume: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for root in &self.roots {
            let trash = root.join(TRASH_DIR);
            let brick = root.join(&self.volume);
            if brick.exists() {
                let _ = std::fs::create_dir(&trash);
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let _ = std::fs::rename(&brick, trash.join(format!("{}.{stamp}", self.volume)));
            }
            if std::fs::read_dir(&trash).is_ok_and(|mut d| d.next().is_some()) {
                let _ = std::process::Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"))
                    .arg("purge-brick-trash")
                    .arg(&trash)
                    .status();
            }
        }
    }
}
