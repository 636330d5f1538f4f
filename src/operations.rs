//! Controller operations that outlive their callers.
//!
//! A CreateVolume, DeleteVolume or ControllerExpandVolume runs as a task of
//! its own, so that it finishes (or reaches its own, longer limit) even when
//! the caller's deadline passes or its connection goes: dropping gluster
//! work half done is what leaves volumes half made or half deleted. A retry
//! of the same request joins the running operation and gets its result; a
//! different request for the same volume meanwhile is ABORTED (the sidecars
//! retry). When the caller's own deadline is about to pass, it gets
//! DEADLINE_EXCEEDED and the operation goes on; the next retry joins it, or
//! gets its result if it finished less than [`RESULT_KEPT`] ago (under load
//! a re-run can take longer than the caller waits, again and again). After
//! that, or for any other request of the volume, it runs again against what
//! gluster now holds (every operation is idempotent).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::Status;

/// How long one operation may run before the driver gives up on it
/// (a glusterd that stopped answering): far beyond any caller's deadline.
pub const OPERATION_LIMIT: Duration = Duration::from_secs(300);

/// How long a stopping controller waits for running operations: within
/// Kubernetes' default termination grace period of 30 s.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long a finished operation's result is kept for its retry.
pub const RESULT_KEPT: Duration = Duration::from_secs(60);

type Finished = Result<Arc<dyn Any + Send + Sync>, Status>;

/// An operation of one volume: running, or finished a moment ago.
struct Running {
    method: &'static str,
    /// What was asked, as compared for joining.
    request: String,
    started: Instant,
    finished: Option<Instant>,
    result: watch::Receiver<Option<Finished>>,
}

#[derive(Clone)]
pub struct Operations {
    running: Arc<Mutex<HashMap<String, Running>>>,
    limit: Duration,
}

impl Default for Operations {
    fn default() -> Self {
        Operations::new(OPERATION_LIMIT)
    }
}

impl Operations {
    pub fn new(limit: Duration) -> Self {
        Operations {
            running: Arc::default(),
            limit,
        }
    }

    /// Runs `operation` for the volume `key`, or joins the operation
    /// running for it if that one is the same `method` with the same
    /// `request`; answers when it is done or when the caller's `deadline`
    /// is about to pass, whichever comes first.
    pub async fn run<T, F>(
        &self,
        method: &'static str,
        key: &str,
        request: String,
        deadline: Option<Duration>,
        operation: F,
    ) -> Result<T, Status>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static,
    {
        let answer_by = deadline.map(answer_within);
        let mut result = self.join_or_start(method, key, request, operation)?;
        let done = result.wait_for(Option::is_some);
        let finished = match answer_by {
            Some(within) => match tokio::time::timeout(within, done).await {
                Ok(done) => done.map(|r| r.clone()),
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "the caller's deadline passed before {method} on volume {key} finished; \
                         it goes on, and a retry returns its result"
                    )));
                }
            },
            None => done.await.map(|r| r.clone()),
        };
        match finished {
            Ok(Some(Ok(value))) => value.downcast_ref::<T>().cloned().ok_or_else(|| {
                Status::internal(format!("{method} on volume {key}: result of another type"))
            }),
            Ok(Some(Err(status))) => Err(status),
            // The task ended without an answer: it panicked.
            Ok(None) | Err(_) => Err(Status::internal(format!(
                "{method} on volume {key} ended without an answer; retry"
            ))),
        }
    }

    fn join_or_start<T, F>(
        &self,
        method: &'static str,
        key: &str,
        request: String,
        operation: F,
    ) -> Result<watch::Receiver<Option<Finished>>, Status>
    where
        T: Send + Sync + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static,
    {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|_, op| op.finished.is_none_or(|at| at.elapsed() < RESULT_KEPT));
        if let Some(current) = running.get(key) {
            let same = current.method == method && current.request == request;
            match current.finished {
                None if same => {
                    tracing::info!(
                        method,
                        volume = %key,
                        running_for_ms = current.started.elapsed().as_millis() as u64,
                        "retry joins the operation in progress"
                    );
                    return Ok(current.result.clone());
                }
                None => {
                    return Err(Status::aborted(format!(
                        "{} on volume {key} is in progress; retry",
                        current.method
                    )));
                }
                Some(at) if same => {
                    tracing::info!(
                        method,
                        volume = %key,
                        finished_ms_ago = at.elapsed().as_millis() as u64,
                        "retry gets the result of the operation that finished after its caller gave up"
                    );
                    return Ok(current.result.clone());
                }
                // Another request: its own run, on what gluster holds now.
                Some(_) => {}
            }
        }
        let (sender, receiver) = watch::channel(None);
        running.insert(
            key.to_string(),
            Running {
                method,
                request,
                started: Instant::now(),
                finished: None,
                result: receiver.clone(),
            },
        );
        drop(running);
        let registry = Arc::clone(&self.running);
        let limit = self.limit;
        let key = key.to_string();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(limit, operation).await {
                Ok(result) => result.map(|value| Arc::new(value) as Arc<dyn Any + Send + Sync>),
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "{method} on volume {key} did not finish within {:?}; what it did is \
                     kept, and a retry goes on from there",
                    limit
                ))),
            };
            // Kept for a retry: one that failed is not, a retry runs it anew.
            let keep = outcome.is_ok();
            {
                let mut registry = registry.lock().unwrap_or_else(|e| e.into_inner());
                if keep {
                    if let Some(op) = registry.get_mut(&key) {
                        op.finished = Some(Instant::now());
                    }
                } else {
                    registry.remove(&key);
                }
            }
            // The registry's own receiver aside.
            if sender.receiver_count() <= usize::from(keep) {
                // Nobody waits: this line is the operation's only record.
                match &outcome {
                    Ok(_) => tracing::info!(
                        method,
                        volume = %key,
                        code = "OK",
                        "operation finished after its callers gave up"
                    ),
                    Err(status) => tracing::warn!(
                        method,
                        volume = %key,
                        code = ?status.code(),
                        message = status.message(),
                        "operation finished after its callers gave up"
                    ),
                }
            }
            let _ = sender.send(Some(outcome));
        });
        Ok(receiver)
    }

    /// On shutdown: waits up to `grace` for the running operations to end,
    /// so a SIGTERM (an upgrade, a drain) does not cut gluster work short
    /// where it can be avoided. Returns how many were left unfinished.
    pub async fn drain(&self, grace: Duration) -> usize {
        let until = Instant::now() + grace;
        let mut told = false;
        loop {
            let running = self.running();
            if running == 0 {
                return 0;
            }
            if Instant::now() >= until {
                tracing::warn!(
                    running,
                    "exiting with operations unfinished; their retries finish them"
                );
                return running;
            }
            if !told {
                tracing::info!(running, "waiting for running operations to finish");
                told = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Operations running now (for tests and logs).
    pub fn running(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|op| op.finished.is_none())
            .count()
    }
}

/// How long to wait for an operation when the caller gives up after
/// `deadline`: a little less, so the caller hears DEADLINE_EXCEEDED from us
/// rather than losing the answer to its own timer.
fn answer_within(deadline: Duration) -> Duration {
    let margin = (deadline / 10).min(Duration::from_millis(250));
    deadline.saturating_sub(margin)
}

/// The caller's deadline from its `grpc-timeout` header (gRPC over HTTP/2:
/// at most 8 digits and a unit); `None` when absent or malformed.
pub fn caller_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("10S"), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_grpc_timeout("9999m"),
            Some(Duration::from_millis(9999))
        );
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "10", "10s", "123456789S", "-1S", "1 S", "1ÅS"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn answers_before_the_callers_own_timer() {
        assert_eq!(
            answer_within(Duration::from_secs(10)),
            Duration::from_millis(9750)
        );
        assert_eq!(
            answer_within(Duration::from_millis(100)),
            Duration::from_millis(90)
        );
        assert_eq!(answer_within(Duration::ZERO), Duration::ZERO);
    }

    #[tokio::test]
    async fn an_operation_outlives_a_caller_that_gives_up_and_a_retry_gets_its_result() {
        let ops = Operations::default();
        let (release, released) = oneshot::channel::<()>();
        let (done, mut finished) = oneshot::channel::<()>();
        let first = ops
            .run(
                "CreateVolume",
                "v",
                "a".into(),
                Some(Duration::from_millis(50)),
                async move {
                    let _ = released.await;
                    let _ = done.send(());
                    Ok::<u32, Status>(7)
                },
            )
            .await;
        assert_eq!(first.unwrap_err().code(), tonic::Code::DeadlineExceeded);
        assert_eq!(ops.running(), 1, "the operation goes on");
        assert!(finished.try_recv().is_err());

        let retry = ops.run("CreateVolume", "v", "a".into(), None, async {
            Ok::<u32, Status>(99)
        });
        let _ = release.send(());
        assert_eq!(
            retry.await.unwrap(),
            7,
            "the retry joined the first operation"
        );
        assert_eq!(ops.running(), 0);
    }

    #[tokio::test]
    async fn a_retry_after_the_operation_finished_gets_its_result_without_a_rerun() {
        let ops = Operations::default();
        let (release, released) = oneshot::channel::<()>();
        let first = ops
            .run(
                "CreateVolume",
                "v",
                "a".into(),
                Some(Duration::from_millis(20)),
                async move {
                    let _ = released.await;
                    Ok::<u32, Status>(7)
                },
            )
            .await;
        assert_eq!(first.unwrap_err().code(), tonic::Code::DeadlineExceeded);
        let _ = release.send(());
        while ops.running() > 0 {
            tokio::task::yield_now().await;
        }
        let rerun = || async { Ok::<u32, Status>(99) };
        let retry = ops.run("CreateVolume", "v", "a".into(), None, rerun());
        assert_eq!(retry.await.unwrap(), 7, "the finished operation's result");
        let other = ops.run("CreateVolume", "v", "b".into(), None, rerun());
        assert_eq!(other.await.unwrap(), 99, "another request runs anew");
        let delete = ops.run("DeleteVolume", "v", "a".into(), None, async {
            Ok::<u32, Status>(1)
        });
        assert_eq!(delete.await.unwrap(), 1);
        let again = ops.run("CreateVolume", "v", "b".into(), None, rerun());
        assert_eq!(
            again.await.unwrap(),
            99,
            "a create after the delete runs anew"
        );
    }

    #[tokio::test]
    async fn a_failed_operation_is_run_again_by_its_retry() {
        let ops = Operations::default();
        let failed = ops
            .run("DeleteVolume", "v", String::new(), None, async {
                Err::<(), Status>(Status::aborted("busy"))
            })
            .await;
        assert_eq!(failed.unwrap_err().code(), tonic::Code::Aborted);
        ops.run("DeleteVolume", "v", String::new(), None, async {
            Ok::<(), Status>(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_caller_that_disconnects_does_not_cancel_the_operation() {
        let ops = Operations::default();
        let (done, finished) = oneshot::channel::<u32>();
        let (started, has_started) = oneshot::channel::<()>();
        let caller = tokio::spawn({
            let ops = ops.clone();
            async move {
                ops.run("DeleteVolume", "v", String::new(), None, async move {
                    let _ = started.send(());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = done.send(1);
                    Ok::<(), Status>(())
                })
                .await
            }
        });
        has_started.await.unwrap();
        caller.abort();
        assert_eq!(finished.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_different_request_for_a_busy_volume_is_aborted() {
        let ops = Operations::default();
        let (release, released) = oneshot::channel::<()>();
        let first = ops.run("CreateVolume", "v", "a".into(), None, async move {
            let _ = released.await;
            Ok::<(), Status>(())
        });
        let other = async {
            tokio::task::yield_now().await;
            let size = ops
                .run("CreateVolume", "v", "b".into(), None, async {
                    Ok::<(), Status>(())
                })
                .await;
            let delete = ops
                .run("DeleteVolume", "v", "a".into(), None, async {
                    Ok::<(), Status>(())
                })
                .await;
            let _ = release.send(());
            (size, delete)
        };
        let (first, (size, delete)) = tokio::join!(first, other);
        first.unwrap();
        assert_eq!(size.unwrap_err().code(), tonic::Code::Aborted);
        assert_eq!(delete.unwrap_err().code(), tonic::Code::Aborted);
        ops.run("DeleteVolume", "v", String::new(), None, async {
            Ok::<(), Status>(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn an_operation_past_its_own_limit_is_deadline_exceeded() {
        let ops = Operations::new(Duration::from_millis(100));
        let result = ops
            .run("DeleteVolume", "v", String::new(), None, async {
                std::future::pending::<()>().await;
                Ok::<(), Status>(())
            })
            .await;
        let status = result.unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(
            status.message().contains("did not finish within"),
            "{status:?}"
        );
        assert_eq!(ops.running(), 0);
    }

    #[tokio::test]
    async fn shutdown_waits_for_running_operations_within_its_grace() {
        let ops = Operations::default();
        let (release, released) = oneshot::channel::<()>();
        let caller = ops.run(
            "DeleteVolume",
            "v",
            String::new(),
            Some(Duration::from_millis(10)),
            async move {
                let _ = released.await;
                Ok::<(), Status>(())
            },
        );
        assert!(caller.await.is_err());
        assert_eq!(ops.drain(Duration::from_millis(30)).await, 1);
        let _ = release.send(());
        assert_eq!(ops.drain(Duration::from_secs(5)).await, 0);
    }

    #[tokio::test]
    async fn errors_reach_every_caller() {
        let ops = Operations::default();
        let status = ops
            .run("DeleteVolume", "v", String::new(), None, async {
                Err::<(), Status>(Status::unavailable("peer n3 is not connected"))
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "peer n3 is not connected");
    }
}
