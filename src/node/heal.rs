//! Healing a dead staging mount: mount the volume again as it was staged,
//! then put the fresh mount wherever the dead one is still visible (the
//! kubelet's target paths, and the containers' own mount namespaces), so
//! running pods see their volume again without a restart or a NodePublish.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::staged::StagedRecord;
use super::{NodeError, NodeVolumes, StageRequest, top_of};
use crate::metrics::{self, HealOutcome};
use crate::mount::{DeadFileSystem, PathState, RepairReport};

/// What a heal did.
#[derive(Debug)]
pub struct HealReport {
    pub volume: String,
    pub staging_path: PathBuf,
    pub repair: RepairReport,
    pub took: Duration,
}

impl NodeVolumes {
    /// Heals the staging mount at `staging` if it is dead, or finishes an
    /// earlier heal; `None` if there was nothing to do. Needs the staging
    /// record written at NodeStage.
    pub async fn heal(&self, staging: &Path) -> Result<Option<HealReport>, NodeError> {
        let _staging = self.staging_locks.lock(staging).await;
        let record = self.staged.get(staging).ok_or_else(|| {
            NodeError::NotStaged(format!(
                "the mount at {} is dead and this node has no record of how it was staged \
                 (NodeStageVolume again)",
                staging.display()
            ))
        })?;
        let request = record.request().map_err(|e| {
            NodeError::NotStaged(format!(
                "the staging record of {} is not usable ({e}); NodeStageVolume again",
                staging.display()
            ))
        })?;
        self.heal_locked(&request, record.dead).await
    }

    /// [`NodeVolumes::heal`] with the staging path's lock held, counted in
    /// the metrics by outcome. `pending`: dead file systems an earlier heal
    /// has not replaced yet.
    pub(super) async fn heal_locked(
        &self,
        request: &StageRequest,
        pending: Vec<DeadFileSystem>,
    ) -> Result<Option<HealReport>, NodeError> {
        let healed = self.mount_again(request, pending).await;
        let outcome = match &healed {
            Ok(None) => None,
            Ok(Some(report)) if report.repair.failures.is_empty() => Some(HealOutcome::Healed),
            Ok(Some(_)) => Some(HealOutcome::Partial),
            Err(_) => Some(HealOutcome::Failed),
        };
        if let Some(outcome) = outcome {
            metrics::record_mount_heal(outcome);
        }
        healed
    }

    async fn mount_again(
        &self,
        request: &StageRequest,
        pending: Vec<DeadFileSystem>,
    ) -> Result<Option<HealReport>, NodeError> {
        let started = Instant::now();
        let staging = &request.staging_path;
        let mut repair = RepairReport::default();
        let pool = self.pool_mount_of(request);
        if let Some(pool) = &pool {
            // A dead pool client takes every volume of the pool with it:
            // mounted again first, with this staging path among what it
            // puts back.
            let done = self.heal_pool_mount(pool).await?;
            repair.replaced.extend(done.replaced);
            repair.failures.extend(done.failures);
        }
        let top = top_of(&self.mounter.mount_table()?, staging)
            .filter(|m| m.is_glusterfs())
            .cloned();
        let alive = top.is_some() && self.mounter.path_state(staging) != PathState::Disconnected;
        let mut dead = pending;
        if let Some(top) = top.filter(|_| !alive) {
            dead.push(DeadFileSystem::of(&top));
            // Kept before the dead mount goes: if mounting again fails, the
            // next try still knows what to replace.
            self.staged
                .save(StagedRecord::of(request).with_dead(dead.clone()))?;
            self.unmount_volume(&request.volume_id, staging).await?;
        }
        if dead.is_empty() && repair == RepairReport::default() {
            return Ok(None);
        }
        if !alive {
            // In shared mode this may heal the pool mount first, putting
            // back every volume of the pool on this node.
            let done = self.mount_staging(request).await?;
            repair.replaced.extend(done.replaced);
            repair.failures.extend(done.failures);
        }
        // The clones come from the client's root, each dead mount getting
        // its own directory of it back (a staging path would be the wrong
        // source for another volume's mount of the same pool).
        let fresh = pool.map_or_else(|| staging.clone(), |pool| pool.path);
        for file_system in &dead {
            let done = self.mounter.replace_dead(file_system, &fresh).await?;
            repair.replaced.extend(done.replaced);
            repair.failures.extend(done.failures);
        }
        self.staged.save(StagedRecord::of(request))?;
        let report = HealReport {
            volume: request.context.volume.clone(),
            staging_path: staging.clone(),
            repair,
            took: started.elapsed(),
        };
        log(&report, self.node_id());
        Ok(Some(report))
    }
}

fn log(report: &HealReport, node: &str) {
    let repaired: Vec<String> = report
        .repair
        .replaced
        .iter()
        .map(|m| {
            let owner = match (m.pid, &m.pod) {
                (None, _) => "node".to_string(),
                (Some(pid), Some(pod)) => {
                    format!("pod {pod} (pid {pid}, {} processes)", m.processes)
                }
                (Some(pid), None) => format!("pid {pid} ({} processes)", m.processes),
            };
            format!("{owner}: {}", m.mount_point.display())
        })
        .collect();
    let containers = report
        .repair
        .replaced
        .iter()
        .filter(|m| m.pid.is_some())
        .count();
    tracing::info!(
        volume = %report.volume,
        node,
        staging = %report.staging_path.display(),
        mounts_replaced = report.repair.replaced.len(),
        in_containers = containers,
        repaired = ?repaired,
        took_ms = report.took.as_millis() as u64,
        "dead FUSE mount healed"
    );
    for failure in &report.repair.failures {
        tracing::warn!(volume = %report.volume, node, %failure, "could not put the healed mount back");
    }
}
