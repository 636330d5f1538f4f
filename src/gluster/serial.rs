//! glusterd of a pool that multiplexes bricks gets one change at a time.
//!
//! With brick multiplexing, glusterd 10.3 attaches and detaches bricks of a
//! shared glusterfsd process asynchronously, and loses its connection to
//! that process when it goes wrong ("send_attach_req: not connected yet"):
//! with quota, `volume stop` then failed its commit in every run of 20
//! parallel creates and deletes, and such a volume stayed unstoppable on
//! that server (quota is therefore not used there, controller/quota.rs).
//! Without quota, the runs that passed (20 and 50 parallel creates, 20
//! parallel deletes) handed glusterd one change at a time, which costs
//! little there: a multiplexed start or stop takes a fraction of a second.
//! So this backend passes changes (create, set, start, stop, delete,
//! quota) to the glusterd behind it one at a time while the pool
//! multiplexes, and in parallel when it does not. Reads always go through
//! at once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::version::OpVersions;
use super::{
    BrickHeal, BrickState, GlusterError, Glusterd, NewVolume, Peer, VolumeClients, VolumeInfo,
};

/// How long a reading of `cluster.brick-multiplex` is trusted: an operator
/// may turn it on or off at any time; a change is picked up this late.
const REREAD_AFTER: Duration = Duration::from_secs(10);

pub struct SerialChanges {
    inner: Arc<dyn Glusterd>,
    turn: tokio::sync::Mutex<()>,
    /// The last reading of the pool's multiplexing, and when it was made.
    multiplexing: std::sync::Mutex<Option<(Instant, Option<bool>)>>,
}

impl SerialChanges {
    pub fn new(inner: Arc<dyn Glusterd>) -> SerialChanges {
        SerialChanges {
            inner,
            turn: tokio::sync::Mutex::new(()),
            multiplexing: std::sync::Mutex::new(None),
        }
    }

    /// The pool's multiplexing, read at most every [`REREAD_AFTER`]; a
    /// failed reading is not kept.
    async fn reading(&self) -> Result<Option<bool>, GlusterError> {
        let known = *self.multiplexing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((read, on)) = known
            && read.elapsed() < REREAD_AFTER
        {
            return Ok(on);
        }
        let on = self.inner.brick_multiplex().await?;
        *self.multiplexing.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), on));
        Ok(on)
    }

    /// Unknown counts as off: nothing is held up by a pool that cannot say.
    async fn multiplexed(&self) -> bool {
        matches!(self.reading().await, Ok(Some(true)))
    }

    /// The turn to change something, while the pool multiplexes.
    async fn turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.multiplexed().await {
            Some(self.turn.lock().await)
        } else {
            None
        }
    }
}

#[async_trait]
impl Glusterd for SerialChanges {
    async fn peers(&self) -> Result<Vec<Peer>, GlusterError> {
        self.inner.peers().await
    }

    async fn local_uuid(&self) -> Result<String, GlusterError> {
        self.inner.local_uuid().await
    }

    async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>, GlusterError> {
        self.inner.volume(name).await
    }

    async fn volumes(&self) -> Result<Vec<VolumeInfo>, GlusterError> {
        self.inner.volumes().await
    }

    async fn create_volume(&self, volume: &NewVolume) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner.create_volume(volume).await
    }

    async fn set_options(
        &self,
        volume: &str,
        options: &[(String, String)],
    ) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner.set_options(volume, options).await
    }

    async fn start_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner.start_volume(volume, force).await
    }

    async fn stop_volume(&self, volume: &str, force: bool) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner.stop_volume(volume, force).await
    }

    async fn delete_volume(&self, volume: &str) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner.delete_volume(volume).await
    }

    async fn volume_clients(&self, volume: &VolumeInfo) -> Result<VolumeClients, GlusterError> {
        self.inner.volume_clients(volume).await
    }

    async fn settable_options(&self) -> Result<Arc<BTreeSet<String>>, GlusterError> {
        self.inner.settable_options().await
    }

    async fn brick_states(&self, volume: &str) -> Result<Option<Vec<BrickState>>, GlusterError> {
        self.inner.brick_states(volume).await
    }

    async fn heal_summary(&self, volume: &str) -> Result<Vec<BrickHeal>, GlusterError> {
        self.inner.heal_summary(volume).await
    }

    async fn op_versions(&self) -> Result<Option<OpVersions>, GlusterError> {
        self.inner.op_versions().await
    }

    async fn brick_multiplex(&self) -> Result<Option<bool>, GlusterError> {
        self.reading().await
    }

    async fn enable_quota(&self, volume: &str) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner.enable_quota(volume).await
    }

    async fn set_quota_limit(&self, volume: &str, bytes: u64) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner.set_quota_limit(volume, bytes).await
    }

    async fn set_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
        bytes: u64,
    ) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner
            .set_directory_quota_limit(volume, directory, bytes)
            .await
    }

    async fn remove_directory_quota_limit(
        &self,
        volume: &str,
        directory: &str,
    ) -> Result<(), GlusterError> {
        let _turn = self.turn().await;
        self.inner
            .remove_directory_quota_limit(volume, directory)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::FakeGlusterd;

    /// Two changes at once: the second waits for the first only while the
    /// pool multiplexes.
    #[tokio::test]
    async fn changes_wait_their_turn_only_when_multiplexed() {
        for on in [true, false] {
            let fake = Arc::new(FakeGlusterd::default());
            fake.multiplex_bricks(on);
            let serial = SerialChanges::new(fake.clone());
            let held = serial.turn().await;
            assert_eq!(held.is_some(), on);
            let waiting = tokio::time::timeout(
                Duration::from_millis(100),
                serial.set_options("v", &[("user.a".into(), "1".into())]),
            )
            .await;
            assert_eq!(waiting.is_err(), on, "multiplexed: {on}");
            drop(held);
            // Reads never wait.
            let _held = serial.turn().await;
            tokio::time::timeout(Duration::from_millis(100), serial.volumes())
                .await
                .expect("a read goes through")
                .unwrap();
        }
    }
}
