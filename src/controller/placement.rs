//! Which servers get the bricks of a new volume.
//!
//! `replica` distinct usable peers (optionally from an allowed list),
//! spread over as many zones as those peers are in (`--server-zone`), and
//! rotated by a hash of the volume name so that first bricks (the mount's
//! primary server) and arbiters spread evenly over zones and over the
//! servers within each zone. A server without a zone is a zone of its own
//! when spreading, so a pool without zones places as before; it is never
//! used where distinct zones are required (nothing says it is elsewhere).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::zones::{FLAG as ZONE_FLAG, ServerZones, ZoneRule};
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
    #[error(
        "replica {needed} needs servers in {needed} distinct zones (parameters.zones: \
         distinct), but the usable servers are in {found}: {zones}{unzoned}"
    )]
    TooFewZones {
        needed: u32,
        found: usize,
        /// `a (s1, s2), b (s3)`.
        zones: String,
        /// The usable servers left out for having no zone, if any.
        unzoned: String,
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

/// What a new volume asks of placement.
#[derive(Clone, Copy, Debug)]
pub struct BrickPlacement<'a> {
    pub replica: u32,
    /// `parameters.servers`.
    pub allowed: Option<&'a [String]>,
    pub zones: &'a ServerZones,
    pub rule: ZoneRule,
}

impl BrickPlacement<'_> {
    /// Picks the hosts for `replica` bricks, in brick order.
    pub fn place(
        &self,
        volume: &VolumeName,
        peers: &[Peer],
    ) -> Result<Vec<String>, PlacementError> {
        let allowed = self.allowed;
        let candidates = candidates(peers, allowed)?;
        let needed = self.replica as usize;
        if candidates.len() < needed {
            return Err(not_enough_servers(
                peers,
                &candidates,
                self.replica,
                allowed,
            ));
        }
        self.warn_of_partial_zones(volume, peers, &candidates);
        let groups = self.groups(&candidates)?;
        Ok(pick(volume, &groups, needed))
    }

    /// The candidates by zone, zones in order; a server without a zone is
    /// a zone of its own (spread) or left out (distinct).
    fn groups(&self, candidates: &[String]) -> Result<Vec<ZoneGroup>, PlacementError> {
        let mut named: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut unzoned: Vec<String> = Vec::new();
        for server in candidates {
            match self.zones.zone_of(server) {
                Some(zone) => named
                    .entry(zone.to_string())
                    .or_default()
                    .push(server.clone()),
                None => unzoned.push(server.clone()),
            }
        }
        if self.rule == ZoneRule::Distinct && named.len() < self.replica as usize {
            let zones: Vec<String> = named
                .iter()
                .map(|(zone, servers)| format!("{zone} ({})", servers.join(", ")))
                .collect();
            let unzoned = match unzoned.len() {
                0 => String::new(),
                1 => format!("; {} has no zone ({ZONE_FLAG})", unzoned[0]),
                _ => format!("; {} have no zone ({ZONE_FLAG})", unzoned.join(", ")),
            };
            return Err(PlacementError::TooFewZones {
                needed: self.replica,
                found: named.len(),
                zones: if zones.is_empty() {
                    "none".into()
                } else {
                    zones.join(", ")
                },
                unzoned,
            });
        }
        let mut groups: Vec<ZoneGroup> = named
            .into_iter()
            .map(|(zone, servers)| ZoneGroup { key: zone, servers })
            .collect();
        if self.rule == ZoneRule::Spread {
            groups.extend(unzoned.into_iter().map(|server| ZoneGroup {
                key: server.clone(),
                servers: vec![server],
            }));
            groups.sort_by(|a, b| a.key.cmp(&b.key));
        }
        Ok(groups)
    }

    /// Zones that cover only part of the pool are most likely a server
    /// added without one: worth a word, as placement cannot spread it well.
    fn warn_of_partial_zones(&self, volume: &VolumeName, peers: &[Peer], candidates: &[String]) {
        if self.zones.is_empty() {
            return;
        }
        let unzoned: Vec<&str> = candidates
            .iter()
            .map(String::as_str)
            .filter(|s| self.zones.zone_of(s).is_none())
            .collect();
        if !unzoned.is_empty() {
            tracing::warn!(
                volume = %volume,
                unzoned = ?unzoned,
                rule = ?self.rule,
                "some gluster servers have a zone and these have none ({ZONE_FLAG}): spreading \
                 counts each as a zone of its own; distinct zones leave them out"
            );
        }
        let strangers: Vec<&str> = self
            .zones
            .servers()
            .filter(|s| !peers.iter().any(|p| p.hostname == *s))
            .collect();
        if !strangers.is_empty() {
            tracing::warn!(
                volume = %volume,
                servers = ?strangers,
                "{ZONE_FLAG} names servers that are no gluster peer (peers are named as \
                 `gluster pool list` shows them)"
            );
        }
    }
}

fn not_enough_servers(
    peers: &[Peer],
    candidates: &[String],
    replica: u32,
    allowed: Option<&[String]>,
) -> PlacementError {
    let eligible = |p: &&Peer| allowed.is_none_or(|a| a.contains(&p.hostname));
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
    PlacementError::NotEnoughServers {
        needed: replica,
        connected: candidates.len(),
        verb: if candidates.len() == 1 { "is" } else { "are" },
        scope: if allowed.is_some() {
            " from parameters.servers"
        } else {
            ""
        },
        detail,
    }
}

/// The candidates of one zone, sorted.
struct ZoneGroup {
    key: String,
    servers: Vec<String>,
}

/// `needed` servers, round by round over the zones: round `r` takes the
/// `r`-th server (after a per-volume, per-zone rotation) of every zone that
/// still has one, the zones in order starting at one picked by the volume
/// name's hash. Every zone thus gets a brick before any gets a second, and
/// each brick position is uniform over the zones. With one server per zone
/// (no zones set) this is the pool rotated by the hash, as placement always
/// was.
fn pick(volume: &VolumeName, groups: &[ZoneGroup], needed: usize) -> Vec<String> {
    let digest = Sha256::digest(volume.as_str().as_bytes());
    let start = usize::from(u16::from_be_bytes([digest[0], digest[1]])) % groups.len();
    let offsets: Vec<usize> = groups
        .iter()
        .map(|g| match g.servers.len() {
            1 => 0,
            n => {
                let mut hasher = Sha256::new();
                hasher.update(volume.as_str().as_bytes());
                hasher.update([0]);
                hasher.update(g.key.as_bytes());
                let d = hasher.finalize();
                usize::from(u16::from_be_bytes([d[0], d[1]])) % n
            }
        })
        .collect();
    let mut chosen = Vec::with_capacity(needed);
    let mut round = 0;
    while chosen.len() < needed && groups.iter().any(|g| g.servers.len() > round) {
        for i in 0..groups.len() {
            let z = (start + i) % groups.len();
            let group = &groups[z];
            if round < group.servers.len() && chosen.len() < needed {
                chosen.push(group.servers[(offsets[z] + round) % group.servers.len()].clone());
            }
        }
        round += 1;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::zones::ServerZone;

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

    /// Placement without zones, as before them.
    fn place(
        volume: &VolumeName,
        peers: &[Peer],
        replica: u32,
        allowed: Option<&[String]>,
    ) -> Result<Vec<String>, PlacementError> {
        zoned(&[], replica, allowed, ZoneRule::Spread).place(volume, peers)
    }

    fn zones(spec: &[(&str, &str)]) -> ServerZones {
        let entries: Vec<ServerZone> = spec
            .iter()
            .map(|(server, zone)| format!("{server}={zone}").parse().unwrap())
            .collect();
        ServerZones::from_entries(&entries).unwrap()
    }

    fn zoned<'a>(
        spec: &[(&str, &str)],
        replica: u32,
        allowed: Option<&'a [String]>,
        rule: ZoneRule,
    ) -> BrickPlacement<'a> {
        BrickPlacement {
            replica,
            allowed,
            // Leaked: tests only, so the placement can borrow it.
            zones: Box::leak(Box::new(zones(spec))),
            rule,
        }
    }

    /// The zone of each brick, in brick order.
    fn zones_of(hosts: &[String], spec: &[(&str, &str)]) -> Vec<String> {
        let zones = zones(spec);
        hosts
            .iter()
            .map(|h| zones.zone_of(h).unwrap_or("-").to_string())
            .collect()
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    const AABC: [(&str, &str); 4] = [("s1", "a"), ("s2", "a"), ("s3", "b"), ("s4", "c")];

    fn up(hosts: &[&str]) -> Vec<Peer> {
        peers(&hosts.iter().map(|h| (*h, true)).collect::<Vec<_>>())
    }

    #[test]
    fn every_zone_gets_a_brick_when_there_are_enough() {
        let pool = up(&["s1", "s2", "s3", "s4"]);
        for rule in [ZoneRule::Spread, ZoneRule::Distinct] {
            let placement = zoned(&AABC, 3, None, rule);
            for n in 0..200 {
                let hosts = placement.place(&name(n), &pool).unwrap();
                assert_eq!(
                    sorted(zones_of(&hosts, &AABC)),
                    ["a", "b", "c"],
                    "{rule:?} pvc-{n}: {hosts:?}"
                );
            }
        }
    }

    #[test]
    fn zoned_primaries_and_arbiters_spread_over_zones_and_servers() {
        let pool = up(&["s1", "s2", "s3", "s4"]);
        let placement = zoned(&AABC, 3, None, ZoneRule::Spread);
        let mut firsts = BTreeMap::new();
        let mut lasts = BTreeMap::new();
        let mut first_zones = BTreeMap::new();
        let mut last_zones = BTreeMap::new();
        for n in 0..600 {
            let hosts = placement.place(&name(n), &pool).unwrap();
            let zones = zones_of(&hosts, &AABC);
            *firsts.entry(hosts[0].clone()).or_insert(0) += 1;
            *lasts.entry(hosts[2].clone()).or_insert(0) += 1;
            *first_zones.entry(zones[0].clone()).or_insert(0) += 1;
            *last_zones.entry(zones[2].clone()).or_insert(0) += 1;
        }
        assert_eq!(
            firsts.len(),
            4,
            "every server is some volume's primary: {firsts:?}"
        );
        assert_eq!(lasts.len(), 4, "every server holds some arbiter: {lasts:?}");
        for counts in [&first_zones, &last_zones] {
            assert_eq!(counts.len(), 3, "{counts:?}");
            assert!(counts.values().all(|&c| c > 150), "{counts:?}");
        }
        // Zone a's two servers share its part about evenly.
        for counts in [&firsts, &lasts] {
            assert!(counts["s1"] > 50 && counts["s2"] > 50, "{counts:?}");
        }
    }

    #[test]
    fn fewer_zones_than_replicas_spreads_as_far_as_it_goes() {
        let spec = [("s1", "a"), ("s2", "a"), ("s3", "b")];
        let pool = up(&["s1", "s2", "s3"]);
        let placement = zoned(&spec, 3, None, ZoneRule::Spread);
        for n in 0..50 {
            let hosts = placement.place(&name(n), &pool).unwrap();
            assert_eq!(sorted(hosts.clone()), ["s1", "s2", "s3"]);
            assert_eq!(sorted(zones_of(&hosts, &spec)), ["a", "a", "b"]);
        }
        // Four servers in a, one in b, replica 3: b always gets one.
        let spec = [
            ("s1", "a"),
            ("s2", "a"),
            ("s3", "a"),
            ("s4", "a"),
            ("s5", "b"),
        ];
        let pool = up(&["s1", "s2", "s3", "s4", "s5"]);
        let placement = zoned(&spec, 3, None, ZoneRule::Spread);
        for n in 0..100 {
            let hosts = placement.place(&name(n), &pool).unwrap();
            assert_eq!(
                sorted(zones_of(&hosts, &spec)),
                ["a", "a", "b"],
                "{hosts:?}"
            );
            assert_eq!(
                sorted(hosts.clone())
                    .windows(2)
                    .filter(|w| w[0] == w[1])
                    .count(),
                0
            );
        }
    }

    #[test]
    fn distinct_zones_refused_when_too_few_naming_them() {
        let spec = [("s1", "a"), ("s2", "a"), ("s3", "b")];
        let pool = up(&["s1", "s2", "s3"]);
        let e = zoned(&spec, 3, None, ZoneRule::Distinct)
            .place(&name(1), &pool)
            .unwrap_err();
        assert!(
            matches!(e, PlacementError::TooFewZones { found: 2, .. }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "replica 3 needs servers in 3 distinct zones (parameters.zones: distinct), but \
             the usable servers are in 2: a (s1, s2), b (s3)"
        );
        // replica 2 fits.
        let hosts = zoned(&spec, 2, None, ZoneRule::Distinct)
            .place(&name(1), &pool)
            .unwrap();
        assert_eq!(sorted(zones_of(&hosts, &spec)), ["a", "b"]);
    }

    #[test]
    fn unzoned_servers_are_zones_of_their_own_when_spreading_and_unused_when_distinct() {
        let spec = [("s1", "a"), ("s2", "a"), ("s3", "b")];
        let pool = up(&["s1", "s2", "s3", "s4"]);
        let spread = zoned(&spec, 3, None, ZoneRule::Spread);
        let mut s4 = 0;
        for n in 0..200 {
            let hosts = spread.place(&name(n), &pool).unwrap();
            // Zones a, b and s4's own: never both a servers.
            assert_eq!(
                hosts.iter().filter(|h| *h == "s1" || *h == "s2").count(),
                1,
                "{hosts:?}"
            );
            s4 += usize::from(hosts.contains(&"s4".to_string()));
        }
        assert_eq!(s4, 200);
        let e = zoned(&spec, 3, None, ZoneRule::Distinct)
            .place(&name(1), &pool)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("are in 2: a (s1, s2), b (s3); s4 has no zone (--server-zone)"),
            "{e}"
        );
        let e = zoned(&[], 2, None, ZoneRule::Distinct)
            .place(&name(1), &pool)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("are in 0: none; s1, s2, s3, s4 have no zone (--server-zone)"),
            "{e}"
        );
    }

    #[test]
    fn zones_keep_unusable_peers_and_the_allow_list_out() {
        let mut pool = up(&["s1", "s2", "s3", "s4", "s5"]);
        pool[3].connected = false; // s4, zone c
        let spec = [
            ("s1", "a"),
            ("s2", "a"),
            ("s3", "b"),
            ("s4", "c"),
            ("s5", "c"),
        ];
        for n in 0..100 {
            let hosts = zoned(&spec, 3, None, ZoneRule::Distinct)
                .place(&name(n), &pool)
                .unwrap();
            assert!(!hosts.contains(&"s4".to_string()), "{hosts:?}");
            assert_eq!(sorted(zones_of(&hosts, &spec)), ["a", "b", "c"]);
        }
        pool[4].connected = false; // s5: zone c has nobody usable
        let e = zoned(&spec, 3, None, ZoneRule::Distinct)
            .place(&name(1), &pool)
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("are in 2: a (s1, s2), b (s3)"), "{e}");
        let allowed = vec!["s1".to_string(), "s2".to_string(), "s3".to_string()];
        let pool = up(&["s1", "s2", "s3", "s4", "s5"]);
        for n in 0..50 {
            let hosts = zoned(&spec, 2, Some(&allowed), ZoneRule::Distinct)
                .place(&name(n), &pool)
                .unwrap();
            assert!(hosts.iter().all(|h| allowed.contains(h)), "{hosts:?}");
            assert_eq!(sorted(zones_of(&hosts, &spec)), ["a", "b"]);
        }
        assert!(matches!(
            zoned(&spec, 3, Some(&allowed), ZoneRule::Distinct).place(&name(1), &pool),
            Err(PlacementError::TooFewZones { found: 2, .. })
        ));
    }

    #[test]
    fn without_zones_placement_is_what_it_was() {
        // The pool sorted, rotated by the first two bytes of the name's hash.
        let pool = up(&["e", "b", "d", "a", "c"]);
        let servers = ["a", "b", "c", "d", "e"];
        for n in 0..50 {
            let digest = Sha256::digest(name(n).as_str().as_bytes());
            let start = usize::from(u16::from_be_bytes([digest[0], digest[1]])) % 5;
            let expected: Vec<&str> = (0..3).map(|i| servers[(start + i) % 5]).collect();
            assert_eq!(place(&name(n), &pool, 3, None).unwrap(), expected);
        }
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
