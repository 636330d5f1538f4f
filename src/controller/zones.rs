//! Which zone each Gluster server is in (`--server-zone <server>=<zone>`),
//! and how a StorageClass wants replicas spread over zones (`zones`).
//!
//! Zones come from the controller's flags only: reading the nodes'
//! `topology.kubernetes.io/zone` labels would need a Kubernetes client.

use std::collections::BTreeMap;
use std::fmt;

use crate::names::is_host_name;

/// The flag (and its env var) zones are set with, for messages.
pub const FLAG: &str = "--server-zone";

/// One `<server>=<zone>` of `--server-zone`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerZone {
    pub server: String,
    pub zone: String,
}

impl std::str::FromStr for ServerZone {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (server, zone) = text
            .split_once('=')
            .map(|(s, z)| (s.trim(), z.trim()))
            .ok_or_else(|| format!("{text:?} is not <server>=<zone>"))?;
        if !is_host_name(server) {
            return Err(format!(
                "{text:?}: {server:?} is not a host name or IPv4 address (the server's name \
                 as a gluster peer)"
            ));
        }
        if !is_zone(zone) {
            return Err(format!(
                "{text:?}: zone {zone:?} must be 1 to 63 letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit (as a Kubernetes label value)"
            ));
        }
        Ok(ServerZone {
            server: server.to_string(),
            zone: zone.to_string(),
        })
    }
}

impl fmt::Display for ServerZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.server, self.zone)
    }
}

/// A Kubernetes-label-value-like zone name (never empty).
pub fn is_zone(zone: &str) -> bool {
    let bytes = zone.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
}

/// The zone of each server that has one; servers not named have none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerZones(BTreeMap<String, String>);

impl ServerZones {
    /// The map of the flag's `<server>=<zone>` entries, each checked.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let entries = entries
            .iter()
            .map(|e| e.parse())
            .collect::<Result<Vec<ServerZone>, String>>()?;
        ServerZones::from_entries(&entries)
    }

    /// The map of the entries; a server given twice with different zones
    /// is an error (twice with the same zone is harmless).
    pub fn from_entries(entries: &[ServerZone]) -> Result<Self, String> {
        let mut zones = BTreeMap::new();
        for entry in entries {
            match zones.insert(entry.server.clone(), entry.zone.clone()) {
                Some(earlier) if earlier != entry.zone => {
                    return Err(format!(
                        "server {} is given two zones, {earlier} and {}",
                        entry.server, entry.zone
                    ));
                }
                _ => {}
            }
        }
        Ok(ServerZones(zones))
    }

    pub fn zone_of(&self, server: &str) -> Option<&str> {
        self.0.get(server).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The servers named, in order.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// `zone (server, server), ...` by zone, for logs: `a (s1, s2), b (s3)`.
impl fmt::Display for ServerZones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut by_zone: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (server, zone) in &self.0 {
            by_zone.entry(zone).or_default().push(server);
        }
        let parts: Vec<String> = by_zone
            .iter()
            .map(|(zone, servers)| format!("{zone} ({})", servers.join(", ")))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// How a StorageClass wants a volume's bricks spread over zones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZoneRule {
    /// Over as many zones as there are; more than one brick in a zone when
    /// there are fewer zones than replicas.
    #[default]
    Spread,
    /// Every brick in a different named zone, or the volume is not made.
    Distinct,
}

impl ZoneRule {
    pub const NAMES: [&str; 2] = ["spread", "distinct"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "spread" => Some(ZoneRule::Spread),
            "distinct" => Some(ZoneRule::Distinct),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Result<ServerZone, String> {
        text.parse()
    }

    #[test]
    fn entries_are_server_equals_zone() {
        assert_eq!(
            entry("gluster-1=fsn1").unwrap(),
            ServerZone {
                server: "gluster-1".into(),
                zone: "fsn1".into()
            }
        );
        assert_eq!(
            entry(" 10.0.0.3 = eu-central_1.a ").unwrap().zone,
            "eu-central_1.a"
        );
        let long = "z".repeat(63);
        assert_eq!(entry(&format!("s={long}")).unwrap().zone, long);
        for bad in [
            "s1",
            "=a",
            "s1=",
            "s1=-a",
            "s1=a-",
            "s1=a b",
            "s1=a=b",
            "s1=ä",
            "-oProxyCommand=x=a",
            "s 1=a",
            "[::1]=a",
        ] {
            assert!(entry(bad).is_err(), "{bad:?}");
        }
        assert!(entry(&format!("s={}", "z".repeat(64))).is_err());
        let e = entry("s1=a/b").unwrap_err();
        assert!(e.contains("zone \"a/b\""), "{e}");
    }

    #[test]
    fn a_server_in_two_zones_is_refused() {
        let entries: Vec<ServerZone> = ["s1=a", "s2=a", "s1=a", "s3=b"]
            .iter()
            .map(|t| entry(t).unwrap())
            .collect();
        let zones = ServerZones::from_entries(&entries).unwrap();
        assert_eq!(zones.zone_of("s1"), Some("a"));
        assert_eq!(zones.zone_of("s4"), None);
        assert_eq!(zones.to_string(), "a (s1, s2), b (s3)");
        let clash = [entry("s1=a").unwrap(), entry("s1=b").unwrap()];
        assert_eq!(
            ServerZones::from_entries(&clash).unwrap_err(),
            "server s1 is given two zones, a and b"
        );
        let flags = ["s1=a".to_string(), "s2=b".to_string()];
        assert_eq!(
            ServerZones::parse(&flags).unwrap().to_string(),
            "a (s1), b (s2)"
        );
        let bad = ["s1=a".to_string(), "s2".to_string()];
        assert_eq!(
            ServerZones::parse(&bad).unwrap_err(),
            "\"s2\" is not <server>=<zone>"
        );
    }

    #[test]
    fn rules_by_name() {
        assert_eq!(ZoneRule::parse("spread"), Some(ZoneRule::Spread));
        assert_eq!(ZoneRule::parse("distinct"), Some(ZoneRule::Distinct));
        assert_eq!(ZoneRule::parse("Distinct"), None);
        assert_eq!(ZoneRule::default(), ZoneRule::Spread);
    }
}
