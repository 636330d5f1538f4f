//! Driver benchmark on dev clusters: prints figures, asserts nothing.
//!
//!     cargo bench --bench driver
//!     cargo bench --bench driver -- sizes    # only the quota/expansion figures
//!
//! Needs what the integration tests need (root, glusterfs-server, FUSE).
//! Compares the driver with the raw gluster CLI and `mount -t glusterfs` on
//! the same cluster, and reads the driver's resident memory.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use glusterfs_csi::proto::csi::*;

const SAMPLES: usize = 15;
const PARALLEL: usize = 50;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list
    }
    // `cargo bench --bench driver -- health`: only the sections named.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
    let mut report = Report::default();
    if run("latency") {
        latency(&mut report).await;
    }
    if run("sizes") {
        sizes(&mut report).await;
    }
    if run("parallel") {
        parallel_driver(&mut report).await;
        parallel_raw(&mut report).await;
    }
    if run("survival") {
        survival(&mut report).await;
    }
    if run("health") {
        health(&mut report).await;
    }
    if run("churn") {
        churn(&mut report).await;
    }
    if run("density") {
        density(&mut report).await;
    }
    if run("subdirectory") {
        subdirectory(&mut report).await;
    }
    report.print();
}

#[derive(Default)]
struct Report {
    lines: Vec<(String, String, String)>,
}

impl Report {
    fn add(&mut self, what: &str, value: String, target: &str) {
        println!("  {what}: {value}");
        self.lines
            .push((what.to_string(), value, target.to_string()));
    }

    fn print(&self) {
        println!("\n| measurement | result | target |\n| --- | --- | --- |");
        for (what, value, target) in &self.lines {
            println!("| {what} | {value} | {target} |");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `volume` against `directory`: both medians and their ratio.
fn versus(volume: Duration, directory: Duration) -> String {
    format!(
        "{:.0} ms vs {:.1} ms ({:.3}x)",
        ms(volume),
        ms(directory),
        ms(directory) / ms(volume)
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// RSS of the gluster CLI sessions the driver keeps (its child processes).
fn session_rss_kib(driver_pid: u32) -> (usize, u64) {
    let mut count = 0;
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((comm_part, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == driver_pid && comm_part.ends_with("(gluster") {
            count += 1;
            total += rss_kib(pid as i32);
        }
    }
    (count, total)
}

fn raw_gluster(socket: &Path, words: &[&str]) {
    gluster(socket, words).unwrap_or_else(|e| panic!("gluster {words:?}: {e}"));
}

/// `host:path` of each brick of a replica 3 volume of the dev cluster.
fn brick_words(driver: &DevDriver, name: &str) -> Vec<String> {
    driver
        .cluster
        .addresses()
        .iter()
        .map(|s| format!("{s}:{}", driver.brick_dir(s, name).display()))
        .collect()
}

/// `volume create <name> replica 3 <bricks> force`.
fn create_words<'a>(name: &'a str, bricks: &'a [String]) -> Vec<&'a str> {
    let mut create = vec!["volume", "create", name, "replica", "3"];
    create.extend(bricks.iter().map(String::as_str));
    create.push("force");
    create
}

/// `gluster volume create <name> replica 3 ... force` then `volume start`.
fn raw_create_and_start(driver: &DevDriver, name: &str) -> Duration {
    let socket = &driver.cluster.servers[0].glusterd_socket;
    let bricks = brick_words(driver, name);
    let create = create_words(name, &bricks);
    let started = Instant::now();
    raw_gluster(socket, &create);
    raw_gluster(socket, &["volume", "start", name]);
    started.elapsed()
}

/// CreateVolume without quota (as before sizes were enforced): the
/// comparison with the raw `volume create` + `volume start`.
async fn create(driver: &DevDriver, name: &str) -> (Volume, Duration) {
    create_with(driver, name, &[("enforceCapacity", "false")]).await
}

async fn create_with(
    driver: &DevDriver,
    name: &str,
    parameters: &[(&str, &str)],
) -> (Volume, Duration) {
    let started = Instant::now();
    let volume = driver
        .controller()
        .create_volume(create_request(name, parameters))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    (volume, started.elapsed())
}

fn raw_mount(volume: &Volume, target: &Path) -> Duration {
    let ctx = &volume.volume_context;
    let backups = ctx["backupServers"].replace(',', ":");
    let started = Instant::now();
    let status = Command::new("mount")
        .args(["-t", "glusterfs", "-o"])
        .arg(format!("backup-volfile-servers={backups}"))
        .arg(format!("{}:/{}", ctx["server"], ctx["volume"]))
        .arg(target)
        .status()
        .unwrap();
    let took = started.elapsed();
    assert!(status.success());
    assert!(
        Command::new("umount")
            .arg(target)
            .status()
            .unwrap()
            .success()
    );
    took
}

async fn stage_cycle(driver: &DevDriver, volume: &Volume, staging: &Path) -> Duration {
    let mut node = driver.node();
    let started = Instant::now();
    node.node_stage_volume(stage_request(volume, staging))
        .await
        .unwrap();
    let took = started.elapsed();
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();
    took
}

const SIZE_SAMPLES: usize = 5;

/// The gluster commands CreateVolume runs for an enforced volume, each
/// timed: create, set (marks), set (quota timeouts), start, quota enable
/// (glusterd refuses it before the first start), limit-usage.
fn raw_enforced(driver: &DevDriver, name: &str) -> [Duration; 6] {
    let socket = &driver.cluster.servers[0].glusterd_socket;
    let bricks = brick_words(driver, name);
    let create = create_words(name, &bricks);
    let steps: [Vec<&str>; 6] = [
        create,
        vec![
            "volume",
            "set",
            name,
            "user.csi.name",
            name,
            "user.csi.size",
            "1073741824",
        ],
        vec![
            "volume",
            "set",
            name,
            "features.soft-timeout",
            "0",
            "features.hard-timeout",
            "0",
        ],
        vec!["volume", "start", name],
        vec!["volume", "quota", name, "enable"],
        vec!["volume", "quota", name, "limit-usage", "/", "1073741824"],
    ];
    steps.map(|words| {
        let started = Instant::now();
        raw_gluster(socket, &words);
        started.elapsed()
    })
}

/// CreateVolume with and without quota against the raw commands, and
/// ControllerExpandVolume: a few volumes on one cluster.
async fn sizes(report: &mut Report) {
    println!("sizes (one dev cluster, {SIZE_SAMPLES} samples each, medians)");
    let driver = DevDriver::start().await;
    create(&driver, "pvc-warm-up").await;
    let mut raw: Vec<[Duration; 6]> = Vec::new();
    let (mut enforced, mut plain, mut expands) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..SIZE_SAMPLES {
        raw.push(raw_enforced(&driver, &format!("raw-q-{i}")));
        let (volume, took) = create_with(&driver, &format!("pvc-q-{i}"), &[]).await;
        enforced.push(took);
        plain.push(create(&driver, &format!("pvc-plain-{i}")).await.1);
        let started = Instant::now();
        driver
            .controller()
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: volume.volume_id.clone(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 2 << 30,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        expands.push(started.elapsed());
    }
    let step = |n: usize| median(raw.iter().map(|r| r[n]).collect());
    let raw_total = median(raw.iter().map(|r| r.iter().sum()).collect());
    let (enforced, plain) = (median(enforced), median(plain));
    report.add(
        "CreateVolume median with quota vs the raw commands it runs (create, set, set, start, quota enable, limit-usage)",
        format!(
            "{:.0} ms vs {:.0} ms ({:+.1}%; raw steps {:.0}/{:.0}/{:.0}/{:.0}/{:.0}/{:.0} ms)",
            ms(enforced),
            ms(raw_total),
            (ms(enforced) / ms(raw_total) - 1.0) * 100.0,
            ms(step(0)),
            ms(step(1)),
            ms(step(2)),
            ms(step(3)),
            ms(step(4)),
            ms(step(5)),
        ),
        "overhead <= 5%",
    );
    report.add(
        "CreateVolume median with quota vs enforceCapacity false",
        format!(
            "{:.0} ms vs {:.0} ms (+{:.0} ms)",
            ms(enforced),
            ms(plain),
            ms(enforced) - ms(plain)
        ),
        "(quota enable is glusterd's)",
    );
    report.add(
        "ControllerExpandVolume median",
        format!("{:.0} ms", ms(median(expands))),
        "(no target)",
    );
}

/// Sequential latencies on one cluster.
async fn latency(report: &mut Report) {
    println!("latency (one dev cluster, {SAMPLES} samples each, medians)");
    let mut driver = DevDriver::start().await;
    let pid = driver_pid(&driver);
    report.add(
        "driver RSS idle",
        format!("{:.1} MiB", rss_kib(pid as i32) as f64 / 1024.0),
        "<= 20 MiB",
    );
    // One started volume first: the first start on a cluster also starts
    // the self-heal daemons (~2 s) and would skew whichever side goes first.
    create(&driver, "pvc-warm-up").await;

    let mut raw = Vec::new();
    let mut ours = Vec::new();
    for i in 0..SAMPLES {
        raw.push(raw_create_and_start(&driver, &format!("raw-{i}")));
        ours.push(create(&driver, &format!("pvc-bench-{i}")).await.1);
    }
    let (raw, ours) = (median(raw), median(ours));
    report.add(
        "CreateVolume median vs raw `volume create` + `volume start`",
        format!(
            "{:.0} ms vs {:.0} ms ({:+.1}%)",
            ms(ours),
            ms(raw),
            (ms(ours) / ms(raw) - 1.0) * 100.0
        ),
        "overhead <= 5%",
    );

    let (volume, _) = create(&driver, "pvc-mounts").await;
    let staging = driver.staging_path("pvc-mounts");
    let raw_dir = driver.kubelet.path().join("raw-mount");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let mut raw_mounts = Vec::new();
    let mut stages = Vec::new();
    for _ in 0..SAMPLES {
        raw_mounts.push(raw_mount(&volume, &raw_dir));
        stages.push(stage_cycle(&driver, &volume, &staging).await);
    }
    let all_up = median(stages);
    report.add(
        "NodeStageVolume median vs raw `mount -t glusterfs`",
        format!("{:.1} ms vs {:.1} ms", ms(all_up), ms(median(raw_mounts))),
        "(no target)",
    );

    let mut node = driver.node();
    node.node_stage_volume(stage_request(&volume, &staging))
        .await
        .unwrap();
    let mut publishes = Vec::new();
    for i in 0..SAMPLES * 2 {
        let target = driver.target_path(&format!("pod-{i}"), "pvc-mounts");
        let started = Instant::now();
        node.node_publish_volume(publish_request(&volume, &staging, &target, false))
            .await
            .unwrap();
        publishes.push(started.elapsed());
        node.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: volume.volume_id.clone(),
            target_path: target.to_string_lossy().into_owned(),
        })
        .await
        .unwrap();
    }
    report.add(
        "NodePublishVolume median",
        format!("{:.2} ms", ms(median(publishes))),
        "<= 5 ms",
    );
    node.node_unstage_volume(NodeUnstageVolumeRequest {
        volume_id: volume.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into_owned(),
    })
    .await
    .unwrap();

    let primary = volume.volume_context["server"].clone();
    driver.stop_glusterd(&primary);
    let mut down = Vec::new();
    let mut raw_down = Vec::new();
    for _ in 0..5 {
        down.push(stage_cycle(&driver, &volume, &staging).await);
        raw_down.push(raw_mount(&volume, &raw_dir));
    }
    let down = median(down);
    report.add(
        "NodeStageVolume with the primary's glusterd down vs all up",
        format!(
            "{:.1} ms vs {:.1} ms ({:.2}x; raw mount with that primary: {:.0} ms)",
            ms(down),
            ms(all_up),
            ms(down) / ms(all_up),
            ms(median(raw_down))
        ),
        "<= 1.5x",
    );
    driver.start_glusterd(&primary);
}

fn driver_pid(driver: &DevDriver) -> u32 {
    driver.pid()
}

/// 50 CreateVolume at once on a fresh cluster; memory after.
async fn parallel_driver(report: &mut Report) {
    println!("{PARALLEL} parallel CreateVolume (fresh dev cluster)");
    let driver = DevDriver::start().await;
    create(&driver, "pvc-warm-up").await;
    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..PARALLEL {
        let mut controller = driver.controller();
        let request = create_request(&format!("pvc-par-{i}"), &[]);
        creates.spawn(async move { controller.create_volume(request).await.map(drop) });
    }
    while let Some(result) = creates.join_next().await {
        result.unwrap().unwrap();
    }
    let wall = started.elapsed();
    PARALLEL_WALL.set(wall).unwrap();
    report.add(
        &format!("{PARALLEL} parallel CreateVolume, wall time"),
        format!("{:.2} s", wall.as_secs_f64()),
        "(see ratio)",
    );
    let pid = driver_pid(&driver);
    let memory = |pid| {
        let (sessions, session_kib) = session_rss_kib(pid);
        format!(
            "{:.1} MiB (gluster CLI sessions beside it: {sessions}, {:.1} MiB)",
            rss_kib(pid as i32) as f64 / 1024.0,
            session_kib as f64 / 1024.0
        )
    };
    report.add(
        &format!("driver RSS right after {} volumes", PARALLEL + 1),
        memory(pid),
        "<= 20 MiB",
    );
    // Idle sessions beyond one end after 30 s.
    let settled = Instant::now();
    while session_rss_kib(pid).0 > 1 && settled.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report.add(
        &format!("driver RSS after {} volumes, once idle", PARALLEL + 1),
        memory(pid),
        "<= 20 MiB",
    );
}

static PARALLEL_WALL: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Mounts that survive: how long a pod's view of a volume is dead after its
/// FUSE client is killed; write errors while the node plugin is killed and
/// started again 20 times; what the plugin's container holds with 20
/// volumes staged.
async fn survival(report: &mut Report) {
    use common::pods::{Pod, fuse_client_of};
    println!("survival (dev clusters, node plugins run as containers)");
    common::runtime::reap_orphaned_gluster_processes();
    let driver = DevDriver::start().await;
    let (volume, _) = create(&driver, "pvc-heal").await;
    let staging = driver.staging_path("pvc-heal");
    let target = driver.target_path("pod", "pvc-heal");
    stage_and_publish(&mut driver.node(), &volume, &staging, &target).await;
    let mut pod = Pod::start(&target, &driver.kubelet.path().join("views"), "app");
    let raw_dir = driver.kubelet.path().join("raw-mount");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let mut dead_for = Vec::new();
    let mut raw_mounts = Vec::new();
    for _ in 0..5 {
        let client = fuse_client_of(&staging).unwrap();
        let killed = std::time::SystemTime::now();
        sigkill(client);
        pod.expect("error", Duration::from_secs(10));
        let recovered = pod.expect("recovered", Duration::from_secs(30));
        let at = recovered["at"].as_f64().unwrap();
        let since_epoch = killed.duration_since(std::time::UNIX_EPOCH).unwrap();
        dead_for.push(Duration::from_secs_f64(at - since_epoch.as_secs_f64()));
        raw_mounts.push(raw_mount(&volume, &raw_dir));
    }
    let took: Vec<Duration> = driver
        .log()
        .lines()
        .filter(|l| l.contains("dead FUSE mount healed"))
        .filter_map(|l| {
            l.split("took_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .map(Duration::from_millis)
        .collect();
    let worst = dead_for.iter().max().copied().unwrap_or_default();
    report.add(
        "FUSE client killed -> the pod's own view works again (median, worst of 5)",
        format!(
            "{:.2} s, {:.2} s (watch interval 1 s; remount + repair median {:.0} ms vs raw `mount -t glusterfs` {:.0} ms)",
            median(dead_for).as_secs_f64(),
            worst.as_secs_f64(),
            ms(median(took)),
            ms(median(raw_mounts))
        ),
        "<= 5 s",
    );
    drop(pod);
    drop(driver);

    for mounter in ["cgroup", "systemd"] {
        let figures = common::drills::survive_restarts(mounter).await;
        report.add(
            &format!("write errors of 5 pods across 20 node plugin restarts ({mounter} mounter)"),
            format!(
                "{} of {} writes (restart to serving: median {:.0} ms)",
                figures.write_errors,
                figures.writes,
                ms(figures.restart_median)
            ),
            "0",
        );
    }

    for mounter in ["cgroup", "inline"] {
        let figures = common::drills::density(mounter, 20).await;
        report.add(
            &format!("node plugin with 20 volumes staged ({mounter} mounter)"),
            format!(
                "plugin {:.1} MiB; its container {:.1} MiB; the 20 FUSE clients {:.1} MiB",
                figures.plugin_kib as f64 / 1024.0,
                figures.container_kib as f64 / 1024.0,
                figures.clients_kib as f64 / 1024.0
            ),
            "clients outside the container",
        );
    }
}

/// The same 50 volumes made with the raw CLI, one after another.
async fn parallel_raw(report: &mut Report) {
    println!("{PARALLEL} raw create+start, one after another (fresh dev cluster)");
    let driver = DevDriver::start().await;
    create(&driver, "pvc-warm-up").await;
    let started = Instant::now();
    for i in 0..PARALLEL {
        raw_create_and_start(&driver, &format!("raw-seq-{i}"));
    }
    let sequential = started.elapsed();
    let parallel = *PARALLEL_WALL.get().unwrap();
    report.add(
        &format!("{PARALLEL} parallel CreateVolume vs {PARALLEL} sequential raw create+start"),
        format!(
            "{:.2} s vs {:.2} s ({:.2}x)",
            parallel.as_secs_f64(),
            sequential.as_secs_f64(),
            parallel.as_secs_f64() / sequential.as_secs_f64()
        ),
        "<= 0.7x",
    );
}

/// ControllerGetVolume over 50 volumes (what the external-health-monitor
/// asks every minute), against the raw reads it runs for each: `volume
/// status V` and glfsheal's `info-summary`.
async fn health(report: &mut Report) {
    println!("health: ControllerGetVolume over {PARALLEL} volumes (fresh dev cluster)");
    let driver = DevDriver::start().await;
    let mut volumes = Vec::new();
    for _ in 0..PARALLEL {
        volumes.push(create(&driver, &pvc_name()).await.0);
    }
    let socket = driver.cluster.servers[0].glusterd_socket.clone();
    let glfsheal = glusterfs_csi::gluster::transport::glfsheal_program();
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    let all = Instant::now();
    for volume in &volumes {
        let started = Instant::now();
        let answer = driver
            .controller()
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: volume.volume_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        ours.push(started.elapsed());
        let condition = answer.status.unwrap().volume_condition.unwrap();
        assert!(!condition.abnormal, "{}", condition.message);
    }
    let sweep = all.elapsed();
    for volume in &volumes {
        let name = &volume.volume_context["volume"];
        let started = Instant::now();
        raw_gluster(&socket, &["volume", "status", name]);
        let heal = Command::new(&glfsheal)
            .args([name.as_str(), "info-summary", "--xml", "glusterd-sock"])
            .arg(&socket)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&heal.stdout).contains("<opRet>0</opRet>"));
        raw.push(started.elapsed());
    }
    let started = Instant::now();
    driver
        .controller()
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap();
    let list = started.elapsed();
    report.add(
        &format!(
            "ControllerGetVolume median over {PARALLEL} volumes vs raw `volume status` + glfsheal"
        ),
        format!(
            "{:.1} ms vs {:.1} ms ({:.2} s for all {PARALLEL}; ListVolumes {:.0} ms)",
            ms(median(ours)),
            ms(median(raw)),
            sweep.as_secs_f64(),
            ms(list)
        ),
        "cheap enough for every volume every minute",
    );
}

/// Volume churn as the external-provisioner drives it (10 s deadline,
/// retries with backoff): 100 PVCs created and deleted by 10 workers, with
/// sizes enforced (the default on 10.x) and without (the CI drill's class).
async fn churn(report: &mut Report) {
    for (label, parameters) in [
        ("quota", &[][..]),
        ("enforceCapacity false", &[("enforceCapacity", "false")][..]),
    ] {
        churn_with(report, label, parameters).await;
    }
}

async fn churn_with(report: &mut Report, label: &str, parameters: &[(&str, &str)]) {
    use common::churn::{churn, quantile};
    println!(
        "churn ({label}): 100 create/delete at concurrency 10, 10 s client deadline (fresh dev \
         cluster)"
    );
    let driver = DevDriver::start().await;
    let run = churn(driver.channel.clone(), 100, 10, parameters).await;
    assert!(run.errors.is_empty(), "{:#?}", run.errors);
    let seconds = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    report.add(
        &format!("churn ({label}): 100 create/delete at concurrency 10, wall time"),
        seconds(run.wall),
        "",
    );
    report.add(
        &format!("churn ({label}): CreateVolume p50 / p99, first attempt to success"),
        format!(
            "{} / {}",
            seconds(quantile(run.creates(), 0.5)),
            seconds(quantile(run.creates(), 0.99))
        ),
        "",
    );
    report.add(
        &format!("churn ({label}): DeleteVolume p50 / p99, first attempt to success"),
        format!(
            "{} / {}",
            seconds(quantile(run.deletes(), 0.5)),
            seconds(quantile(run.deletes(), 0.99))
        ),
        "p99 < 300 s (the chart's provisioner --timeout)",
    );
    report.add(
        &format!("churn ({label}): client retries (DEADLINE_EXCEEDED / ABORTED / UNAVAILABLE)"),
        format!(
            "{} ({} / {} / {})",
            run.retries(),
            run.failures_with(tonic::Code::DeadlineExceeded),
            run.failures_with(tonic::Code::Aborted),
            run.failures_with(tonic::Code::Unavailable)
        ),
        "",
    );
    report.add(
        &format!("churn ({label}): volumes left"),
        driver.volume_names().len().to_string(),
        "0",
    );
}

/// PVCs per density figure: server memory per PVC is read after this many.
const DENSITY_PVCS: usize = 50;
/// Deleted in parallel for the delete figure (of the DENSITY_PVCS).
const DENSITY_DELETES: usize = 20;

/// A label, whether bricks are multiplexed, and the class's parameters.
type DensitySetting = (&'static str, bool, &'static [(&'static str, &'static str)]);

/// Small nodes: brick processes, server memory per PVC and parallel deletes
/// without brick multiplexing (with and without quota) and with it, each on
/// a fresh dev cluster.
async fn density(report: &mut Report) {
    let settings: [DensitySetting; 3] = [
        ("multiplexing off, quota", false, &[]),
        (
            "multiplexing off, no quota",
            false,
            &[("enforceCapacity", "false")],
        ),
        ("multiplexing on (no quota)", true, &[]),
    ];
    for (label, multiplex, parameters) in settings {
        println!("density, {label} (fresh dev cluster)");
        let driver = DevDriver::start_with(&[format!("--brick-multiplex={multiplex}")]).await;
        let before = gluster_rss_kib(&driver);
        let started = Instant::now();
        let mut creates = tokio::task::JoinSet::new();
        for i in 0..DENSITY_PVCS {
            let mut controller = driver.controller();
            let request = create_request(&format!("pvc-density-{i}"), parameters);
            creates.spawn(async move {
                let began = Instant::now();
                let volume = controller.create_volume(request).await;
                (volume, began.elapsed())
            });
        }
        let mut ids = Vec::new();
        let mut latencies = Vec::new();
        while let Some(result) = creates.join_next().await {
            let (volume, took) = result.unwrap();
            ids.push(volume.unwrap().into_inner().volume.unwrap().volume_id);
            latencies.push(took);
        }
        let create_wall = started.elapsed();
        // Quota's crawl clients and the bricks' start settle first.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = gluster_rss_kib(&driver);
        let processes = driver.brick_processes();
        let per_server: Vec<usize> = processes.values().map(|p| p.len()).collect();
        report.add(
            &format!("{label}: brick processes per server after {DENSITY_PVCS} PVCs"),
            format!("{per_server:?}"),
            "1 with multiplexing",
        );
        report.add(
            &format!("{label}: {DENSITY_PVCS} parallel CreateVolume"),
            format!(
                "wall {:.1} s, median {:.2} s",
                create_wall.as_secs_f64(),
                median(latencies).as_secs_f64()
            ),
            "",
        );
        report.add(
            &format!(
                "{label}: server memory (all gluster processes of 3 servers) per PVC after \
                 {DENSITY_PVCS}"
            ),
            format!(
                "{:.1} MiB ({:.0} MiB before, {:.0} MiB after)",
                (after.saturating_sub(before)) as f64 / 1024.0 / DENSITY_PVCS as f64,
                before as f64 / 1024.0,
                after as f64 / 1024.0
            ),
            "<= 12 MB with multiplexing",
        );
        let (now, later) = ids.split_at(DENSITY_DELETES);
        let deleted = delete_all(&driver, now).await;
        report.add(
            &format!("{label}: {DENSITY_DELETES} parallel DeleteVolume"),
            format!("{:.1} s", deleted.as_secs_f64()),
            "<= 8 s with multiplexing",
        );
        delete_all(&driver, later).await;
    }
}

/// Deletes the volumes in parallel; the wall time.
async fn delete_all(driver: &DevDriver, ids: &[String]) -> Duration {
    let started = Instant::now();
    let mut deletes = tokio::task::JoinSet::new();
    for id in ids {
        let mut controller = driver.controller();
        let request = DeleteVolumeRequest {
            volume_id: id.clone(),
            ..Default::default()
        };
        deletes.spawn(async move { controller.delete_volume(request).await });
    }
    while let Some(result) = deletes.join_next().await {
        result.unwrap().unwrap();
    }
    started.elapsed()
}

/// Resident memory of every gluster process of the dev cluster (glusterd,
/// bricks, self-heal daemon, quotad), in KiB.
fn gluster_rss_kib(driver: &DevDriver) -> u64 {
    driver
        .cluster
        .processes()
        .iter()
        .map(|(pid, _)| rss_kib(*pid))
        .sum()
}

/// The pool subdirectory-mode figures use.
const BENCH_POOL: &str = "bench-pool";
/// PVCs published at once for the FUSE client memory figure.
const PUBLISHED: usize = 20;

/// Subdirectory mode against volume mode: CreateVolume one at a time on a
/// cluster without multiplexing, where both modes enforce sizes, then on a
/// multiplexed one (as dev runs by default), where volume mode does not;
/// there also server memory per additional PVC, and the FUSE client memory
/// of a node with 20 PVCs staged, one client per PVC against one client
/// for the whole pool (`poolMount: shared`), and what each costs a
/// NodeStageVolume.
async fn subdirectory(report: &mut Report) {
    println!(
        "subdirectory mode vs volume mode, sizes enforced (fresh dev cluster, not multiplexed)"
    );
    {
        let driver = DevDriver::start_with(&["--brick-multiplex=false".to_string()]).await;
        let pool = [("pool", BENCH_POOL)];
        create_with(&driver, "pvc-sub-first", &pool).await;
        let (volume_median, directory_median) =
            create_medians(&driver, SIZE_SAMPLES, &pool, &[]).await;
        report.add(
            &format!(
                "CreateVolume median of {SIZE_SAMPLES}, sizes enforced (no multiplexing): volume \
                 mode (quota) vs subdirectory mode (directory quota)"
            ),
            versus(volume_median, directory_median),
            "subdirectory <= 0.25x",
        );
    }
    println!("subdirectory mode (fresh dev cluster, multiplexed)");
    let driver = DevDriver::start_with(&["--brick-multiplex=true".to_string()]).await;
    let pool = [("pool", BENCH_POOL)];
    // The pool is made by the first PVC: its cost is measured apart.
    let before_pool = gluster_rss_kib(&driver);
    let (_, first) = create_with(&driver, "pvc-sub-first", &pool).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let with_pool = gluster_rss_kib(&driver);
    report.add(
        "subdirectory: first CreateVolume (makes the pool)",
        format!(
            "{:.2} s; pool costs {:.0} MiB of server memory",
            first.as_secs_f64(),
            with_pool.saturating_sub(before_pool) as f64 / 1024.0
        ),
        "",
    );
    let (volume_median, directory_median) = create_medians(&driver, SAMPLES, &pool, &[]).await;
    report.add(
        &format!(
            "CreateVolume median of {SAMPLES}, multiplexed: volume mode (size not enforced) \
             vs subdirectory mode (directory quota)"
        ),
        versus(volume_median, directory_median),
        "subdirectory <= 0.25x",
    );
    // Like for like on this cluster: neither mode enforces a size.
    let unenforced = [("pool", BENCH_POOL), ("enforceCapacity", "false")];
    let (volume_median, directory_median) =
        create_medians(&driver, SAMPLES, &unenforced, &[]).await;
    report.add(
        &format!(
            "CreateVolume median of {SAMPLES}, multiplexed, no size enforced in either: volume \
             mode vs subdirectory mode"
        ),
        versus(volume_median, directory_median),
        "subdirectory <= 0.25x",
    );
    tokio::time::sleep(Duration::from_secs(5)).await;

    let before = gluster_rss_kib(&driver);
    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..DENSITY_PVCS {
        let mut controller = driver.controller();
        let request = create_request(&format!("pvc-sub-density-{i}"), &pool);
        creates.spawn(async move { controller.create_volume(request).await });
    }
    let mut made = Vec::new();
    while let Some(result) = creates.join_next().await {
        made.push(result.unwrap().unwrap().into_inner().volume.unwrap());
    }
    let wall = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = gluster_rss_kib(&driver);
    report.add(
        &format!("subdirectory: {DENSITY_PVCS} parallel CreateVolume"),
        format!("wall {:.2} s", wall.as_secs_f64()),
        "",
    );
    report.add(
        &format!(
            "subdirectory: server memory (all gluster processes of 3 servers) per PVC after \
             {DENSITY_PVCS}"
        ),
        format!(
            "{:.2} MiB ({:.0} MiB before, {:.0} MiB after)",
            after.saturating_sub(before) as f64 / 1024.0 / DENSITY_PVCS as f64,
            before as f64 / 1024.0,
            after as f64 / 1024.0
        ),
        "<= 1 MB",
    );

    // A node with PUBLISHED PVCs staged: one FUSE client each, then the
    // same PVCs with `poolMount: shared` (one client of the pool, a bind
    // mount each).
    let mut node = driver.node();
    let mut stage_times: [Vec<Duration>; 2] = Default::default();
    let mut clients = [(0, 0); 2];
    for (mode, shared) in [false, true].into_iter().enumerate() {
        let staged: Vec<(Volume, std::path::PathBuf)> = made[..PUBLISHED]
            .iter()
            .map(|v| {
                let mut v = v.clone();
                if shared {
                    v.volume_context
                        .insert("poolMount".to_string(), "shared".to_string());
                }
                let name = format!("{mode}-{}", v.volume_id.replace('/', "-"));
                (v, driver.staging_path(&name))
            })
            .collect();
        for (volume, staging) in &staged {
            let started = Instant::now();
            node.node_stage_volume(stage_request(volume, staging))
                .await
                .unwrap();
            stage_times[mode].push(started.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        clients[mode] = if shared {
            let pool_mounts = driver.cluster.state_dir.join("node/pool-mounts");
            let paths: Vec<std::path::PathBuf> = std::fs::read_dir(&pool_mounts)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            fuse_clients_rss_kib(paths.iter().map(|p| p.as_path()))
        } else {
            fuse_clients_rss_kib(staged.iter().map(|(_, s)| s.as_path()))
        };
        for (volume, staging) in &staged {
            node.node_unstage_volume(NodeUnstageVolumeRequest {
                volume_id: volume.volume_id.clone(),
                staging_target_path: staging.to_string_lossy().into_owned(),
            })
            .await
            .unwrap();
        }
    }
    let [own, shared] = clients;
    report.add(
        &format!("FUSE client memory of a node with {PUBLISHED} PVCs staged"),
        format!(
            "{:.0} MiB with a client per PVC ({} clients, {:.1} MiB each) vs {:.1} MiB with \
             poolMount: shared ({} client)",
            own.1 as f64 / 1024.0,
            own.0,
            own.1 as f64 / 1024.0 / own.0.max(1) as f64,
            shared.1 as f64 / 1024.0,
            shared.0
        ),
        "",
    );
    let first_shared = stage_times[1][0];
    let [own_times, shared_times] = stage_times;
    report.add(
        &format!("NodeStageVolume median of {PUBLISHED}: own FUSE mount vs poolMount: shared"),
        format!(
            "{:.1} ms vs {:.1} ms (the first of a pool, which mounts it: {:.1} ms)",
            ms(median(own_times)),
            ms(median(shared_times)),
            ms(first_shared)
        ),
        "",
    );
    let ids: Vec<String> = made.iter().map(|v| v.volume_id.clone()).collect();
    let deleted = delete_all(&driver, &ids).await;
    report.add(
        &format!("subdirectory: {DENSITY_PVCS} parallel DeleteVolume"),
        format!("{:.2} s", deleted.as_secs_f64()),
        "",
    );
}

/// CreateVolume one at a time, alternating: volume mode with `volume`'s
/// parameters, subdirectory mode in `pool`; the medians. Deletes both.
async fn create_medians(
    driver: &DevDriver,
    samples: usize,
    pool: &[(&str, &str)],
    volume: &[(&str, &str)],
) -> (Duration, Duration) {
    let mut volume_mode = Vec::new();
    let mut directory_mode = Vec::new();
    let mut made = Vec::new();
    for i in 0..samples {
        let (v, took) = create_with(driver, &format!("pvc-vol-{i}"), volume).await;
        volume_mode.push(took);
        made.push(v);
        let (v, took) = create_with(driver, &format!("pvc-sub-{i}"), pool).await;
        directory_mode.push(took);
        made.push(v);
    }
    let mut controller = driver.controller();
    for v in &made {
        delete_as_the_provisioner_does(&mut controller, v).await;
    }
    (median(volume_mode), median(directory_mode))
}

/// How many gluster FUSE clients serve the mounts at `mount_points`, and
/// their resident memory in KiB.
fn fuse_clients_rss_kib<'a>(mount_points: impl Iterator<Item = &'a Path>) -> (usize, u64) {
    let pids: Vec<i32> = mount_points.filter_map(pods::fuse_client_of).collect();
    (pids.len(), pids.iter().map(|pid| rss_kib(*pid)).sum())
}
