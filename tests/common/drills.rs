//! The node-plugin restart drill, shared by the survival tests and the
//! benchmark: volumes staged, published and written to by pods while the
//! plugin is killed as a container runtime kills it, and started again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::pods::{Pod, fuse_client_of};
use super::runtime::*;
use super::*;
use glusterfs_csi::proto::csi::*;

const VOLUMES: usize = 5;
const RESTARTS: usize = 20;

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

/// A dev cluster for volumes, the kubelet directory shared with the
/// plugin, and cgroups for the plugin's incarnations.
pub struct Stage {
    pub driver: DevDriver,
    pub home: tempfile::TempDir,
    pub views: PathBuf,
    pub id: String,
    // Drop order: mounts first, then cgroups.
    pub shared: Option<SharedKubeletDir>,
    pub fuse: TestCgroup,
    pub scopes: TestCgroup,
    pub containers: TestCgroup,
    _parent: TestCgroup,
}

impl Stage {
    pub async fn new() -> Stage {
        reap_orphaned_gluster_processes();
        let driver = DevDriver::start().await;
        let shared = SharedKubeletDir::new(driver.kubelet.path());
        let home = tempfile::Builder::new()
            .prefix("node-plugin-")
            .tempdir()
            .unwrap();
        let views = home.path().join("views");
        let id = unique("glusterfs-csi-test");
        let parent = TestCgroup::create(Path::new(&id));
        Stage {
            _parent: parent,
            driver,
            views,
            containers: TestCgroup::create(&Path::new(&id).join("containers")),
            scopes: TestCgroup::create(&Path::new(&id).join("scopes")),
            fuse: TestCgroup::existing(Path::new(&format!("{id}-fuse"))),
            shared: Some(shared),
            home,
            id,
        }
    }

    pub fn setup(&self, mounter: &'static str, own_pid_namespace: bool) -> PluginSetup {
        PluginSetup::for_mounter(mounter, own_pid_namespace, &self.fuse, &self.scopes)
    }

    pub async fn plugin(&self, setup: &PluginSetup, incarnation: usize) -> NodePlugin {
        let cgroup = TestCgroup::create(
            &self
                .containers
                .relative()
                .join(format!("plugin-{incarnation}")),
        );
        NodePlugin::start(self.home.path(), setup, cgroup, incarnation).await
    }

    pub async fn create(&self, count: usize) -> Vec<Volume> {
        let mut volumes = Vec::new();
        for _ in 0..count {
            volumes.push(create_volume(&self.driver, &pvc_name()).await);
        }
        volumes
    }

    pub fn staging(&self, volume: &Volume) -> PathBuf {
        self.driver.staging_path(&volume.volume_id)
    }

    pub fn target(&self, volume: &Volume) -> PathBuf {
        self.driver.target_path("pod", &volume.volume_id)
    }

    /// NodeStage and NodePublish, as the kubelet calls them.
    pub async fn mount(&self, plugin: &NodePlugin, volume: &Volume) {
        let (staging, target) = (self.staging(volume), self.target(volume));
        stage_and_publish(&mut plugin.node(), volume, &staging, &target).await;
    }

    pub async fn unmount_and_delete(&self, plugin: &NodePlugin, volumes: &[Volume]) {
        let mut node = plugin.node();
        let mut controller = self.driver.controller();
        for volume in volumes {
            unpublish_and_unstage(
                &mut node,
                volume,
                &self.staging(volume),
                &self.target(volume),
            )
            .await;
            assert!(mounts_at(&self.staging(volume)).is_empty());
            delete_as_the_provisioner_does(&mut controller, volume).await;
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Everything under the kubelet directory is unmounted first, so
        // the FUSE clients end and their cgroups can go.
        self.shared.take();
        wait_until(Duration::from_secs(20), || {
            self.fuse.pids().is_empty() || std::thread::panicking()
        });
    }
}

/// Which cgroup a process is in, in the v2 hierarchy.
fn cgroup_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default()
        .to_string()
}

/// 5 volumes, staged, published and written to by a pod each; the node
/// plugin killed as runc kills a container and started again 20 times.
/// The FUSE clients never die, the pods never see an error, and every
/// line each pod wrote before, during and after reads back.
pub async fn survive_restarts(mounter: &'static str) -> DrillFigures {
    let stage = Stage::new().await;
    let setup = stage.setup(mounter, false);
    let mut plugin = stage.plugin(&setup, 0).await;
    let volumes = stage.create(VOLUMES).await;
    let mut pods = Vec::new();
    let mut clients = Vec::new();
    for (n, volume) in volumes.iter().enumerate() {
        stage.mount(&plugin, volume).await;
        let client = fuse_client_of(&stage.staging(volume)).expect("a FUSE client");
        let in_cgroup = cgroup_of(client);
        assert!(
            !in_cgroup.contains("/containers/"),
            "the FUSE client runs outside the plugin's container: {in_cgroup}"
        );
        let expected = match mounter {
            "systemd" => format!("/{}/scopes/run-", stage.id),
            _ => format!("/{}-fuse", stage.id),
        };
        assert!(
            in_cgroup.contains(&expected),
            "{in_cgroup} (wanted {expected})"
        );
        clients.push(client);
        pods.push(Pod::start(
            &stage.target(volume),
            &stage.views,
            &format!("app{n}"),
        ));
    }
    let lines = |volume: &Volume| {
        std::fs::read_dir(stage.staging(volume))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|t| t.lines().count())
            .sum::<usize>()
    };
    wait_until(Duration::from_secs(30), || {
        volumes.iter().all(|v| lines(v) >= 10)
    });

    let mut restart_times = Vec::new();
    for incarnation in 1..=RESTARTS {
        plugin.kill();
        for client in &clients {
            assert!(alive(*client), "FUSE client {client} died with the plugin");
        }
        let started = std::time::Instant::now();
        plugin = stage.plugin(&setup, incarnation).await;
        restart_times.push(started.elapsed());
        assert!(
            plugin
                .log_text()
                .contains(&format!("staged_volumes_adopted={VOLUMES}")),
            "{}",
            plugin.log_text()
        );
        for (volume, client) in volumes.iter().zip(&clients) {
            // The kubelet may call these again; nothing is mounted twice.
            stage.mount(&plugin, volume).await;
            assert_eq!(mounts_at(&stage.staging(volume)).len(), 1);
            assert_eq!(fuse_client_of(&stage.staging(volume)), Some(*client));
        }
        for pod in pods.iter_mut() {
            let error = pod.maybe("error", Duration::ZERO);
            assert!(error.is_none(), "restart {incarnation}: {error:?}");
        }
    }
    // Writes after the last restart too.
    let before = volumes.iter().map(&lines).collect::<Vec<_>>();
    wait_until(Duration::from_secs(30), || {
        volumes.iter().zip(&before).all(|(v, b)| lines(v) >= b + 10)
    });

    let mut figures = DrillFigures {
        restart_median: {
            restart_times.sort();
            restart_times[restart_times.len() / 2]
        },
        ..Default::default()
    };
    for pod in pods {
        let report = pod.stop();
        figures.writes += report["written"].as_u64().unwrap();
        figures.write_errors += report["errors"].as_u64().unwrap();
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["exact"], true, "every line reads back: {report}");
    }
    figures.plugin_rss_kib = rss_kib(plugin.pid());
    stage.unmount_and_delete(&plugin, &volumes).await;
    plugin.kill();
    figures
}

#[derive(Debug, Default)]
pub struct DrillFigures {
    pub writes: u64,
    pub write_errors: u64,
    pub restart_median: Duration,
    pub plugin_rss_kib: u64,
}

/// Memory of a node plugin container with `count` volumes staged: the
/// plugin's own RSS, all processes of its container, the FUSE clients.
#[derive(Debug, Default)]
pub struct Density {
    pub plugin_kib: u64,
    pub container_kib: u64,
    pub clients_kib: u64,
}

pub async fn density(mounter: &'static str, count: usize) -> Density {
    let stage = Stage::new().await;
    let plugin = stage.plugin(&stage.setup(mounter, false), 0).await;
    let volumes = stage.create(count).await;
    let mut node = plugin.node();
    for volume in &volumes {
        node.node_stage_volume(stage_request(volume, &stage.staging(volume)))
            .await
            .unwrap();
    }
    let clients: Vec<i32> = volumes
        .iter()
        .map(|v| fuse_client_of(&stage.staging(v)).expect("a FUSE client"))
        .collect();
    let figures = Density {
        plugin_kib: rss_kib(plugin.pid()),
        container_kib: plugin.container_pids().into_iter().map(rss_kib).sum(),
        clients_kib: clients.into_iter().map(rss_kib).sum(),
    };
    let mut controller = stage.driver.controller();
    for volume in &volumes {
        node.node_unstage_volume(unstage_request(volume, &stage.staging(volume)))
            .await
            .unwrap();
        controller
            .delete_volume(delete_volume_request(volume))
            .await
            .unwrap();
    }
    plugin.kill();
    figures
}
