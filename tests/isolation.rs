//! Tenant isolation against real clusters (`glusterfs-csi dev` with the
//! controller's isolation flags): TLS between FUSE clients and bricks lets
//! in only certificates of the CA with an allowed common name, and the
//! address allow-list only the listed addresses; bad settings are refused.
//! Needs root, glusterfs-server, openssl, iproute2, unshare, nsenter,
//! /dev/fuse and cgroup v2 (see README).
//!
//! Every dev "server" runs on this machine, so the servers' certificate
//! directory is also the dev node plugin's: the servers' certificate sits
//! there in this mount namespace, and a node plugin run as a container
//! (its own mount namespace, as in tests/survival.rs) gets its own
//! certificate bound over the same path inside its namespace only, as the
//! chart mounts a Secret there.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pods::fuse_client_of;
use common::runtime::{
    NodePlugin, PluginSetup, SharedKubeletDir, TestCgroup, reap_orphaned_gluster_processes, unique,
};
use common::*;
use glusterfs_csi::proto::csi::Volume;
use tonic::Code;

const SERVER_CN: &str = "gluster-server";
const NODE_CN: &str = "csi-node-a";

/// Runs a command that must succeed; returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A CA and the identities the test plays, each a directory holding
/// glusterfs.pem, glusterfs.key and glusterfs.ca as gluster expects them.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("glusterfs-csi-pki-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let at = |name: &str| root.join(name).to_string_lossy().into_owned();
        let (ca_key, ca) = (at("ca.key"), at("ca.pem"));
        let subject = |cn: &str| format!("/CN={cn}");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
                "-subj",
                &subject("glusterfs-csi-test-ca"),
            ],
        );
        let pki = Pki { dir };
        // Signed by the CA: the servers, an allowed node, a node not allowed.
        for (identity, cn, serial) in [
            ("server", SERVER_CN, "1"),
            ("node-a", NODE_CN, "2"),
            ("intruder", "csi-intruder", "3"),
        ] {
            let (key, csr, cert) = (
                at(&format!("{identity}.key")),
                at(&format!("{identity}.csr")),
                at(&format!("{identity}.pem")),
            );
            run(
                "openssl",
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &subject(cn),
                ],
            );
            run(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca,
                    "-CAkey",
                    &ca_key,
                    "-set_serial",
                    serial,
                    "-days",
                    "2",
                    "-out",
                    &cert,
                ],
            );
            pki.identity(identity, &cert, &key, &ca);
        }
        // Self-signed with an allowed name, trusting the real CA (which is
        // no secret) so that only the servers' check can stop it.
        let (key, cert) = (at("rogue.key"), at("rogue.pem"));
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-subj",
                &subject(NODE_CN),
            ],
        );
        pki.identity("rogue", &cert, &key, &ca);
        std::fs::create_dir(pki.dir("none")).unwrap();
        pki
    }

    fn identity(&self, name: &str, cert: &str, key: &str, ca: &str) {
        let dir = self.dir(name);
        std::fs::create_dir(&dir).unwrap();
        for (from, to) in [
            (cert, "glusterfs.pem"),
            (key, "glusterfs.key"),
            (ca, "glusterfs.ca"),
        ] {
            std::fs::copy(from, dir.join(to)).unwrap();
        }
    }

    /// The directory of one identity's files.
    fn dir(&self, identity: &str) -> PathBuf {
        self.dir.path().join(format!("id-{identity}"))
    }
}

/// The certificate directory the controller names in every volume: a
/// private mount of its own holding the servers' identity, so that what a
/// container binds over it in its namespace never reaches this one.
struct CertDir {
    path: PathBuf,
}

impl CertDir {
    fn new(pki: &Pki) -> CertDir {
        let path = pki.dir.path().join("tls");
        std::fs::create_dir(&path).unwrap();
        for file in ["glusterfs.pem", "glusterfs.key", "glusterfs.ca"] {
            std::fs::copy(pki.dir("server").join(file), path.join(file)).unwrap();
        }
        let text = path.to_string_lossy().into_owned();
        run("mount", &["--bind", &text, &text]);
        let dir = CertDir { path };
        run("mount", &["--make-private", &text]);
        dir
    }

    fn flag(&self) -> String {
        format!("--tls-dir={}", self.path.display())
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        if sys_mount::unmount(&self.path, sys_mount::UnmountFlags::empty()).is_err() {
            let _ = sys_mount::unmount(&self.path, sys_mount::UnmountFlags::DETACH);
        }
    }
}

/// Gives a node plugin (a container) `identity`'s certificate at the
/// certificate path, inside its own mount namespace only.
fn wear(plugin: &NodePlugin, certs: &CertDir, pki: &Pki, identity: &str) {
    let namespace = format!("--mount=/proc/{}/ns/mnt", plugin.pid());
    let path = certs.path.to_str().unwrap();
    // Stacked on what it wore before: the private mount below never goes,
    // so nothing bound here can propagate out of the namespace.
    run(
        "nsenter",
        &[
            &namespace,
            "--",
            "mount",
            "--bind",
            pki.dir(identity).to_str().unwrap(),
            path,
        ],
    );
    let seen = run("nsenter", &[&namespace, "--", "ls", path]);
    let expected = if identity == "none" {
        ""
    } else {
        "glusterfs.ca\nglusterfs.key\nglusterfs.pem\n"
    };
    assert_eq!(seen, expected, "{identity} inside the plugin's namespace");
}

/// The options of a gluster volume, from `volume info --xml`.
fn volume_options(driver: &DevDriver, volume: &str) -> BTreeMap<String, String> {
    let xml = driver.gluster(&["volume", "info", volume]);
    let field = |text: &str, tag: &str| {
        let open = format!("<{tag}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{tag}>"))? + start;
        Some(text[start..end].to_string())
    };
    xml.split("<option>")
        .skip(1)
        .filter_map(|o| Some((field(o, "name")?, field(o, "value")?)))
        .collect()
}

/// Whether `path` is on the bricks of `volume` on every server.
fn on_every_brick(driver: &DevDriver, volume: &str, path: &str) -> bool {
    driver
        .cluster
        .addresses()
        .iter()
        .all(|server| driver.brick_dir(server, volume).join(path).exists())
}

fn on_no_brick(driver: &DevDriver, volume: &str, path: &str) -> bool {
    driver
        .cluster
        .addresses()
        .iter()
        .all(|server| !driver.brick_dir(server, volume).join(path).exists())
}

/// Every brick log of every dev server.
fn brick_logs(driver: &DevDriver) -> String {
    let mut text = String::new();
    for server in &driver.cluster.servers {
        for entry in std::fs::read_dir(server.log_dir.join("bricks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

fn is_gluster_mount(path: &Path) -> bool {
    mounts_at(path)
        .iter()
        .any(|m| m.fs_type == "fuse.glusterfs")
}

/// A StorageClass trying to set one of the options isolation decides.
async fn assert_refused_in_storage_classes(driver: &DevDriver, options: &[&str]) {
    let mut controller = driver.controller();
    for option in options {
        let request = create_request(&pvc_name(), &[("volumeOptions", option)]);
        let status = controller.create_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{option}: {status:?}");
        let key = option.split('=').next().unwrap();
        assert!(
            status.message().starts_with(&format!(
                "parameters.volumeOptions: {key:?} decides which clients"
            )),
            "{option}: {}",
            status.message()
        );
    }
}

/// A FUSE client started by hand with the `glusterfs` binary, ended by
/// its pid (from its own pid file) and unmounted on drop.
struct HandClient {
    mount_point: PathBuf,
    pid_file: PathBuf,
}

impl HandClient {
    fn start(dir: &Path, server: &str, volume: &str, options: &[&str]) -> HandClient {
        let mount_point = dir.join("mnt");
        std::fs::create_dir_all(&mount_point).unwrap();
        let client = HandClient {
            pid_file: dir.join("client.pid"),
            mount_point,
        };
        let status = Command::new("glusterfs")
            .arg("--process-name=fuse")
            .arg(format!("--volfile-server={server}"))
            .arg(format!("--volfile-id={volume}"))
            .arg(format!("--log-file={}", dir.join("client.log").display()))
            .arg(format!("--pid-file={}", client.pid_file.display()))
            .args(options)
            .arg(&client.mount_point)
            .status()
            .unwrap();
        eprintln!("glusterfs {options:?}: {status}");
        client
    }
}

impl Drop for HandClient {
    fn drop(&mut self) {
        while is_gluster_mount(&self.mount_point) {
            if sys_mount::unmount(&self.mount_point, sys_mount::UnmountFlags::DETACH).is_err() {
                break;
            }
        }
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "glusterfs" {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Waits until no FUSE client serves `mount_point` any more (a refused one
/// shuts itself down), at most 10 s.
fn wait_for_client_to_end(mount_point: &Path) {
    wait_until(Duration::from_secs(10), || {
        fuse_client_of(mount_point).is_none()
    });
}

/// Node plugins run as containers (their own mount namespace and cgroup),
/// sharing the kubelet directory with this namespace.
struct Containers {
    // Drop order: mounts first, then the cgroups their clients are in.
    shared: Option<SharedKubeletDir>,
    homes: Vec<tempfile::TempDir>,
    fuse: TestCgroup,
    scopes: TestCgroup,
    containers: TestCgroup,
    _parent: TestCgroup,
}

impl Containers {
    fn new(driver: &DevDriver) -> Containers {
        reap_orphaned_gluster_processes();
        let id = unique("csi-iso");
        let parent = TestCgroup::create(Path::new(&id));
        Containers {
            shared: Some(SharedKubeletDir::new(driver.kubelet.path())),
            homes: Vec::new(),
            fuse: TestCgroup::existing(Path::new(&format!("{id}-fuse"))),
            scopes: TestCgroup::create(&Path::new(&id).join("scopes")),
            containers: TestCgroup::create(&Path::new(&id).join("containers")),
            _parent: parent,
        }
    }

    /// A node plugin whose FUSE clients run where `mounter` puts them.
    async fn plugin(&mut self, mounter: &'static str) -> NodePlugin {
        let setup = PluginSetup::for_mounter(mounter, false, &self.fuse, &self.scopes);
        let incarnation = self.homes.len();
        let home = tempfile::Builder::new()
            .prefix("node-plugin-")
            .tempdir()
            .unwrap();
        let cgroup = TestCgroup::create(
            &self
                .containers
                .relative()
                .join(format!("plugin-{incarnation}")),
        );
        let plugin = NodePlugin::start(home.path(), &setup, cgroup, incarnation).await;
        self.homes.push(home);
        plugin
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.shared.take();
        wait_until(Duration::from_secs(20), || {
            self.fuse.pids().is_empty() || std::thread::panicking()
        });
    }
}

/// With `--tls`: the volume carries the TLS options from its first start;
/// the node plugin mounts and writes it (all three bricks get the data);
/// node plugins in their own mount namespace mount it with an allowed
/// certificate there whether their FUSE clients run in a cgroup of their
/// own or a systemd scope (which keep the plugin's mount namespace); a
/// CA-signed certificate whose name is not allowed, a self-signed one with
/// an allowed name, no certificate and a client with TLS off get nothing;
/// the self-heal daemon (server certificate) is connected; StorageClasses
/// cannot loosen it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_lets_in_only_allowed_certificates_of_the_ca() {
    let started = Instant::now();
    let pki = Pki::new();
    let certs = CertDir::new(&pki);
    let driver = DevDriver::start_with(&[
        "--tls".to_string(),
        certs.flag(),
        format!("--tls-server-names={SERVER_CN}"),
        "--tls-client-names=csi-node-*".to_string(),
    ])
    .await;
    let name = pvc_name();
    let volume = create_volume(&driver, &name).await;
    let id = volume.volume_id.clone();
    let options = volume_options(&driver, &id);
    let dir = certs.path.display();
    for (key, value) in [
        ("client.ssl", "on".to_string()),
        ("server.ssl", "on".to_string()),
        ("auth.ssl-allow", format!("{SERVER_CN},csi-node-*")),
        ("ssl.own-cert", format!("{dir}/glusterfs.pem")),
        ("ssl.private-key", format!("{dir}/glusterfs.key")),
        ("ssl.ca-list", format!("{dir}/glusterfs.ca")),
    ] {
        assert_eq!(options.get(key), Some(&value), "{key}: {options:?}");
    }
    assert!(!options.contains_key("auth.allow"), "{options:?}");
    assert_refused_in_storage_classes(
        &driver,
        &[
            "auth.ssl-allow=*",
            "client.ssl=off",
            "ssl.ca-list=/tmp/other.ca",
            "auth.reject=10.0.0.1",
        ],
    )
    .await;

    // Made shared before anything is mounted beneath it.
    let mut containers = Containers::new(&driver);

    // The dev node plugin, on the "servers" (their certificate).
    let mut node = driver.node();
    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-1", &name);
    stage_and_publish(&mut node, &volume, &staging, &target).await;
    std::fs::write(target.join("from-dev-node.txt"), "tls").unwrap();
    assert!(on_every_brick(&driver, &id, "from-dev-node.txt"));

    // Node plugins as containers wearing the allowed node certificate.
    let mut cgroup_plugin = None;
    for mounter in ["cgroup", "systemd"] {
        let plugin = containers.plugin(mounter).await;
        wear(&plugin, &certs, &pki, "node-a");
        let staging = driver.staging_path(&format!("{name}-{mounter}"));
        plugin
            .node()
            .node_stage_volume(stage_request(&volume, &staging))
            .await
            .unwrap_or_else(|e| panic!("{mounter}: {e:?}\n{}", plugin.log_text()));
        let client = fuse_client_of(&staging).expect("a FUSE client");
        let namespace = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
        assert_eq!(
            namespace(client),
            namespace(plugin.pid()),
            "{mounter}: the client reads its certificate in the plugin's mount namespace"
        );
        assert!(
            !plugin.container_pids().contains(&client),
            "{mounter}: moved out of the container"
        );
        let file = format!("from-{mounter}-plugin.txt");
        std::fs::write(staging.join(&file), NODE_CN).unwrap();
        assert!(on_every_brick(&driver, &id, &file), "{mounter}");
        plugin
            .node()
            .node_unstage_volume(unstage_request(&volume, &staging))
            .await
            .unwrap();
        if mounter == "cgroup" {
            cgroup_plugin = Some(plugin);
        }
    }

    // The same container with certificates that must not get in.
    let plugin = cgroup_plugin.unwrap();
    for (identity, because) in [
        ("intruder", "the servers refused this client"),
        // The servers' alert, when the client logs it before the reset,
        // is explained; often the reset comes first (measured: 2 of 5).
        ("rogue", "Mount failed"),
        ("none", "this node has no TLS certificate"),
    ] {
        wear(&plugin, &certs, &pki, identity);
        let staging = driver.staging_path(&format!("{name}-{identity}"));
        let refused = Instant::now();
        let status = plugin
            .node()
            .node_stage_volume(stage_request(&volume, &staging))
            .await
            .expect_err(identity);
        eprintln!(
            "{identity}: refused in {:?}: {}",
            refused.elapsed(),
            status.message()
        );
        assert!(
            status.message().contains(because),
            "{identity}: {}",
            status.message()
        );
        wait_for_client_to_end(&staging);
        assert!(!is_gluster_mount(&staging), "{identity}: nothing mounted");
        // What a pod would write there stays on the node's own disk.
        let file = format!("from-{identity}.txt");
        std::fs::write(staging.join(&file), identity).unwrap();
        assert!(on_no_brick(&driver, &id, &file), "{identity}");
    }
    let log = brick_logs(&driver);
    assert!(
        log.contains("Cannot authenticate client"),
        "intruder in the brick log"
    );
    assert!(
        log.contains("certificate verify failed"),
        "rogue in the brick log"
    );
    drop(plugin);

    // A client that turns TLS off itself.
    let hand = tempfile::tempdir().unwrap();
    let plain = HandClient::start(
        hand.path(),
        &driver.cluster.servers[0].address,
        &id,
        &["--xlator-option=*-client-*.transport.socket.ssl-enabled=off"],
    );
    let written = std::fs::write(plain.mount_point.join("from-plaintext.txt"), "plain");
    assert!(
        written.is_err() || !is_gluster_mount(&plain.mount_point),
        "a plaintext client cannot write through a mount"
    );
    assert!(on_no_brick(&driver, &id, "from-plaintext.txt"));
    drop(plain);

    // The self-heal daemon connects to every brick with the servers'
    // certificate, and so does `heal info`.
    let socket = &driver.cluster.servers[0].glusterd_socket;
    let sock = format!("--glusterd-sock={}", socket.display());
    wait_until(Duration::from_secs(15), || {
        run(
            "gluster",
            &[
                "--mode=script",
                &sock,
                "volume",
                "status",
                &id,
                "client-list",
            ],
        )
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["glustershd", "3"])
    });
    let heal = run(
        "/usr/lib/x86_64-linux-gnu/glusterfs/glfsheal",
        &[&id, "--xml", "glusterd-sock", socket.to_str().unwrap()],
    );
    assert_eq!(
        heal.matches("<status>Connected</status>").count(),
        3,
        "{heal}"
    );

    node.node_unpublish_volume(unpublish_request(&volume, &target))
        .await
        .unwrap();
    node.node_unstage_volume(unstage_request(&volume, &staging))
        .await
        .unwrap();
    driver
        .controller()
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
    drop(containers);
    eprintln!("tls test: {:?}", started.elapsed());
}

/// A veth pair into a network namespace of its own, holding `allowed` and
/// `other` (the test's clients); removed on drop.
struct ClientNetwork {
    namespace: String,
    host_side: String,
    allowed: String,
    other: String,
}

impl ClientNetwork {
    /// Addresses from 198.18.0.0/15 (reserved for tests), a /29 picked by
    /// this process's pid so parallel runs do not meet.
    fn addresses() -> (String, String, String, String) {
        let pid = std::process::id();
        let (third, base) = ((pid >> 5) % 256, (pid % 32) * 8);
        (
            format!("198.18.{third}.{}", base + 1),
            format!("198.18.{third}.{}", base + 2),
            format!("198.18.{third}.{}", base + 3),
            format!("198.19.{third}.*"),
        )
    }

    /// Reaches the dev cluster's addresses (`prefix`.0/24 on lo) through
    /// the host, from `allowed` unless a client picks `other`.
    fn new(prefix: &str) -> ClientNetwork {
        let (host, allowed, other, _) = ClientNetwork::addresses();
        let tag = std::process::id() % 100_000;
        let network = ClientNetwork {
            namespace: format!("glusterfs-csi-test-{}", std::process::id()),
            host_side: format!("gcsi{tag}h"),
            allowed,
            other,
        };
        let (ns, host_side, guest) = (
            &network.namespace,
            &network.host_side,
            format!("gcsi{tag}n"),
        );
        run("ip", &["netns", "add", ns]);
        run(
            "ip",
            &[
                "link", "add", host_side, "type", "veth", "peer", "name", &guest,
            ],
        );
        run("ip", &["link", "set", &guest, "netns", ns]);
        run(
            "ip",
            &["addr", "add", &format!("{host}/29"), "dev", host_side],
        );
        run("ip", &["link", "set", host_side, "up"]);
        // Loopback destinations (the dev servers) over a real interface.
        run(
            "sysctl",
            &[
                "-qw",
                &format!("net.ipv4.conf.{host_side}.route_localnet=1"),
            ],
        );
        for address in [&network.allowed, &network.other] {
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{address}/29"),
                    "dev",
                    &guest,
                ],
            );
        }
        run("ip", &["-n", ns, "link", "set", &guest, "up"]);
        run(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{guest}.route_localnet=1"),
            ],
        );
        run(
            "ip",
            &[
                "-n",
                ns,
                "route",
                "add",
                &format!("{prefix}.0/24"),
                "via",
                &host,
                "dev",
                &guest,
                "src",
                &network.allowed,
            ],
        );
        network
    }

    /// `mount -t glusterfs` from inside the namespace (the mount itself is
    /// in this mount namespace); its exit status.
    fn mount(
        &self,
        servers: &[String],
        volume: &str,
        mount_point: &Path,
        log: &Path,
        extra: &str,
    ) -> bool {
        std::fs::create_dir_all(mount_point).unwrap();
        let mut options = format!(
            "log-file={},backup-volfile-servers={}",
            log.display(),
            servers[1..].join(":")
        );
        if !extra.is_empty() {
            options = format!("{options},{extra}");
        }
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.namespace))
            .args(["mount", "-t", "glusterfs", "-o", &options])
            .arg(format!("{}:/{volume}", servers[0]))
            .arg(mount_point)
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for ClientNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_side])
            .output();
    }
}

/// Unmounts a test mount on drop (its FUSE client then ends by itself).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while is_gluster_mount(&self.0) {
            if sys_mount::unmount(&self.0, sys_mount::UnmountFlags::DETACH).is_err() {
                break;
            }
        }
    }
}

/// With `--client-addresses`: the volume's `auth.allow` is its servers plus
/// the listed addresses; a client from a listed address (in a network
/// namespace, so glusterd hands it the ordinary volfile) mounts and writes,
/// one from another address is refused by the bricks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_allow_list_admits_listed_clients_only() {
    let started = Instant::now();
    let (_, allowed, _, wildcard) = ClientNetwork::addresses();
    let driver = DevDriver::start_with(&[format!("--client-addresses={allowed},{wildcard}")]).await;
    let name = pvc_name();
    let volume: Volume = create_volume(&driver, &name).await;
    let id = volume.volume_id.clone();
    let servers = driver.cluster.addresses();
    let listed: BTreeSet<String> = volume_options(&driver, &id)["auth.allow"]
        .split(',')
        .map(str::to_string)
        .collect();
    let expected: BTreeSet<String> = servers
        .iter()
        .cloned()
        .chain([allowed.clone(), wildcard.clone()])
        .collect();
    assert_eq!(listed, expected);
    assert_refused_in_storage_classes(
        &driver,
        &["auth.allow=*", "auth.reject=127.0.0.2", "server.ssl=on"],
    )
    .await;

    let prefix = servers[0].rsplit_once('.').unwrap().0.to_string();
    let network = ClientNetwork::new(&prefix);
    let dir = tempfile::tempdir().unwrap();

    let admitted = dir.path().join("admitted");
    let _admitted_mount = Unmount(admitted.clone());
    assert!(network.mount(
        &servers,
        &id,
        &admitted,
        &dir.path().join("admitted.log"),
        ""
    ));
    assert!(is_gluster_mount(&admitted));
    std::fs::write(admitted.join("from-listed-address.txt"), &network.allowed).unwrap();
    assert!(on_every_brick(&driver, &id, "from-listed-address.txt"));

    let refused = dir.path().join("refused");
    let _refused_mount = Unmount(refused.clone());
    let log = dir.path().join("refused.log");
    let source = format!(
        "xlator-option=*-client-*.transport.socket.source-addr={}",
        network.other
    );
    // mount.glusterfs may exit 0 here: the client is refused just after.
    let status = network.mount(&servers, &id, &refused, &log, &source);
    wait_for_client_to_end(&refused);
    assert!(
        !is_gluster_mount(&refused),
        "exit status {status}, yet mounted"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Authentication failed"), "{text}");
    std::fs::write(refused.join("from-other-address.txt"), &network.other).unwrap();
    assert!(on_no_brick(&driver, &id, "from-other-address.txt"));

    drop(_admitted_mount);
    wait_for_client_to_end(&admitted);
    drop(network);
    driver
        .controller()
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
    eprintln!("auth.allow test: {:?}", started.elapsed());
}

/// Settings that cannot work stop the controller (and dev, before it makes
/// a cluster) at start-up, naming the flag.
#[test]
fn bad_isolation_settings_are_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!(
        "--endpoint=unix://{}",
        dir.path().join("csi.sock").display()
    );
    let state = dir.path().join("dev-state");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "controller".into(),
                endpoint.clone(),
                "--client-addresses=192.168.1.31,10.42.0.0/16".into(),
            ],
            "--client-addresses: \"10.42.0.0/16\" is CIDR notation, which glusterfs 10.3 accepts in auth.allow but matches wrongly",
        ),
        (
            vec![
                "controller".into(),
                endpoint.clone(),
                "--client-addresses=node-1".into(),
            ],
            "--client-addresses: \"node-1\" is not an IPv4 address",
        ),
        (
            vec![
                "controller".into(),
                endpoint.clone(),
                "--tls".into(),
                "--tls-client-names=csi-node-*".into(),
            ],
            "--tls-server-names: --tls needs the common names of the Gluster servers' certificates",
        ),
        (
            vec![
                "controller".into(),
                endpoint.clone(),
                "--tls-server-names=gluster-server".into(),
            ],
            "--tls-server-names: given without --tls",
        ),
        (
            vec![
                "dev".into(),
                format!("--state-dir={}", state.display()),
                "--client-addresses=10.0.0.0/30".into(),
            ],
            "--client-addresses: \"10.0.0.0/30\" is CIDR notation",
        ),
    ];
    for (args, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"))
            .args(&args)
            .env("GLUSTERFS_CSI_BRICK_AGENT_TOKEN", "t")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!state.exists(), "dev made nothing");
    assert!(
        !dir.path().join("csi.sock").exists(),
        "the controller served nothing"
    );
}
