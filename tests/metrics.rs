//! The metrics endpoint on a real cluster: `dev --metrics-listen` serves
//! valid OpenMetrics (parsed by the Prometheus project's own Python parser,
//! tests/helpers/scrape_metrics.py; `pip install prometheus-client`) whose
//! RPC counts are exactly the RPCs this test made, failing ones included,
//! with the gluster commands behind them, the volumes by state as the
//! periodic survey sees them, and a healed mount.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use glusterfs_csi::proto::csi::*;

const SCRAPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/helpers/scrape_metrics.py"
);

/// One scrape: every sample by series name and sorted labels, and the
/// families' types.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
    types: BTreeMap<String, String>,
    units: BTreeMap<String, String>,
}

impl Scrape {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        self.samples
            .get(&(name.to_string(), key))
            .copied()
            .unwrap_or(0.0)
    }

    /// Samples of `name` whose labels include `labels`, summed.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every label set of `name`.
    fn label_sets(&self, name: &str) -> Vec<&Vec<(String, String)>> {
        self.samples
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l)
            .collect()
    }
}

/// Scrapes `addr` through the Python parser, which fails on invalid text.
async fn scrape(addr: SocketAddr) -> Scrape {
    let output = tokio::process::Command::new("python3")
        .arg(SCRAPER)
        .arg(format!("http://{addr}/metrics"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the scraper finishes")
        .unwrap();
    assert!(
        output.status.success(),
        "{SCRAPER} failed (pip install prometheus-client?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["status"], 200);
    assert_eq!(
        json["content_type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let mut scrape = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
        units: BTreeMap::new(),
    };
    for family in json["families"].as_array().unwrap() {
        let name = family["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("glusterfs_csi_"), "{name}");
        assert!(!family["help"].as_str().unwrap().is_empty(), "{name}");
        scrape
            .types
            .insert(name.clone(), family["type"].as_str().unwrap().into());
        scrape
            .units
            .insert(name, family["unit"].as_str().unwrap().into());
        for sample in family["samples"].as_array().unwrap() {
            let mut labels: Vec<(String, String)> = sample["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            scrape.samples.insert(
                (sample["name"].as_str().unwrap().to_string(), labels),
                sample["value"].as_f64().unwrap(),
            );
        }
    }
    scrape
}

/// Where the dev driver serves its metrics (it logs the bound address).
fn metrics_address(driver: &DevDriver) -> SocketAddr {
    let log = driver.log();
    let line = log
        .lines()
        .find(|l| l.contains("metrics serving"))
        .unwrap_or_else(|| panic!("no `metrics serving` line:\n{log}"));
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("addr="))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"))
}

/// RPC count and latency count of one method and code, from `before` to `after`.
fn rpc_delta(before: &Scrape, after: &Scrape, method: &str, code: &str) -> (f64, f64) {
    let labels = [("method", method), ("code", code)];
    (
        after.value("glusterfs_csi_rpc_requests_total", &labels)
            - before.value("glusterfs_csi_rpc_requests_total", &labels),
        after.value("glusterfs_csi_rpc_duration_seconds_count", &labels)
            - before.value("glusterfs_csi_rpc_duration_seconds_count", &labels),
    )
}

fn gluster_delta(before: &Scrape, after: &Scrape, command: &str, outcome: &str) -> f64 {
    let labels = [("command", command), ("outcome", outcome)];
    after.value("glusterfs_csi_gluster_commands_total", &labels)
        - before.value("glusterfs_csi_gluster_commands_total", &labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_rpcs_made_and_the_gluster_work_behind_them() {
    let driver = DevDriver::start_with(&[
        "--metrics-listen=127.0.0.1:0".to_string(),
        "--volume-metrics-interval-seconds=1".to_string(),
    ])
    .await;
    let addr = metrics_address(&driver);
    let before = scrape(addr).await;
    assert_eq!(
        before.value(
            "glusterfs_csi_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // A known set of RPCs: successes, a retry, and failures of three kinds.
    let mut identity = driver.identity();
    let mut controller = driver.controller();
    let mut node = driver.node();
    for _ in 0..3 {
        identity
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .unwrap();
    }
    let name = pvc_name();
    let volume = create_volume(&driver, &name).await;
    let again = create_volume(&driver, &name).await;
    assert_eq!(again.volume_id, volume.volume_id);
    let refused = controller
        .create_volume(create_request("", &[]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let missing = format!("csi-{}", pvc_name());
    let not_found = controller
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: missing,
            volume_capabilities: vec![mount_capability(
                volume_capability::access_mode::Mode::MultiNodeMultiWriter,
            )],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(not_found.code(), tonic::Code::NotFound, "{not_found:?}");
    let unsupported = controller
        .controller_publish_volume(ControllerPublishVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(unsupported.code(), tonic::Code::Unimplemented);
    let staging = driver.staging_path(&name);
    let target = driver.target_path("pod-1", &name);
    stage_and_publish(&mut node, &volume, &staging, &target).await;

    let after = scrape(addr).await;
    for (method, code, calls) in [
        ("GetPluginInfo", "OK", 3.0),
        ("CreateVolume", "OK", 2.0),
        ("CreateVolume", "InvalidArgument", 1.0),
        ("ValidateVolumeCapabilities", "NotFound", 1.0),
        ("ControllerPublishVolume", "Unimplemented", 1.0),
        ("NodeStageVolume", "OK", 1.0),
        ("NodePublishVolume", "OK", 1.0),
    ] {
        assert_eq!(
            rpc_delta(&before, &after, method, code),
            (calls, calls),
            "{method} {code}"
        );
    }
    // ...and nothing else.
    let total = |s: &Scrape| s.sum("glusterfs_csi_rpc_requests_total", &[]);
    assert_eq!(total(&after) - total(&before), 10.0);
    let slowest_bucket = after.value(
        "glusterfs_csi_rpc_duration_seconds_bucket",
        &[("method", "CreateVolume"), ("code", "OK"), ("le", "+Inf")],
    );
    assert!(slowest_bucket >= 2.0, "{slowest_bucket}");

    // The gluster work: one create for the two CreateVolumes, the start,
    // the marks; reading a volume that does not exist is refused by glusterd.
    assert_eq!(gluster_delta(&before, &after, "volume create", "ok"), 1.0);
    assert!(gluster_delta(&before, &after, "volume start", "ok") >= 1.0);
    assert!(gluster_delta(&before, &after, "volume set", "ok") >= 1.0);
    assert!(gluster_delta(&before, &after, "volume info", "ok") >= 2.0);
    assert!(gluster_delta(&before, &after, "volume info", "refused") >= 1.0);
    for labels in after.label_sets("glusterfs_csi_gluster_commands_total") {
        let command = &labels.iter().find(|(k, _)| k == "command").unwrap().1;
        assert!(
            !command.contains("csi-") && !command.contains('/'),
            "a volume or path in a label: {command}"
        );
    }
    assert_eq!(
        after.sum("glusterfs_csi_gluster_commands_total", &[]),
        after.sum("glusterfs_csi_gluster_command_duration_seconds_count", &[]),
    );

    // The survey sees the started volume.
    let started = [("state", "started")];
    let mut seen = after;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.value("glusterfs_csi_volumes", &started) != 1.0 {
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = scrape(addr).await;
    }

    // ... and its health: all bricks up, nothing to heal.
    let ours = [("volume", volume.volume_id.as_str())];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen
        .label_sets("glusterfs_csi_volume_bricks_down")
        .iter()
        .all(|l| {
            !l.iter()
                .any(|(k, v)| k == "volume" && *v == volume.volume_id)
        })
    {
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = scrape(addr).await;
    }
    for family in [
        "glusterfs_csi_volume_bricks_down",
        "glusterfs_csi_volume_heal_pending_entries",
        "glusterfs_csi_volume_split_brain_entries",
    ] {
        assert_eq!(seen.label_sets(family).len(), 1, "{family}: {seen:?}");
        assert_eq!(seen.value(family, &ours), 0.0, "{family}: {seen:?}");
    }

    // A FUSE client killed under the staged volume is healed, and counted.
    let client = common::pods::fuse_client_of(&staging).expect("FUSE client process");
    sigkill(client);
    let healed = [("outcome", "healed")];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.value("glusterfs_csi_mounts_healed_total", &healed) != 1.0 {
        assert!(std::time::Instant::now() < deadline, "{}", driver.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = scrape(addr).await;
    }

    unpublish_and_unstage(&mut node, &volume, &staging, &target).await;
    controller
        .delete_volume(delete_volume_request(&volume))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.value("glusterfs_csi_volumes", &started) != 0.0 {
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = scrape(addr).await;
    }
    let done = scrape(addr).await;
    // The deleted volume's health series went with it.
    assert!(
        done.label_sets("glusterfs_csi_volume_bricks_down")
            .is_empty(),
        "{done:?}"
    );
    // Families appear with their first sample (the per-volume health gauges
    // with the first volume whose health is recorded).
    for (family, kind) in [
        ("glusterfs_csi_build", "info"),
        ("glusterfs_csi_rpc_requests", "counter"),
        ("glusterfs_csi_rpc_duration_seconds", "histogram"),
        ("glusterfs_csi_gluster_commands", "counter"),
        (
            "glusterfs_csi_gluster_command_duration_seconds",
            "histogram",
        ),
        ("glusterfs_csi_volumes", "gauge"),
        ("glusterfs_csi_volume_survey_failures", "counter"),
        ("glusterfs_csi_mounts_healed", "counter"),
    ] {
        assert_eq!(
            done.types.get(family).map(String::as_str),
            Some(kind),
            "{family}: {:?}",
            done.types
        );
    }
    for histogram in [
        "glusterfs_csi_rpc_duration_seconds",
        "glusterfs_csi_gluster_command_duration_seconds",
    ] {
        assert_eq!(done.units[histogram], "seconds");
    }
    assert_eq!(
        done.value("glusterfs_csi_volume_survey_failures_total", &[]),
        0.0
    );
    assert_eq!(rpc_delta(&before, &done, "DeleteVolume", "OK"), (1.0, 1.0));
    assert!(gluster_delta(&before, &done, "volume stop", "ok") >= 1.0);
    assert!(gluster_delta(&before, &done, "volume delete", "ok") >= 1.0);
}

/// An address that cannot be bound stops the process with a message
/// naming the flag, before anything is served.
#[test]
fn a_metrics_address_in_use_is_refused_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"))
        .arg("controller")
        .arg(format!(
            "--endpoint=unix://{}/csi.sock",
            dir.path().display()
        ))
        .arg(format!("--metrics-listen={addr}"))
        .arg("--brick-agent-token=test-token")
        .env("GLUSTERFS_CSI_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("--metrics-listen {addr}: cannot listen there")),
        "{stderr}"
    );
    assert!(
        !dir.path().join("csi.sock").exists(),
        "the CSI socket is not served"
    );
    // A malformed address is a usage error.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_glusterfs-csi"))
        .args(["controller", "--metrics-listen=localhost"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--metrics-listen"));
}
