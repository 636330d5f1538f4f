//! Prometheus metrics (OpenMetrics text, `prometheus-client`): one
//! process-wide registry that the RPC boundary, the gluster CLI runner, the
//! controller's volume survey and the node's heals record into, served on
//! `--metrics-listen` by [`http`]. Every label value comes from a fixed set
//! in this module or from a gluster volume name the driver made, never from
//! free-form input. The series are listed in docs/metrics.md.

pub mod gluster;
pub mod http;

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub use gluster::{GlusterOutcome, command_label};

/// Prefix of every series.
pub const PREFIX: &str = "glusterfs_csi";

/// Latency buckets in seconds: CLI reads take ~0.06 s, `volume stop` ~2 s,
/// `quota enable` ~2.2 s, a delete with brick removal several seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GlusterLabels {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    volume: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A driver-made volume's state, as the controller's survey counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VolumeState {
    Created,
    Started,
    Stopped,
    /// Marked for deletion (`user.csi.deleting`), whatever glusterd's state.
    Deleting,
    /// A state glusterd reports that the driver does not know.
    Other,
}

impl VolumeState {
    pub const ALL: [VolumeState; 5] = [
        VolumeState::Created,
        VolumeState::Started,
        VolumeState::Stopped,
        VolumeState::Deleting,
        VolumeState::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Created => "created",
            VolumeState::Started => "started",
            VolumeState::Stopped => "stopped",
            VolumeState::Deleting => "deleting",
            VolumeState::Other => "other",
        }
    }
}

/// What one heal of a dead staging mount came to (node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealOutcome {
    /// Mounted again and put back everywhere the dead mount was visible.
    Healed,
    /// Mounted again, but some views (a container's) could not be replaced.
    Partial,
    /// Could not be mounted again (retried with backoff).
    Failed,
}

impl HealOutcome {
    fn as_str(self) -> &'static str {
        match self {
            HealOutcome::Healed => "healed",
            HealOutcome::Partial => "partial",
            HealOutcome::Failed => "failed",
        }
    }
}

struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: HistogramFamily<RpcLabels>,
    gluster_commands: Family<GlusterLabels, Counter>,
    gluster_duration: HistogramFamily<GlusterLabels>,
    volumes: Family<StateLabels, Gauge>,
    volume_survey_failures: Counter,
    bricks_down: Family<VolumeLabels, Gauge>,
    heal_pending: Family<VolumeLabels, Gauge>,
    split_brain: Family<VolumeLabels, Gauge>,
    /// Volumes with health series, to drop those that disappear.
    health_volumes: Mutex<BTreeSet<String>>,
    mounts_healed: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix(PREFIX),
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(latency_histogram),
            gluster_commands: Family::default(),
            gluster_duration: Family::new_with_constructor(latency_histogram),
            volumes: Family::default(),
            volume_survey_failures: Counter::default(),
            bricks_down: Family::default(),
            heal_pending: Family::default(),
            split_brain: Family::default(),
            health_volumes: Mutex::new(BTreeSet::new()),
            mounts_healed: Family::default(),
        };
        metrics.registered()
    }

    /// Registers every series (the registry holds clones sharing the values).
    fn registered(mut self) -> Metrics {
        let registry = &mut self.registry;
        registry.register(
            "build",
            "The driver's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "rpc_requests",
            "CSI RPCs answered, by method and gRPC code",
            self.rpc_requests.clone(),
        );
        registry.register_with_unit(
            "rpc_duration",
            "Time to answer a CSI RPC, by method and gRPC code",
            Unit::Seconds,
            self.rpc_duration.clone(),
        );
        registry.register(
            "gluster_commands",
            "gluster CLI commands run, by command and outcome (ok, refused by glusterd, error: \
             no usable answer)",
            self.gluster_commands.clone(),
        );
        registry.register_with_unit(
            "gluster_command_duration",
            "Time a gluster CLI command took, by command and outcome",
            Unit::Seconds,
            self.gluster_duration.clone(),
        );
        registry.register(
            "volumes",
            "Driver-made gluster volumes by state (controller, refreshed periodically)",
            self.volumes.clone(),
        );
        registry.register(
            "volume_survey_failures",
            "Periodic volume surveys that could not read glusterd (controller)",
            self.volume_survey_failures.clone(),
        );
        registry.register(
            "volume_bricks_down",
            "Bricks of the volume whose process is not online",
            self.bricks_down.clone(),
        );
        registry.register(
            "volume_heal_pending_entries",
            "Entries of the volume waiting for self-heal, summed over its bricks",
            self.heal_pending.clone(),
        );
        registry.register(
            "volume_split_brain_entries",
            "Entries of the volume in split-brain, summed over its bricks",
            self.split_brain.clone(),
        );
        registry.register(
            "mounts_healed",
            "Dead FUSE staging mounts healed by the node, by outcome",
            self.mounts_healed.clone(),
        );
        self
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Records one answered CSI RPC (called by [`crate::csi::observe`]).
pub fn record_rpc(method: &'static str, code: tonic::Code, took: Duration) {
    let labels = RpcLabels {
        method,
        code: code_name(code),
    };
    METRICS.rpc_requests.get_or_create(&labels).inc();
    METRICS
        .rpc_duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// Records one gluster CLI command (words as run; only [`command_label`]'s
/// fixed label is kept).
pub fn record_gluster_command(words: &[&str], outcome: GlusterOutcome, took: Duration) {
    let labels = GlusterLabels {
        command: command_label(words),
        outcome: outcome.as_str(),
    };
    METRICS.gluster_commands.get_or_create(&labels).inc();
    METRICS
        .gluster_duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// Sets the volumes-by-state gauges from one survey: every state is
/// written, those without volumes as 0.
pub fn record_volume_states(states: impl IntoIterator<Item = VolumeState>) {
    let mut counts = [0i64; VolumeState::ALL.len()];
    for state in states {
        counts[state as usize] += 1;
    }
    for (state, count) in VolumeState::ALL.into_iter().zip(counts) {
        METRICS
            .volumes
            .get_or_create(&StateLabels {
                state: state.as_str(),
            })
            .set(count);
    }
}

/// Counts a survey that could not read glusterd (its gauges keep their
/// last values).
pub fn record_volume_survey_failure() {
    METRICS.volume_survey_failures.inc();
}

/// Sets one driver-made volume's health gauges.
pub fn record_volume_health(volume: &str, bricks_down: u64, heal_pending: u64, split_brain: u64) {
    let labels = VolumeLabels {
        volume: volume.to_string(),
    };
    let as_gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    METRICS
        .bricks_down
        .get_or_create(&labels)
        .set(as_gauge(bricks_down));
    METRICS
        .heal_pending
        .get_or_create(&labels)
        .set(as_gauge(heal_pending));
    METRICS
        .split_brain
        .get_or_create(&labels)
        .set(as_gauge(split_brain));
    lock_health_volumes().insert(volume.to_string());
}

/// Drops the health series of every volume not in `present` (volumes that
/// were deleted since the last survey).
pub fn retain_volume_health(present: &BTreeSet<String>) {
    let gone: Vec<String> = lock_health_volumes()
        .iter()
        .filter(|v| !present.contains(*v))
        .cloned()
        .collect();
    for volume in gone {
        forget_volume_health(&volume);
    }
}

/// Drops one volume's health series.
pub fn forget_volume_health(volume: &str) {
    let labels = VolumeLabels {
        volume: volume.to_string(),
    };
    METRICS.bricks_down.remove(&labels);
    METRICS.heal_pending.remove(&labels);
    METRICS.split_brain.remove(&labels);
    lock_health_volumes().remove(volume);
}

fn lock_health_volumes() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    METRICS
        .health_volumes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Counts one heal of a dead staging mount (node).
pub fn record_mount_heal(outcome: HealOutcome) {
    METRICS
        .mounts_healed
        .get_or_create(&OutcomeLabels {
            outcome: outcome.as_str(),
        })
        .inc();
}

/// Every series in OpenMetrics text, ending with `# EOF`.
pub fn encode() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    text
}

/// gRPC's own names for its codes (as grpc-go prints them and Prometheus
/// dashboards for gRPC servers expect).
pub fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "Canceled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of `text` for `series` whose labels contain `labels`.
    fn samples<'a>(text: &'a str, series: &str, labels: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{series}{{")) && l.contains(labels))
            .collect()
    }

    #[test]
    fn rpcs_are_counted_and_timed_by_method_and_code() {
        record_rpc(
            "UnitTestOnlyRpc",
            tonic::Code::NotFound,
            Duration::from_millis(30),
        );
        record_rpc(
            "UnitTestOnlyRpc",
            tonic::Code::NotFound,
            Duration::from_millis(3),
        );
        let text = encode();
        let labels = "method=\"UnitTestOnlyRpc\",code=\"NotFound\"";
        assert_eq!(
            samples(&text, "glusterfs_csi_rpc_requests_total", labels),
            [format!("glusterfs_csi_rpc_requests_total{{{labels}}} 2")]
        );
        let count = samples(&text, "glusterfs_csi_rpc_duration_seconds_count", labels);
        assert_eq!(
            count,
            [format!(
                "glusterfs_csi_rpc_duration_seconds_count{{{labels}}} 2"
            )]
        );
        // One observation in the 5 ms bucket, both by 50 ms.
        let bucket = |le: &str| {
            samples(
                &text,
                "glusterfs_csi_rpc_duration_seconds_bucket",
                &format!("{{le=\"{le}\",{labels}}}"),
            )
        };
        assert!(bucket("0.005")[0].ends_with(" 1"), "{text}");
        assert!(bucket("0.05")[0].ends_with(" 2"), "{text}");
        assert!(text.contains("# UNIT glusterfs_csi_rpc_duration_seconds seconds"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn volume_health_series_go_with_their_volume() {
        record_volume_health("csi-unit-a", 1, 12, 0);
        record_volume_health("csi-unit-b", 0, 0, 3);
        let text = encode();
        assert!(
            text.contains("glusterfs_csi_volume_bricks_down{volume=\"csi-unit-a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("glusterfs_csi_volume_heal_pending_entries{volume=\"csi-unit-a\"} 12")
        );
        assert!(text.contains("glusterfs_csi_volume_split_brain_entries{volume=\"csi-unit-b\"} 3"));
        let others: BTreeSet<String> = lock_health_volumes()
            .iter()
            .filter(|v| !v.starts_with("csi-unit-"))
            .cloned()
            .collect();
        let mut present = others;
        present.insert("csi-unit-b".to_string());
        retain_volume_health(&present);
        let text = encode();
        assert!(!text.contains("csi-unit-a"), "{text}");
        assert!(text.contains("glusterfs_csi_volume_bricks_down{volume=\"csi-unit-b\"} 0"));
        forget_volume_health("csi-unit-b");
        assert!(!encode().contains("csi-unit-b"));
    }

    #[test]
    fn every_volume_state_is_written() {
        record_volume_states([
            VolumeState::Started,
            VolumeState::Started,
            VolumeState::Deleting,
        ]);
        let text = encode();
        for (state, count) in [
            ("created", 0),
            ("started", 2),
            ("stopped", 0),
            ("deleting", 1),
            ("other", 0),
        ] {
            let line = format!("glusterfs_csi_volumes{{state=\"{state}\"}} {count}");
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn code_names_are_grpcs() {
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(
            code_name(tonic::Code::FailedPrecondition),
            "FailedPrecondition"
        );
    }
}
