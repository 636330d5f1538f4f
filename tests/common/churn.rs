//! Volume churn as the external-provisioner drives it: every call carries
//! its deadline (the sidecar's `--timeout`, 10 s by default), and a call that
//! fails with a retryable code is sent again after a backoff that starts at
//! 1 s and doubles (`--retry-interval-start`), here capped at 5 s. Shared by
//! the churn drill (tests/convergence.rs) and the benchmark.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glusterfs_csi::proto::csi::controller_client::ControllerClient;
use tonic::Code;
use tonic::transport::Channel;

/// external-provisioner's default `--timeout`.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Codes the sidecar keeps retrying (for CreateVolume it treats them as
/// "in progress"); anything else is a final answer and fails a drill.
const RETRIED: [Code; 3] = [Code::DeadlineExceeded, Code::Aborted, Code::Unavailable];

/// One logical operation, from its first attempt to its success.
#[derive(Clone, Debug)]
pub struct Done {
    pub took: Duration,
    pub attempts: u32,
    /// The codes of the failed attempts, in order.
    pub failures: Vec<Code>,
}

/// Sends the request made by `request` until it succeeds or fails with a
/// code the sidecar would not retry (returned as the error, with the
/// attempts so far). Each attempt has [`CLIENT_DEADLINE`] as its gRPC
/// deadline and may not take longer than that plus a second.
pub async fn as_the_provisioner<Req, Resp, Fut>(
    mut call: impl FnMut(tonic::Request<Req>) -> Fut,
    request: impl Fn() -> Req,
) -> Result<(Resp, Done), (tonic::Status, Done)>
where
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut backoff = BACKOFF_START;
    loop {
        let mut attempt = tonic::Request::new(request());
        attempt.set_timeout(CLIENT_DEADLINE);
        let answer = tokio::time::timeout(CLIENT_DEADLINE + Duration::from_secs(1), call(attempt))
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::cancelled(
                    "the test's own timer: no answer within the deadline",
                ))
            });
        let done = |failures: &Vec<Code>| Done {
            took: started.elapsed(),
            attempts: failures.len() as u32 + 1,
            failures: failures.clone(),
        };
        match answer {
            Ok(response) => return Ok((response.into_inner(), done(&failures))),
            Err(status) if RETRIED.contains(&status.code()) => {
                failures.push(status.code());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(status) => {
                let done = done(&failures);
                return Err((status, done));
            }
        }
    }
}

/// What a churn run did.
#[derive(Debug, Default)]
pub struct Churn {
    pub wall: Duration,
    /// Per PVC name: its create and its delete.
    pub volumes: BTreeMap<String, (Done, Done)>,
    /// Final (non-retried) errors, each with the PVC it was for.
    pub errors: Vec<String>,
}

impl Churn {
    pub fn creates(&self) -> Vec<Duration> {
        self.volumes.values().map(|(c, _)| c.took).collect()
    }

    pub fn deletes(&self) -> Vec<Duration> {
        self.volumes.values().map(|(_, d)| d.took).collect()
    }

    /// Attempts beyond the first, over every create and delete.
    pub fn retries(&self) -> u32 {
        self.volumes
            .values()
            .map(|(c, d)| c.attempts + d.attempts - 2)
            .sum()
    }

    pub fn failures_with(&self, code: Code) -> usize {
        self.volumes
            .values()
            .flat_map(|(c, d)| c.failures.iter().chain(&d.failures))
            .filter(|c| **c == code)
            .count()
    }
}

/// `count` PVCs created then deleted by `concurrency` workers, each working
/// through its share one PVC at a time (create, then delete), so creates
/// and deletes overlap as they do in a busy cluster.
pub async fn churn(
    channel: Channel,
    count: usize,
    concurrency: usize,
    parameters: &[(&str, &str)],
) -> Churn {
    let started = Instant::now();
    let results = Arc::new(Mutex::new(Churn::default()));
    let parameters: Vec<(String, String)> = parameters
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let channel = channel.clone();
        let results = Arc::clone(&results);
        let parameters = parameters.clone();
        let share: Vec<usize> = (0..count).filter(|n| n % concurrency == worker).collect();
        workers.spawn(async move {
            let parameters: Vec<(&str, &str)> = parameters
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            for _ in share {
                let name = super::pvc_name();
                let controller = ControllerClient::new(channel.clone());
                let created = as_the_provisioner(
                    |r| {
                        let mut c = controller.clone();
                        async move { c.create_volume(r).await }
                    },
                    || super::create_request(&name, &parameters),
                )
                .await;
                let (volume, create) = match created {
                    Ok((response, done)) => (response.volume.expect("a volume"), done),
                    Err((status, _)) => {
                        results
                            .lock()
                            .unwrap()
                            .errors
                            .push(format!("CreateVolume {name}: {status:?}"));
                        continue;
                    }
                };
                let deleted = as_the_provisioner(
                    |r| {
                        let mut c = controller.clone();
                        async move { c.delete_volume(r).await }
                    },
                    || super::delete_volume_request(&volume),
                )
                .await;
                let mut results = results.lock().unwrap();
                match deleted {
                    Ok((_, delete)) => {
                        results.volumes.insert(name, (create, delete));
                    }
                    Err((status, _)) => results.errors.push(format!(
                        "DeleteVolume {} ({name}): {status:?}",
                        volume.volume_id
                    )),
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.expect("a churn worker panicked");
    }
    let mut churn = std::mem::take(&mut *results.lock().unwrap());
    churn.wall = started.elapsed();
    churn
}

/// The `q` quantile (0..=1) of `samples`, nearest rank.
pub fn quantile(mut samples: Vec<Duration>, q: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}
