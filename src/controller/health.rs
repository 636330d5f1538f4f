//! Volume health from gluster itself: which bricks run (`volume status`) and
//! what waits for self-heal or sits in split-brain (glfsheal's summary).
//! ControllerGetVolume turns it into the CSI volume condition; it is a plain
//! value so other readers (metrics) can use the same numbers.

use std::fmt::Write as _;

use crate::gluster::{BrickHeal, BrickState, VolumeInfo, VolumeStatus};
use crate::ownership::Ownership;

/// Where the conditions below are explained, with what to do.
pub const HEALTH_DOC: &str = "docs/troubleshooting.md#volume-health";

/// A brick of the volume that serves no data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownBrick {
    pub host: String,
    pub path: String,
    pub reason: DownReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// glusterd on its server reports its process is not running.
    ProcessNotRunning,
    /// Its server's glusterd does not answer, so nobody can say.
    ServerNotAnswering,
}

/// The self-heal backlog, as the most behind brick sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealBacklog {
    /// Entries waiting for self-heal (or being healed), split-brain ones not
    /// included.
    pub pending: u64,
    pub split_brain: u64,
}

/// One volume's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeHealth {
    pub volume: String,
    pub status: VolumeStatus,
    /// Marked for deletion by this driver: a DeleteVolume (or a create's
    /// rollback) began and its retry finishes it.
    pub being_deleted: bool,
    /// Empty when the volume is not started (nothing runs by design).
    pub bricks_down: Vec<DownBrick>,
    /// `None` for volumes without replicas (nothing to heal) or not started;
    /// `Err` says why glfsheal could not tell.
    pub heal: Option<Result<HealBacklog, String>>,
}

impl VolumeHealth {
    /// From `volume info`, `volume status` (`None`: not started) and, for a
    /// started replicated volume, glfsheal's summary.
    pub fn assess(
        volume: &VolumeInfo,
        states: Option<&[BrickState]>,
        heal: Option<Result<&[BrickHeal], String>>,
    ) -> VolumeHealth {
        let bricks_down = match states {
            None => Vec::new(),
            Some(states) => volume
                .bricks
                .iter()
                .filter_map(|brick| {
                    let reason = match states
                        .iter()
                        .find(|s| s.host == brick.host && s.path == brick.path)
                    {
                        Some(state) if state.online => return None,
                        Some(_) => DownReason::ProcessNotRunning,
                        None => DownReason::ServerNotAnswering,
                    };
                    Some(DownBrick {
                        host: brick.host.clone(),
                        path: brick.path.clone(),
                        reason,
                    })
                })
                .collect(),
        };
        let status = if states.is_none() && volume.status == VolumeStatus::Started {
            // Stopped between `volume info` and `volume status`.
            VolumeStatus::Stopped
        } else {
            volume.status.clone()
        };
        VolumeHealth {
            volume: volume.name.clone(),
            status,
            being_deleted: matches!(
                Ownership::of(volume),
                Ownership::Ours { deleting: true, .. }
            ),
            bricks_down,
            heal: heal.map(|h| h.map(backlog)),
        }
    }

    pub fn heal_pending(&self) -> u64 {
        match &self.heal {
            Some(Ok(backlog)) => backlog.pending,
            _ => 0,
        }
    }

    pub fn split_brain(&self) -> u64 {
        match &self.heal {
            Some(Ok(backlog)) => backlog.split_brain,
            _ => 0,
        }
    }

    /// Anything a person should look at.
    pub fn abnormal(&self) -> bool {
        self.status != VolumeStatus::Started
            || self.being_deleted
            || !self.bricks_down.is_empty()
            || matches!(self.heal, Some(Err(_)))
            || self.heal_pending() > 0
            || self.split_brain() > 0
    }

    /// What is wrong and what to do, worst first; "healthy" otherwise.
    pub fn message(&self) -> String {
        let volume = &self.volume;
        let mut problems: Vec<String> = Vec::new();
        match &self.status {
            _ if self.being_deleted => problems.push(format!(
                "gluster volume {volume} is being deleted: a DeleteVolume began and did not \
                 finish yet; the CO's retry (or the next CreateVolume of its name) completes it"
            )),
            VolumeStatus::Started => {}
            other => problems.push(format!(
                "gluster volume {volume} is not started ({}): no client can mount it; start it \
                 with `gluster volume start {volume}`",
                match other {
                    VolumeStatus::Created => "created",
                    VolumeStatus::Stopped => "stopped",
                    VolumeStatus::Started => "started",
                    VolumeStatus::Other(s) => s.as_str(),
                }
            )),
        }
        if self.split_brain() > 0 {
            let n = self.split_brain();
            problems.push(format!(
                "{n} {} in split-brain: the replicas disagree and gluster will not pick one by \
                 itself; list them with `gluster volume heal {volume} info split-brain` and \
                 resolve each (`gluster volume heal {volume} split-brain latest-mtime <file>` \
                 or `bigger-file`/`source-brick`)",
                plural(n, "file", "files")
            ));
        }
        for brick in &self.bricks_down {
            problems.push(match brick.reason {
                DownReason::ProcessNotRunning => format!(
                    "brick {}:{} on server {} is down (its glusterfsd is not running); the other \
                     replicas serve the data; restart it with `gluster volume start {volume} \
                     force` and check the brick log on {}",
                    brick.host, brick.path, brick.host, brick.host
                ),
                DownReason::ServerNotAnswering => format!(
                    "brick {}:{} is unreachable: glusterd on server {} does not answer (server \
                     down or disconnected from the pool); bring the server back",
                    brick.host, brick.path, brick.host
                ),
            });
        }
        if self.heal_pending() > 0 {
            let n = self.heal_pending();
            problems.push(format!(
                "{n} {} pending heal: a replica missed writes and the self-heal daemon has not \
                 caught up yet (it usually does by itself once every brick is up; `gluster volume \
                 heal {volume}` starts it now)",
                plural(n, "entry", "entries")
            ));
        }
        if let Some(Err(why)) = &self.heal {
            problems.push(format!("the self-heal state is unknown: {why}"));
        }
        if problems.is_empty() {
            return format!("gluster volume {volume} is healthy");
        }
        let mut message = problems.join("; ");
        let _ = write!(message, " (see {HEALTH_DOC})");
        message
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// Pending and split-brain entries of the brick that has most: each brick
/// lists the entries it holds for the others, so a file missed by one brick
/// shows on every other one; the maximum counts it once.
fn backlog(bricks: &[BrickHeal]) -> HealBacklog {
    let max = |f: fn(&BrickHeal) -> u64| bricks.iter().map(f).max().unwrap_or(0);
    HealBacklog {
        pending: max(|b| b.pending.unwrap_or(0) + b.possibly_healing.unwrap_or(0)),
        split_brain: max(|b| b.split_brain.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::{Brick, CAPTURES, Capture};

    /// The replica 3 volume the health fixtures show, as `volume info` would.
    fn volume_of(states: &[BrickState]) -> VolumeInfo {
        VolumeInfo {
            name: "hs".into(),
            id: "id".into(),
            status: VolumeStatus::Started,
            replica_count: 3,
            arbiter_count: 0,
            type_name: "Replicate".into(),
            bricks: states
                .iter()
                .map(|s| Brick {
                    host: s.host.clone(),
                    path: s.path.clone(),
                    host_uuid: String::new(),
                    is_arbiter: false,
                })
                .collect(),
            options: Default::default(),
        }
    }

    fn states(c: &Capture, name: &str) -> Vec<BrickState> {
        c.envelope(name).brick_states().unwrap()
    }

    fn heal(c: &Capture, name: &str) -> Vec<BrickHeal> {
        c.envelope(name).heal_summary().unwrap()
    }

    #[test]
    fn a_healthy_volume_is_normal() {
        for c in &CAPTURES {
            let states = states(c, "volume_status.xml");
            assert_eq!(states.len(), 3, "{}: daemons are not bricks", c.release);
            assert!(states.iter().all(|s| s.online && s.pid.is_some()));
            let heal = heal(c, "heal_info_summary.xml");
            let health = VolumeHealth::assess(&volume_of(&states), Some(&states), Some(Ok(&heal)));
            assert!(!health.abnormal(), "{}: {}", c.release, health.message());
            assert_eq!(health.message(), "gluster volume hs is healthy");
        }
    }

    #[test]
    fn a_dead_brick_process_is_named_with_its_server() {
        for c in &CAPTURES {
            let states = states(c, "volume_status_brick_down.xml");
            let down: Vec<&BrickState> = states.iter().filter(|s| !s.online).collect();
            assert_eq!(down.len(), 1, "{}", c.release);
            assert_eq!(down[0].host, format!("{}.3", c.health_block));
            assert_eq!(down[0].pid, None, "{}", c.release);
            let heal = heal(c, "heal_info_summary_brick_down.xml");
            let unread: Vec<&BrickHeal> = heal.iter().filter(|b| !b.connected()).collect();
            assert_eq!(unread.len(), 1, "{}", c.release);
            assert_eq!(unread[0].pending, None);
            assert!(
                unread[0]
                    .status
                    .ends_with("(Transport endpoint is not connected)"),
                "{}: {:?}",
                c.release,
                unread[0].status
            );
            let health = VolumeHealth::assess(&volume_of(&states), Some(&states), Some(Ok(&heal)));
            assert!(health.abnormal());
            let message = health.message();
            let brick = format!("{}:{}", down[0].host, down[0].path);
            assert!(
                message.contains(&format!("brick {brick} on server {} is down", down[0].host))
                    && message.contains("gluster volume start hs force")
                    && message.contains(HEALTH_DOC),
                "{}: {message}",
                c.release
            );
        }
    }

    #[test]
    fn a_server_whose_glusterd_is_down_leaves_its_brick_unreachable() {
        for c in &CAPTURES {
            let all = states(c, "volume_status.xml");
            let states = states(c, "volume_status_peer_down.xml");
            assert_eq!(states.len(), 2, "{}: node 3 is left out", c.release);
            let health = VolumeHealth::assess(&volume_of(&all), Some(&states), None);
            assert_eq!(health.bricks_down.len(), 1);
            assert_eq!(health.bricks_down[0].reason, DownReason::ServerNotAnswering);
            assert!(
                health
                    .message()
                    .contains(&format!("glusterd on server {}.3", c.health_block)),
                "{}: {}",
                c.release,
                health.message()
            );
        }
    }

    #[test]
    fn entries_pending_heal_are_counted_once() {
        for c in &CAPTURES {
            let states = states(c, "volume_status.xml");
            let heal = heal(c, "heal_info_summary_pending.xml");
            assert!(heal.iter().all(BrickHeal::connected), "{}", c.release);
            let health = VolumeHealth::assess(&volume_of(&states), Some(&states), Some(Ok(&heal)));
            // Five files and their directory, written while brick 3 was down.
            assert_eq!(health.heal_pending(), 6, "{}", c.release);
            assert_eq!(health.split_brain(), 0);
            assert!(health.abnormal());
            assert!(
                health.message().starts_with("6 entries pending heal"),
                "{}: {}",
                c.release,
                health.message()
            );
        }
    }

    #[test]
    fn split_brain_comes_first_with_what_to_do() {
        for c in &CAPTURES {
            let states = states(c, "volume_status.xml");
            let heal = heal(c, "heal_info_summary_split_brain.xml");
            let health = VolumeHealth::assess(&volume_of(&states), Some(&states), Some(Ok(&heal)));
            assert_eq!(health.split_brain(), 1, "{}", c.release);
            let message = health.message();
            assert!(
                message.starts_with("1 file in split-brain")
                    && message.contains("gluster volume heal hs info split-brain"),
                "{}: {message}",
                c.release
            );
        }
    }

    #[test]
    fn a_stopped_volume_and_an_unknown_heal_state_are_abnormal() {
        let c = &CAPTURES[0];
        let states = states(c, "volume_status.xml");
        let mut volume = volume_of(&states);
        volume.status = VolumeStatus::Stopped;
        let health = VolumeHealth::assess(&volume, None, None);
        assert!(health.abnormal() && health.bricks_down.is_empty());
        assert!(health.message().contains("is not started (stopped)"));

        volume.status = VolumeStatus::Started;
        let health = VolumeHealth::assess(
            &volume,
            Some(&states),
            Some(Err("glfsheal timed out".into())),
        );
        assert!(health.abnormal());
        assert!(
            health
                .message()
                .contains("self-heal state is unknown: glfsheal timed out")
        );
    }
}
