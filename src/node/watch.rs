//! The watcher: finds staged volumes whose FUSE client died (ENOTCONN) and
//! heals them, retries heals that could not finish (with backoff), and
//! keeps the FUSE client logs within their size.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{NodeVolumes, top_of};
use crate::mount::PathState;

/// How often the client logs are measured.
const LOG_CHECK: Duration = Duration::from_secs(30);
/// Longest wait between two tries of a heal that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub interval: Duration,
    /// Size a FUSE client log may reach before it is cut.
    pub log_limit: u64,
}

/// What the watcher knows of one staging path.
#[derive(Default)]
struct Watched {
    /// A probe or heal runs (a probe of a hung, not dead, client may block).
    busy: bool,
    failures: u32,
    next_try: Option<Instant>,
}

type Watchlist = Arc<Mutex<HashMap<PathBuf, Watched>>>;

/// Runs until the task is dropped.
pub async fn run(volumes: Arc<NodeVolumes>, config: WatchConfig) {
    volumes.release_idle_pool_mounts().await;
    let watched: Watchlist = Arc::default();
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logs_checked = Instant::now();
    loop {
        tick.tick().await;
        let table = match volumes.mounter.mount_table() {
            Ok(table) => table,
            Err(e) => {
                tracing::warn!(error = %e, "watcher cannot read the mount table");
                continue;
            }
        };
        let records = volumes.staged.all();
        lock(&watched).retain(|path, _| records.iter().any(|r| &r.staging_path == path));
        for record in records {
            let staging = record.staging_path;
            let mounted = top_of(&table, &staging).is_some_and(|m| m.is_glusterfs());
            // Not mounted: only a heal that could not mount again is retried.
            if !mounted && record.dead.is_empty() {
                continue;
            }
            {
                let mut watched = lock(&watched);
                let entry = watched.entry(staging.clone()).or_default();
                if entry.busy || entry.next_try.is_some_and(|t| t > Instant::now()) {
                    continue;
                }
                entry.busy = true;
            }
            let (volumes, watched) = (Arc::clone(&volumes), Arc::clone(&watched));
            tokio::spawn(async move {
                let dead = if mounted {
                    let mounter = Arc::clone(&volumes.mounter);
                    let path = staging.clone();
                    let state =
                        tokio::task::spawn_blocking(move || mounter.path_state(&path)).await;
                    matches!(state, Ok(PathState::Disconnected))
                } else {
                    true
                };
                let healed = if dead {
                    tracing::warn!(path = %staging.display(), "staged volume's FUSE client is gone; healing");
                    volumes.heal(&staging).await.map(drop)
                } else {
                    Ok(())
                };
                let mut watched = lock(&watched);
                let entry = watched.entry(staging.clone()).or_default();
                entry.busy = false;
                match healed {
                    Ok(()) => {
                        entry.failures = 0;
                        entry.next_try = None;
                    }
                    Err(e) => {
                        entry.failures += 1;
                        let wait = backoff(entry.failures);
                        entry.next_try = Some(Instant::now() + wait);
                        tracing::warn!(path = %staging.display(), error = %e, retry_in_s = wait.as_secs(), "heal failed");
                    }
                }
            });
        }
        if let Some(dir) = &volumes.config.mount_log_dir
            && logs_checked.elapsed() >= LOG_CHECK
        {
            logs_checked = Instant::now();
            let (dir, limit) = (dir.clone(), config.log_limit);
            let cut =
                tokio::task::spawn_blocking(move || super::logs::cut_oversized(&dir, limit)).await;
            if let Ok(Err(e)) = cut {
                tracing::warn!(error = %e, "checking FUSE client log sizes");
            }
        }
    }
}

/// 1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

fn lock(watched: &Watchlist) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Watched>> {
    watched.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_ceiling() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
