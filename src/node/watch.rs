//! The watcher: finds staged volumes whose FUSE client died (ENOTCONN) and
//! heals them, and keeps the FUSE client logs within their size.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{NodeVolumes, top_of};
use crate::mount::PathState;

/// How often the client logs are measured.
const LOG_CHECK: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub interval: Duration,
    /// Size a FUSE client log may reach before it is cut.
    pub log_limit: u64,
}

/// Runs until the task is dropped.
pub async fn run(volumes: Arc<NodeVolumes>, config: WatchConfig) {
    let probing: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
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
        for record in volumes.staged.all() {
            let staging = record.staging_path;
            if top_of(&table, &staging).is_none_or(|m| !m.is_glusterfs()) {
                continue;
            }
            // A probe of a hung (not dead) client may block: one at a time.
            if !lock(&probing).insert(staging.clone()) {
                continue;
            }
            let (volumes, probing) = (Arc::clone(&volumes), Arc::clone(&probing));
            tokio::spawn(async move {
                let mounter = Arc::clone(&volumes.mounter);
                let path = staging.clone();
                let state = tokio::task::spawn_blocking(move || mounter.path_state(&path)).await;
                if matches!(state, Ok(PathState::Disconnected)) {
                    tracing::warn!(path = %staging.display(), "staged volume's FUSE client is gone; healing");
                    if let Err(e) = volumes.heal(&staging).await {
                        tracing::warn!(path = %staging.display(), error = %e, "heal failed; retrying");
                    }
                }
                lock(&probing).remove(&staging);
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

fn lock(set: &Mutex<HashSet<PathBuf>>) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}
