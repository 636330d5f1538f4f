//! Which servers get the bricks of a new volume.
//!
//! Today: `replica` distinct usable peers (optionally from an allowed
//! list), rotated by a hash of the volume name so that first bricks (the
//! mount's primary server) and arbiters spread evenly over the pool. Zone
//! awareness belongs here when it comes.

use sha2::{Digest, Sha256};

use crate::gluster::Peer;
use crate::names::VolumeName;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("parameters.servers: {0:?} is not a peer of the gluster pool (peers: {1})")]
    UnknownServer(String, String),
    #[error(
        "replica {needed} needs {needed} connected gluster servers{scope}, but only {connected} \
         {verb} connected and in the pool ({detail})"
    )]
    NotEnoughServers {
        needed: u32,
        connected: usize,
        verb: &'static str,
        scope: &'static str,
        detail: String,
    },
}

/// The distinct usable peers bricks may go to (all, or those `allowed`),
/// sorted; an allowed name that is no peer is an error.
pub fn candidates(
    peers: &[Peer],
    allowed: Option<&[String]>,
) -> Result<Vec<String>, PlacementError> {
    check_allowed(peers, allowed)?;
    let mut candidates: Vec<String> = peers
        .iter()
        .filter(|p| allowed.is_none_or(|a| a.contains(&p.hostname)))
        .filter(|p| p.usable())
        .map(|p| p.hostname.clone())
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    Ok(candidates)
}

fn check_allowed(peers: &[Peer], allowed: Option<&[String]>) -> Result<(), PlacementError> {
    if let Some(allowed) = allowed {
        for server in allowed {
            if !peers.iter().any(|p| &p.hostname == server) {
                let names: Vec<&str> = peers.iter().map(|p| p.hostname.as_str()).collect();
                return Err(PlacementError::UnknownServer(
                    server.clone(),
                    names.join(", "),
                ));
            }
        }
    }
    Ok(())
}

/// Picks the hosts for `replica` bricks, in brick order.
pub fn place(
    volume: &VolumeName,
    peers: &[Peer],
    replica: u32,
    allowed: Option<&[String]>,
) -> Result<Vec<String>, PlacementError> {
    let candidates = candidates(peers, allowed)?;
    let eligible = |p: &&Peer| allowed.is_none_or(|a| a.contains(&p.hostname));
    let needed = replica as usize;
    if candidates.len() < needed {
        let down: Vec<String> = peers
            .iter()
            .filter(eligible)
            .filter(|p| !p.usable())
            .map(|p| format!("{} ({})", p.hostname, p.condition()))
            .collect();
        let detail = format!(
            "usable: [{}]; not usable: [{}]",
            candidates.join(", "),
            down.join(", ")
        );
        return Err(PlacementError::NotEnoughServers {
            needed: replica,
            connected: candidates.len(),
            verb: if candidates.len() == 1 { "is" } else { "are" },
            scope: if allowed.is_some() {
                " from parameters.servers"
            } else {
                ""
            },
            detail,
        });
    }
    let digest = Sha256::digest(volume.as_str().as_bytes());
    let start = usize::from(u16::from_be_bytes([digest[0], digest[1]])) % candidates.len();
    Ok((0..needed)
        .map(|i| candidates[(start + i) % candidates.len()].clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(spec: &[(&str, bool)]) -> Vec<Peer> {
        spec.iter()
            .enumerate()
            .map(|(i, (host, connected))| Peer {
                uuid: format!("u{i}"),
                hostname: host.to_string(),
                connected: *connected,
                in_cluster: true,
                state: "Peer in Cluster".into(),
                is_local: i == 0,
            })
            .collect()
    }

    fn name(n: usize) -> VolumeName {
        VolumeName::for_csi_name(&format!("pvc-{n}")).unwrap()
    }

    #[test]
    fn distinct_connected_servers() {
        let pool = peers(&[("a", true), ("b", true), ("c", true), ("d", false)]);
        for n in 0..50 {
            let hosts = place(&name(n), &pool, 3, None).unwrap();
            assert_eq!(hosts.len(), 3);
            assert!(!hosts.contains(&"d".to_string()));
            let mut unique = hosts.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 3);
        }
    }

    #[test]
    fn primaries_spread_over_the_pool() {
        let pool = peers(&[("a", true), ("b", true), ("c", true)]);
        let mut firsts = std::collections::BTreeMap::new();
        for n in 0..300 {
            *firsts
                .entry(place(&name(n), &pool, 3, None).unwrap()[0].clone())
                .or_insert(0) += 1;
        }
        assert_eq!(firsts.len(), 3);
        assert!(firsts.values().all(|&count| count > 60), "{firsts:?}");
    }

    #[test]
    fn not_enough_connected_servers_says_which() {
        let pool = peers(&[("a", true), ("b", true), ("c", false)]);
        let e = place(&name(1), &pool, 3, None).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("replica 3 needs 3 connected"), "{text}");
        assert!(text.contains("not usable: [c (disconnected)]"), "{text}");
    }

    #[test]
    fn a_rejected_peer_gets_no_bricks() {
        let mut pool = peers(&[("a", true), ("b", true), ("c", true), ("d", true)]);
        pool[3].in_cluster = false;
        pool[3].state = "Peer Rejected".into();
        for n in 0..20 {
            assert!(
                !place(&name(n), &pool, 3, None)
                    .unwrap()
                    .contains(&"d".to_string())
            );
        }
        pool[2].connected = false;
        let text = place(&name(1), &pool, 3, None).unwrap_err().to_string();
        assert!(
            text.contains("d (Peer Rejected)") && text.contains("c (disconnected)"),
            "{text}"
        );
    }

    #[test]
    fn allowed_servers_restrict_and_must_exist() {
        let pool = peers(&[("a", true), ("b", true), ("c", true)]);
        let allowed = vec!["a".to_string(), "c".to_string()];
        let hosts = place(&name(1), &pool, 2, Some(&allowed)).unwrap();
        assert!(hosts.iter().all(|h| h != "b"));
        assert!(matches!(
            place(&name(1), &pool, 3, Some(&allowed)),
            Err(PlacementError::NotEnoughServers { .. })
        ));
        let unknown = vec!["x".to_string()];
        assert!(matches!(
            place(&name(1), &pool, 1, Some(&unknown)),
            Err(PlacementError::UnknownServer(..))
        ));
    }
}
