//! GetCapacity: how big a volume placement could make now, from the free
//! space of the brick roots on the servers a StorageClass allows.

use std::collections::BTreeMap;

use futures_util::future::join_all;

use super::bricks::RootCheck;
use super::{
    BrickRootProblem, ControllerError, Provisioner, ServerZones, StorageClassParams, ZoneRule,
    placement,
};

/// Free space of one candidate server's brick root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpace {
    pub server: String,
    /// `None`: this server cannot take a brick now (no answer, or its brick
    /// root is missing or refused); why, for the log.
    pub available_bytes: Option<u64>,
    pub why_not: Option<String>,
}

/// What a new volume of these parameters can get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// The `replica`-th largest free space over distinct usable servers
    /// (every brick of a replica set holds the whole volume); 0 when fewer
    /// than `replica` servers can take a brick.
    pub available_bytes: u64,
    pub servers: Vec<ServerSpace>,
}

impl Capacity {
    fn of(replica: u32, servers: Vec<ServerSpace>) -> Capacity {
        let free: Vec<u64> = servers.iter().filter_map(|s| s.available_bytes).collect();
        Capacity {
            available_bytes: replica_th_largest(replica, free),
            servers,
        }
    }

    /// For `zones: distinct`: one brick per zone, so the emptiest server of
    /// each zone counts; servers without a zone do not.
    fn of_distinct_zones(replica: u32, servers: Vec<ServerSpace>, zones: &ServerZones) -> Capacity {
        let mut best: BTreeMap<&str, u64> = BTreeMap::new();
        for server in &servers {
            if let (Some(zone), Some(free)) =
                (zones.zone_of(&server.server), server.available_bytes)
            {
                let most = best.entry(zone).or_default();
                *most = (*most).max(free);
            }
        }
        let available_bytes = replica_th_largest(replica, best.into_values().collect());
        Capacity {
            available_bytes,
            servers,
        }
    }
}

/// The `replica`-th largest of `free`; 0 if there are fewer.
fn replica_th_largest(replica: u32, mut free: Vec<u64>) -> u64 {
    free.sort_unstable_by(|a, b| b.cmp(a));
    match replica as usize {
        0 => 0,
        n => free.get(n - 1).copied().unwrap_or(0),
    }
}

impl Provisioner {
    /// Free space for a new volume of `params`: the connected servers
    /// placement may use (`servers`), each asked (in parallel, as create
    /// does) what its brick root (`brickRoot`) holds; the minimum over the
    /// `replica` emptiest of them. A server whose root create would refuse
    /// (missing; on the root file system unless allowed) does not count.
    pub async fn capacity(&self, params: &StorageClassParams) -> Result<Capacity, ControllerError> {
        let peers = self
            .glusterd
            .peers()
            .await
            .map_err(ControllerError::gluster("listing gluster peers"))?;
        let candidates = placement::candidates(&peers, params.servers.as_deref())?;
        let root = params
            .brick_root
            .as_deref()
            .unwrap_or(&self.config.default_brick_root);
        let allow_root_filesystem = params
            .allow_root_filesystem_bricks
            .unwrap_or(self.config.allow_root_filesystem_bricks);
        let answers = join_all(candidates.iter().map(|s| self.bricks.check_root(s, root))).await;
        let servers = candidates
            .into_iter()
            .zip(answers)
            .map(|(server, answer)| {
                let (available_bytes, why_not) = match answer {
                    Ok(RootCheck::Checked(report)) => {
                        match BrickRootProblem::of(&report, allow_root_filesystem) {
                            None => (Some(report.available_bytes), None),
                            Some(problem) => (None, Some(format!("{problem:?}"))),
                        }
                    }
                    Ok(RootCheck::NotChecked) => {
                        (None, Some("this transport cannot check brick roots".into()))
                    }
                    Err(e) => (None, Some(e.to_string())),
                };
                ServerSpace {
                    server,
                    available_bytes,
                    why_not,
                }
            })
            .collect();
        let capacity = match params.zones {
            ZoneRule::Spread => Capacity::of(params.replica, servers),
            ZoneRule::Distinct => {
                Capacity::of_distinct_zones(params.replica, servers, &self.config.server_zones)
            }
        };
        tracing::debug!(root, replica = params.replica, ?capacity, "capacity");
        Ok(capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(server: &str, free: Option<u64>) -> ServerSpace {
        ServerSpace {
            server: server.into(),
            available_bytes: free,
            why_not: None,
        }
    }

    #[test]
    fn the_replica_th_emptiest_server_bounds_a_new_volume() {
        let servers = vec![
            space("a", Some(5)),
            space("b", Some(9)),
            space("c", Some(7)),
            space("d", Some(1)),
            space("e", None),
        ];
        assert_eq!(Capacity::of(1, servers.clone()).available_bytes, 9);
        assert_eq!(Capacity::of(2, servers.clone()).available_bytes, 7);
        assert_eq!(Capacity::of(3, servers.clone()).available_bytes, 5);
        assert_eq!(Capacity::of(4, servers.clone()).available_bytes, 1);
        assert_eq!(Capacity::of(5, servers).available_bytes, 0);
    }

    #[test]
    fn distinct_zones_count_each_zones_emptiest_server_once() {
        let zones =
            ServerZones::parse(&["a=x".into(), "b=x".into(), "c=y".into(), "d=z".into()]).unwrap();
        let servers = vec![
            space("a", Some(5)),
            space("b", Some(9)),
            space("c", Some(7)),
            space("d", Some(1)),
            space("e", Some(100)),
        ];
        let of = |replica| Capacity::of_distinct_zones(replica, servers.clone(), &zones);
        assert_eq!(of(1).available_bytes, 9, "zone x's best");
        assert_eq!(of(2).available_bytes, 7, "x and y");
        assert_eq!(of(3).available_bytes, 1, "x, y and z; e has no zone");
        assert_eq!(of(4).available_bytes, 0, "three zones only");
    }
}
