//! Every operation finishes and says so (issue 10), drilled against a real
//! 3-server glusterd pool (`glusterfs-csi dev`):
//!
//! - churn: 100 CreateVolume/DeleteVolume at concurrency 10 through a client
//!   that behaves as the external-provisioner (10 s deadline, retries with
//!   backoff); afterwards no volume, brick directory or mount is left, no
//!   caller ever heard CANCELLED, and every request has its log line. The
//!   class does not enforce sizes: with quota the same run takes 7.5 minutes
//!   on this machine (each `quota enable` holds glusterd for seconds), too
//!   long for CI; the benchmark's churn runs with quota;
//! - a standalone controller SIGKILLed at random points of CreateVolume and
//!   of DeleteVolume (replica 3): a new controller's retry converges to
//!   exactly one started volume, or to nothing.
//!
//! What this cannot prove: the servers share one kernel and one disk, so
//! glusterd's timings under real network latency differ; the "sidecar" is
//! this test's loop, not external-provisioner itself.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::churn::{self, as_the_provisioner, quantile};
use common::controller::StandaloneController;
use common::*;
use tonic::Code;

/// Volumes of a churn run, and how many workers create and delete them.
const CHURN_VOLUMES: usize = 100;
const CHURN_CONCURRENCY: usize = 10;

/// Kills per operation in the crash drill.
const KILL_TRIALS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_with_provisioner_deadlines_leaves_nothing_and_logs_every_request() {
    let driver = DevDriver::start().await;
    let churn = churn::churn(
        driver.channel.clone(),
        CHURN_VOLUMES,
        CHURN_CONCURRENCY,
        &[("enforceCapacity", "false")],
    )
    .await;
    eprintln!(
        "churn: {} volumes at concurrency {} in {:.1} s; create p50 {:.2} s p99 {:.2} s, \
         delete p50 {:.2} s p99 {:.2} s; {} retries ({} DEADLINE_EXCEEDED, {} ABORTED, {} \
         UNAVAILABLE)",
        churn.volumes.len(),
        CHURN_CONCURRENCY,
        churn.wall.as_secs_f64(),
        quantile(churn.creates(), 0.5).as_secs_f64(),
        quantile(churn.creates(), 0.99).as_secs_f64(),
        quantile(churn.deletes(), 0.5).as_secs_f64(),
        quantile(churn.deletes(), 0.99).as_secs_f64(),
        churn.retries(),
        churn.failures_with(Code::DeadlineExceeded),
        churn.failures_with(Code::Aborted),
        churn.failures_with(Code::Unavailable),
    );
    assert!(churn.errors.is_empty(), "final errors: {:#?}", churn.errors);
    assert_eq!(churn.volumes.len(), CHURN_VOLUMES);
    assert_eq!(
        churn.failures_with(Code::Cancelled),
        0,
        "a caller whose deadline passed must hear DEADLINE_EXCEEDED"
    );

    // Nothing left: no volume, no brick directory, no mount.
    assert_eq!(driver.volume_names(), Vec::<String>::new());
    for server in &driver.cluster.servers {
        let root = driver.cluster.brick_root.join(&server.address);
        let left: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != ".glusterfs-csi-trash")
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", root.display());
    }
    assert_eq!(fuse_mounts_of(&driver), Vec::<String>::new());

    // Every request the client sent has its own line in the driver's log.
    let log = driver.log();
    let mut unlogged = Vec::new();
    for (name, (create, delete)) in &churn.volumes {
        let id = format!("csi-{name}");
        for (method, volume, sent) in [
            ("CreateVolume", name.as_str(), create.attempts),
            ("DeleteVolume", id.as_str(), delete.attempts),
        ] {
            let needle = format!("method=\"{method}\" volume=\"{volume}\"");
            let logged = log.lines().filter(|l| l.contains(&needle)).count() as u32;
            if logged != sent {
                unlogged.push(format!("{method} {volume}: {sent} sent, {logged} logged"));
            }
        }
    }
    assert!(unlogged.is_empty(), "{unlogged:#?}");
    assert!(
        churn
            .deletes()
            .iter()
            .all(|d| *d < Duration::from_secs(120)),
        "every delete finished within two minutes"
    );
}

/// Mounts of the cluster's volumes anywhere: on the host, and inside each
/// server's glusterd mount namespace (quota's helper mounts).
fn fuse_mounts_of(driver: &DevDriver) -> Vec<String> {
    let addresses: Vec<&str> = driver
        .cluster
        .servers
        .iter()
        .map(|s| s.address.as_str())
        .collect();
    let mut tables = vec![std::fs::read_to_string("/proc/self/mountinfo").unwrap()];
    for server in &driver.cluster.servers {
        let pid_file = server.glusterd_socket.with_file_name("glusterd.pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            tables.push(
                std::fs::read_to_string(format!("/proc/{}/mountinfo", pid.trim()))
                    .unwrap_or_default(),
            );
        }
    }
    tables
        .iter()
        .flat_map(|t| t.lines())
        .filter(|line| {
            let Some((_, after)) = line.split_once(" - ") else {
                return false;
            };
            let mut fields = after.split_whitespace();
            let (Some(fs_type), Some(source)) = (fields.next(), fields.next()) else {
                return false;
            };
            fs_type == "fuse.glusterfs"
                && source
                    .split_once(':')
                    .is_some_and(|(host, _)| addresses.contains(&host))
        })
        .map(str::to_string)
        .collect()
}

/// A small deterministic generator: the seed is printed, so a failing
/// trial can be replayed with DRILL_SEED.
struct Dice(u64);

impl Dice {
    fn new() -> Dice {
        let seed = std::env::var("DRILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("crash drill: DRILL_SEED={seed}");
        Dice(seed)
    }

    /// Uniform in `0..=limit`.
    fn within(&mut self, limit: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let micros = limit.as_micros() as u64;
        Duration::from_micros(self.0 % (micros + 1))
    }
}

/// The gluster volumes of the pool, and the brick directories on each
/// server of the dev layout.
fn pool_contents(driver: &DevDriver) -> (BTreeSet<String>, BTreeSet<String>) {
    let volumes = driver.volume_names().into_iter().collect();
    let mut bricks = BTreeSet::new();
    for server in &driver.cluster.servers {
        let root = driver.cluster.brick_root.join(&server.address);
        for entry in std::fs::read_dir(&root).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name != ".glusterfs-csi-trash" {
                bricks.insert(format!("{}/{name}", server.address));
            }
        }
    }
    (volumes, bricks)
}

fn expected_bricks(driver: &DevDriver, volumes: &BTreeSet<String>) -> BTreeSet<String> {
    driver
        .cluster
        .servers
        .iter()
        .flat_map(|s| volumes.iter().map(move |v| format!("{}/{v}", s.address)))
        .collect()
}

/// Status of `volume` in the pool: `Some("Started")` and the like.
fn status_of(driver: &DevDriver, volume: &str) -> Option<String> {
    let xml = gluster(
        &driver.cluster.servers[0].glusterd_socket,
        &["volume", "info", volume],
    )
    .ok()?;
    let status = xml
        .split("<statusStr>")
        .nth(1)?
        .split("</statusStr>")
        .next()?;
    Some(status.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_killed_mid_operation_converges_on_retry() {
    let driver = DevDriver::start().await;
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("controller.sock");
    let mut dice = Dice::new();

    // How long the operations take uninterrupted bounds where kills land.
    let controller = StandaloneController::start(&driver.cluster, socket.clone()).await;
    let probe = pvc_name();
    let started = Instant::now();
    let volume = controller
        .client()
        .create_volume(create_request(&probe, &[]))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let create_time = started.elapsed();
    let started = Instant::now();
    controller
        .client()
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
    let delete_time = started.elapsed();
    drop(controller);
    eprintln!(
        "crash drill: create {:.2} s, delete {:.2} s uninterrupted",
        create_time.as_secs_f64(),
        delete_time.as_secs_f64()
    );

    let mut created: BTreeSet<String> = BTreeSet::new();
    let mut orphans = Vec::new();
    let mut outcomes = Vec::new();
    for trial in 0..KILL_TRIALS {
        let name = pvc_name();
        let id = format!("csi-{name}");
        let controller = StandaloneController::start(&driver.cluster, socket.clone()).await;
        let at = dice.within(create_time.mul_f64(1.2));
        let mut client = controller.client();
        let request = create_request(&name, &[]);
        let call = tokio::spawn(async move { client.create_volume(request).await });
        tokio::time::sleep(at).await;
        let finished_first = call.is_finished();
        orphans.extend(controller.kill());
        let first = call.await.unwrap();
        let state = status_of(&driver, &id);
        outcomes.push(format!(
            "create #{trial}: killed at {} ms ({}), left {state:?}",
            at.as_millis(),
            if first.is_ok() || finished_first {
                "after the answer"
            } else {
                "mid-operation"
            },
        ));
        let controller = StandaloneController::start(&driver.cluster, socket.clone()).await;
        let client = controller.client();
        let retried = as_the_provisioner(
            |r| {
                let mut c = client.clone();
                async move { c.create_volume(r).await }
            },
            || create_request(&name, &[]),
        )
        .await;
        let (response, _) = retried.unwrap_or_else(|(status, _)| {
            panic!(
                "create #{trial}: retry failed: {status:?}\n{}",
                controller.log()
            )
        });
        assert_eq!(response.volume.unwrap().volume_id, id);
        assert_eq!(
            status_of(&driver, &id).as_deref(),
            Some("Started"),
            "create #{trial}"
        );
        created.insert(id);
        let (volumes, bricks) = pool_contents(&driver);
        assert_eq!(
            volumes, created,
            "create #{trial}: exactly the volumes asked for"
        );
        assert_eq!(
            bricks,
            expected_bricks(&driver, &created),
            "create #{trial}: exactly their bricks"
        );
        drop(controller);
    }

    for (trial, id) in created.clone().into_iter().enumerate() {
        let controller = StandaloneController::start(&driver.cluster, socket.clone()).await;
        let at = dice.within(delete_time.mul_f64(1.2));
        let mut client = controller.client();
        let request = glusterfs_csi::proto::csi::DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        };
        let call = tokio::spawn(async move { client.delete_volume(request).await });
        tokio::time::sleep(at).await;
        orphans.extend(controller.kill());
        let _ = call.await.unwrap();
        outcomes.push(format!(
            "delete #{trial}: killed at {} ms, left {:?}",
            at.as_millis(),
            status_of(&driver, &id)
        ));
        let controller = StandaloneController::start(&driver.cluster, socket.clone()).await;
        let client = controller.client();
        let retried = as_the_provisioner(
            |r| {
                let mut c = client.clone();
                async move { c.delete_volume(r).await }
            },
            || glusterfs_csi::proto::csi::DeleteVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            },
        )
        .await;
        if let Err((status, _)) = retried {
            panic!(
                "delete #{trial}: retry failed: {status:?}\n{}",
                controller.log()
            );
        }
        created.remove(&id);
        let (volumes, bricks) = pool_contents(&driver);
        assert_eq!(volumes, created, "delete #{trial}: the volume is gone");
        assert_eq!(
            bricks,
            expected_bricks(&driver, &created),
            "delete #{trial}: and its bricks"
        );
        drop(controller);
    }
    eprintln!("{}", outcomes.join("\n"));
    assert!(created.is_empty());
    assert_eq!(fuse_mounts_of(&driver), Vec::<String>::new());
    assert_eq!(
        still_running_gluster(&orphans),
        Vec::<i32>::new(),
        "the killed controllers' gluster CLI sessions end with them"
    );
}

/// Those of `pids` still running the gluster CLI after a while (a session
/// reads the end of its stdin when its controller dies, and leaves).
fn still_running_gluster(pids: &[i32]) -> Vec<i32> {
    let alive = || -> Vec<i32> {
        pids.iter()
            .copied()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "gluster")
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !alive().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    alive()
}
