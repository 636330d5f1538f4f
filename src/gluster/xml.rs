//! Parsing of `gluster --xml` output.

use std::collections::{BTreeMap, BTreeSet};

use roxmltree::{Document, Node};

use super::error::GlusterError;
use super::{Brick, BrickHeal, BrickState, Peer, VolumeInfo, VolumeStatus};

/// The `<cliOutput>` envelope every `--xml` command prints.
#[derive(Debug)]
pub struct Envelope {
    pub op_ret: i32,
    pub op_errno: i32,
    pub op_errstr: String,
    text: String,
    command: String,
}

impl Envelope {
    pub fn parse(command: &str, text: &str) -> Result<Envelope, GlusterError> {
        let doc = document(command, text)?;
        let root = doc.root_element();
        if root.tag_name().name() != "cliOutput" {
            return Err(bad(command, "root element is not <cliOutput>"));
        }
        let number = |tag: &str| -> Result<i32, GlusterError> {
            child_text(root, tag)
                .ok_or_else(|| bad(command, &format!("<{tag}> missing")))?
                .trim()
                .parse()
                .map_err(|_| bad(command, &format!("<{tag}> is not a number")))
        };
        Ok(Envelope {
            op_ret: number("opRet")?,
            op_errno: number("opErrno")?,
            op_errstr: child_text(root, "opErrstr").unwrap_or_default().to_string(),
            text: text.to_string(),
            command: command.to_string(),
        })
    }

    pub fn failed(&self) -> bool {
        self.op_ret != 0
    }

    /// `pool list`: every peer, the local one included (as `localhost`).
    pub fn peers(&self) -> Result<Vec<Peer>, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        let status = descendant(doc.root_element(), "peerStatus")
            .ok_or_else(|| bad(&self.command, "<peerStatus> missing"))?;
        status
            .children()
            .filter(|n| n.has_tag_name("peer"))
            .map(|peer| {
                let uuid = required(&self.command, peer, "uuid")?;
                let hostname = required(&self.command, peer, "hostname")?;
                let is_local = hostname == "localhost";
                // glusterd's friend state 3 is "Peer in Cluster"; the local
                // entry carries no state.
                Ok(Peer {
                    in_cluster: is_local || child_text(peer, "state") == Some("3"),
                    state: child_text(peer, "stateStr")
                        .unwrap_or("Peer in Cluster")
                        .to_string(),
                    is_local,
                    connected: child_text(peer, "connected") == Some("1"),
                    uuid,
                    hostname,
                })
            })
            .collect()
    }

    /// `volume get all <option>`: its value.
    pub fn global_option(&self, option: &str) -> Result<String, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        let opts = descendant(doc.root_element(), "volGetopts")
            .ok_or_else(|| bad(&self.command, "<volGetopts> missing"))?;
        opts.children()
            .filter(|n| n.has_tag_name("Opt"))
            .find(|o| child_text(*o, "Option") == Some(option))
            .and_then(|o| child_text(o, "Value"))
            .map(str::to_string)
            .ok_or_else(|| bad(&self.command, &format!("no value for {option}")))
    }

    /// `system:: uuid get`.
    pub fn uuid(&self) -> Result<String, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        descendant(doc.root_element(), "uuidGenerate")
            .and_then(|n| child_text(n, "uuid"))
            .map(str::to_string)
            .ok_or_else(|| bad(&self.command, "<uuidGenerate><uuid> missing"))
    }

    /// `volume info [NAME]`.
    pub fn volumes(&self) -> Result<Vec<VolumeInfo>, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        let volumes = descendant(doc.root_element(), "volumes")
            .ok_or_else(|| bad(&self.command, "<volumes> missing"))?;
        volumes
            .children()
            .filter(|n| n.has_tag_name("volume"))
            .map(|v| self.volume(v))
            .collect()
    }

    fn volume(&self, v: Node) -> Result<VolumeInfo, GlusterError> {
        let command = self.command.as_str();
        let count = |tag: &str| -> Result<u32, GlusterError> {
            required(command, v, tag)?
                .parse()
                .map_err(|_| bad(command, &format!("<{tag}> is not a number")))
        };
        let bricks = v
            .children()
            .find(|n| n.has_tag_name("bricks"))
            .map(|bricks| {
                bricks
                    .children()
                    .filter(|n| n.has_tag_name("brick"))
                    .map(|b| parse_brick(command, b))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let options = v
            .children()
            .find(|n| n.has_tag_name("options"))
            .map(|opts| {
                opts.children()
                    .filter(|n| n.has_tag_name("option"))
                    .filter_map(|o| {
                        Some((
                            child_text(o, "name")?.to_string(),
                            child_text(o, "value").unwrap_or_default().to_string(),
                        ))
                    })
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        let status = match required(command, v, "statusStr")?.as_str() {
            "Created" => VolumeStatus::Created,
            "Started" => VolumeStatus::Started,
            "Stopped" => VolumeStatus::Stopped,
            other => VolumeStatus::Other(other.to_string()),
        };
        Ok(VolumeInfo {
            name: required(command, v, "name")?,
            id: required(command, v, "id")?,
            status,
            replica_count: count("replicaCount")?,
            arbiter_count: count("arbiterCount")?,
            type_name: required(command, v, "typeStr")?,
            bricks,
            options,
        })
    }

    /// `volume list`.
    pub fn volume_names(&self) -> Result<Vec<String>, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        let list = descendant(doc.root_element(), "volList")
            .ok_or_else(|| bad(&self.command, "<volList> missing"))?;
        Ok(list
            .children()
            .filter(|n| n.has_tag_name("volume"))
            .filter_map(|n| n.text())
            .map(str::to_string)
            .collect())
    }
}

impl Envelope {
    /// `volume status V clients`: the distinct addresses (port dropped)
    /// that client connections to the volume's bricks come from.
    pub fn client_hosts(&self) -> Result<BTreeSet<String>, GlusterError> {
        Ok(self.client_connections()?.into_iter().collect())
    }

    /// `volume status V [brick] clients`: the address of every client
    /// connection, one entry per connection.
    pub fn client_connections(&self) -> Result<Vec<String>, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        descendant(doc.root_element(), "volStatus")
            .ok_or_else(|| bad(&self.command, "<volStatus> missing"))?;
        Ok(doc
            .descendants()
            .filter(|n| n.has_tag_name("client"))
            .filter_map(|c| child_text(c, "hostname"))
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_string())
            .collect())
    }
}

impl Envelope {
    /// `volume quota V list PATH`: the hard limit in bytes on `path`; `None`
    /// when none is set (glusterd shows `N/A`).
    pub fn quota_hard_limit(&self, path: &str) -> Result<Option<u64>, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        let quota = descendant(doc.root_element(), "volQuota")
            .ok_or_else(|| bad(&self.command, "<volQuota> missing"))?;
        let Some(limit) = quota
            .children()
            .filter(|n| n.has_tag_name("limit"))
            .find(|l| child_text(*l, "path").map(str::trim) == Some(path))
        else {
            return Ok(None);
        };
        match required(&self.command, limit, "hard_limit")?.as_str() {
            "N/A" => Ok(None),
            bytes => bytes.parse().map(Some).map_err(|_| {
                bad(
                    &self.command,
                    &format!("<hard_limit> {bytes:?} is not a number"),
                )
            }),
        }
    }
}

// --- Volume health ---------------------------------------------------------
impl Envelope {
    /// `volume status V`: its bricks. gluster's daemons (self-heal, quota...)
    /// are listed too, with a host name where a brick has its path.
    pub fn brick_states(&self) -> Result<Vec<BrickState>, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        let status = descendant(doc.root_element(), "volStatus")
            .ok_or_else(|| bad(&self.command, "<volStatus> missing"))?;
        status
            .descendants()
            .filter(|n| n.has_tag_name("node"))
            .filter(|n| child_text(*n, "path").is_some_and(|p| p.starts_with('/')))
            .map(|n| {
                Ok(BrickState {
                    host: required(&self.command, n, "hostname")?,
                    path: required(&self.command, n, "path")?,
                    online: required(&self.command, n, "status")? == "1",
                    pid: child_text(n, "pid")
                        .and_then(|p| p.trim().parse().ok())
                        .filter(|p| *p > 0),
                })
            })
            .collect()
    }

    /// glfsheal `info-summary --xml`: every brick's counts. A brick glfsheal
    /// could not read has a status other than `Connected` and no counts.
    pub fn heal_summary(&self) -> Result<Vec<BrickHeal>, GlusterError> {
        let doc = document(&self.command, &self.text)?;
        let bricks = descendant(doc.root_element(), "healInfo")
            .and_then(|h| descendant(h, "bricks"))
            .ok_or_else(|| bad(&self.command, "<healInfo><bricks> missing"))?;
        let count = |b: Node, tag: &str| -> Result<Option<u64>, GlusterError> {
            match child_text(b, tag).map(str::trim) {
                None | Some("-") => Ok(None),
                Some(n) => n
                    .parse()
                    .map(Some)
                    .map_err(|_| bad(&self.command, &format!("<{tag}> {n:?} is not a number"))),
            }
        };
        bricks
            .children()
            .filter(|n| n.has_tag_name("brick"))
            .map(|b| {
                let name = required(&self.command, b, "name")?;
                let (host, path) = name.split_once(':').ok_or_else(|| {
                    bad(&self.command, &format!("brick {name:?} is not host:path"))
                })?;
                let status = child_text(b, "status").unwrap_or_default().trim();
                let connected = status == "Connected";
                // glusterfs 10.3 runs the next element into the status of a
                // brick it could not read: keep the reason, up to its ")".
                let status = match status.rfind(')') {
                    Some(end) if !connected => &status[..=end],
                    _ => status,
                };
                Ok(BrickHeal {
                    host: host.to_string(),
                    path: path.to_string(),
                    status: status.to_string(),
                    pending: count(b, "numberOfEntriesInHealPending")?.filter(|_| connected),
                    split_brain: count(b, "numberOfEntriesInSplitBrain")?.filter(|_| connected),
                    possibly_healing: count(b, "numberOfEntriesPossiblyHealing")?
                        .filter(|_| connected),
                })
            })
            .collect()
    }
}

/// The last line of a complete `volume status V client-list` answer.
pub const CLIENT_LIST_END: &str = "total clients for volume";

/// `volume status V client-list` (text only: its XML has no counts): how
/// many clients of each kind (`fuse`, `glustershd`, `gfapi`...) are
/// connected. The CLI's wording is matched here and nowhere else.
pub fn client_kinds(text: &str) -> Result<BTreeMap<String, u32>, GlusterError> {
    let command = "volume status client-list";
    if !text.contains(CLIENT_LIST_END) {
        return Err(bad(command, "no client totals in the answer"));
    }
    let mut kinds = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Name", "count"] => in_table = true,
            [] => in_table = false,
            [name, count] if in_table && !name.starts_with('-') => {
                let count = count
                    .parse()
                    .map_err(|_| bad(command, &format!("count {count:?} is not a number")))?;
                kinds.insert(name.to_string(), count);
            }
            _ => {}
        }
    }
    Ok(kinds)
}

/// `volume set help-xml` (no envelope): the names of every settable option.
pub fn settable_options(text: &str) -> Result<BTreeSet<String>, GlusterError> {
    let command = "volume set help-xml";
    let doc = document(command, text)?;
    let names: BTreeSet<String> = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("option"))
        .filter_map(|o| child_text(o, "name"))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(bad(command, "no <option> entries"));
    }
    Ok(names)
}

fn parse_brick(command: &str, b: Node) -> Result<Brick, GlusterError> {
    let name = required(command, b, "name")?;
    let (host, path) = name
        .split_once(':')
        .ok_or_else(|| bad(command, &format!("brick {name:?} is not host:path")))?;
    Ok(Brick {
        host: host.to_string(),
        path: path.to_string(),
        host_uuid: required(command, b, "hostUuid")?,
        is_arbiter: child_text(b, "isArbiter") == Some("1"),
    })
}

fn document<'a>(command: &str, text: &'a str) -> Result<Document<'a>, GlusterError> {
    Document::parse(text).map_err(|e| bad(command, &format!("not XML: {e}")))
}

fn descendant<'a, 'i>(node: Node<'a, 'i>, tag: &str) -> Option<Node<'a, 'i>> {
    node.descendants().find(|n| n.has_tag_name(tag))
}

fn child_text<'a>(node: Node<'a, '_>, tag: &str) -> Option<&'a str> {
    node.children().find(|n| n.has_tag_name(tag))?.text()
}

fn required(command: &str, node: Node, tag: &str) -> Result<String, GlusterError> {
    child_text(node, tag)
        .map(|t| t.trim().to_string())
        .ok_or_else(|| bad(command, &format!("<{tag}> missing")))
}

fn bad(command: &str, detail: &str) -> GlusterError {
    GlusterError::BadOutput {
        command: command.to_string(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::gluster::CAPTURES;

    #[test]
    fn clients_of_a_mounted_volume() {
        for c in &CAPTURES {
            let hosts = c
                .envelope("volume_status_clients.xml")
                .client_hosts()
                .unwrap();
            let servers: Vec<String> = (1..=3).map(|n| format!("{}.{n}", c.status_block)).collect();
            assert_eq!(
                hosts.into_iter().collect::<Vec<_>>(),
                servers,
                "{}",
                c.release
            );
            let kinds = client_kinds(&c.fixture("volume_status_client_list.txt")).unwrap();
            assert_eq!(
                kinds,
                BTreeMap::from([("fuse".to_string(), 1), ("glustershd".to_string(), 3)]),
                "{}",
                c.release
            );
            let kinds =
                client_kinds(&c.fixture("volume_status_client_list_unmounted.txt")).unwrap();
            assert_eq!(
                kinds,
                BTreeMap::from([("glustershd".to_string(), 3)]),
                "{}",
                c.release
            );
            // One brick, one FUSE client (a volume without a self-heal daemon).
            let one = c
                .envelope("volume_status_brick_clients.xml")
                .client_connections()
                .unwrap();
            assert_eq!(one.len(), 1, "{}: {one:?}", c.release);
        }
        assert!(client_kinds("Volume csi-tv is not started").is_err());
    }

    #[test]
    fn pool_list_marks_the_local_peer() {
        for c in &CAPTURES {
            let peers = c.envelope("pool_list.xml").peers().unwrap();
            assert_eq!(peers.len(), 3, "{}", c.release);
            let local: Vec<_> = peers.iter().filter(|p| p.is_local).collect();
            assert_eq!(local.len(), 1, "{}", c.release);
            // The node the CLI asked, whose uuid `system:: uuid get` told.
            let uuid = c.envelope("uuid_get.xml").uuid().unwrap();
            assert_eq!(local[0].uuid, uuid, "{}", c.release);
            assert!(
                peers
                    .iter()
                    .all(|p| p.connected && p.in_cluster && p.usable()),
                "{}: {peers:?}",
                c.release
            );
            assert!(
                peers.iter().all(|p| p.state == "Peer in Cluster"),
                "{}: {peers:?}",
                c.release
            );
            let node3 = format!("{}.3", c.block);
            assert!(peers.iter().any(|p| p.hostname == node3), "{}", c.release);
        }
    }

    #[test]
    fn pool_list_reports_a_disconnected_peer() {
        for c in &CAPTURES {
            let peers = c.envelope("pool_list_peer_down.xml").peers().unwrap();
            let down: Vec<_> = peers.iter().filter(|p| !p.usable()).collect();
            assert_eq!(down.len(), 1, "{}", c.release);
            assert_eq!(down[0].hostname, format!("{}.3", c.block));
            assert_eq!(down[0].condition(), "disconnected");
        }
    }

    #[test]
    fn remote_pool_list_names_the_asking_node() {
        for c in &CAPTURES {
            // Seen from node 2, node 1 (the one `uuid get` asked) has its
            // real address, and node 2 is localhost.
            let node1_uuid = c.envelope("uuid_get.xml").uuid().unwrap();
            let node2_uuid = c
                .envelope("pool_list.xml")
                .peers()
                .unwrap()
                .into_iter()
                .find(|p| p.hostname == format!("{}.2", c.block))
                .unwrap()
                .uuid;
            let peers = c.envelope("pool_list_remote.xml").peers().unwrap();
            let node1 = peers.iter().find(|p| p.uuid == node1_uuid).unwrap();
            assert_eq!(node1.hostname, format!("{}.1", c.block));
            assert!(!node1.is_local);
            let local = peers.iter().find(|p| p.is_local).unwrap();
            assert_eq!(local.uuid, node2_uuid, "{}", c.release);
        }
    }

    #[test]
    fn pool_of_one() {
        for c in &CAPTURES {
            let peers = c.envelope("pool_list_single.xml").peers().unwrap();
            assert_eq!(peers.len(), 1, "{}", c.release);
            assert!(peers[0].is_local && peers[0].connected && peers[0].usable());
            assert_eq!(peers[0].uuid, c.envelope("uuid_get.xml").uuid().unwrap());
        }
    }

    #[test]
    fn global_options() {
        for c in &CAPTURES {
            for (file, option) in [
                ("volume_get_op_version.xml", "cluster.op-version"),
                ("volume_get_max_op_version.xml", "cluster.max-op-version"),
            ] {
                let envelope = c.envelope(file);
                assert_eq!(
                    envelope.global_option(option).unwrap(),
                    c.op_version.to_string(),
                    "{} {file}",
                    c.release
                );
                assert!(envelope.global_option("cluster.other").is_err());
            }
        }
    }

    #[test]
    fn uuid_get() {
        for c in &CAPTURES {
            let uuid = c.envelope("uuid_get.xml").uuid().unwrap();
            assert_eq!(uuid.len(), 36, "{}: {uuid}", c.release);
            assert_eq!(uuid.matches('-').count(), 4, "{}: {uuid}", c.release);
        }
    }

    #[test]
    fn volume_info_of_a_created_volume_with_user_options() {
        for c in &CAPTURES {
            let vols = c.envelope("volume_info_created.xml").volumes().unwrap();
            assert_eq!(vols.len(), 1, "{}", c.release);
            let v = &vols[0];
            assert_eq!(v.name, "v1");
            // The id `volume create` printed.
            assert!(
                c.fixture("volume_create.xml")
                    .contains(&format!("<id>{}</id>", v.id)),
                "{}: {}",
                c.release,
                v.id
            );
            assert_eq!(v.status, VolumeStatus::Created);
            assert_eq!(v.replica_count, 3);
            assert_eq!(v.arbiter_count, 0);
            assert_eq!(v.type_name, "Replicate");
            assert_eq!(v.bricks.len(), 3);
            let node2 = format!("{}.2", c.block);
            assert_eq!(v.bricks[1].host, node2);
            assert_eq!(v.bricks[1].path, "/tmp/tb/c/b2/v1");
            // Bricks name their server by the uuid the pool lists it under.
            let peers = c.envelope("pool_list.xml").peers().unwrap();
            let peer2 = peers.iter().find(|p| p.hostname == node2).unwrap();
            assert_eq!(v.bricks[1].host_uuid, peer2.uuid, "{}", c.release);
            assert!(v.bricks.iter().all(|b| !b.is_arbiter));
            assert_eq!(v.options.get("user.csi.name").unwrap(), "pvc-1");
            assert_eq!(v.options.get("user.csi.size").unwrap(), "1073741824");
        }
    }

    #[test]
    fn volume_info_status_and_arbiter() {
        for c in &CAPTURES {
            let started = c.envelope("volume_info_started.xml").volumes().unwrap();
            assert_eq!(started[0].status, VolumeStatus::Started, "{}", c.release);
            let arbiter = c.envelope("volume_info_arbiter.xml").volumes().unwrap();
            assert_eq!(arbiter[0].replica_count, 3, "{}", c.release);
            assert_eq!(arbiter[0].arbiter_count, 1, "{}", c.release);
            let flags: Vec<bool> = arbiter[0].bricks.iter().map(|b| b.is_arbiter).collect();
            assert_eq!(flags, [false, false, true], "{}", c.release);
            let dist = c.envelope("volume_info_distribute.xml").volumes().unwrap();
            assert_eq!(dist[0].replica_count, 1, "{}", c.release);
            assert_eq!(dist[0].type_name, "Distribute", "{}", c.release);
            assert_eq!(dist[0].bricks.len(), 1, "{}", c.release);
        }
    }

    #[test]
    fn empty_and_missing_volume_info() {
        for c in &CAPTURES {
            assert!(
                c.envelope("volume_info_empty.xml")
                    .volumes()
                    .unwrap()
                    .is_empty(),
                "{}",
                c.release
            );
            let missing = c.envelope("volume_info_missing.xml");
            assert!(missing.failed(), "{}", c.release);
            assert_eq!(missing.op_errno, 30806, "{}", c.release);
        }
    }

    #[test]
    fn volume_list() {
        for c in &CAPTURES {
            let names = c.envelope("volume_list.xml").volume_names().unwrap();
            assert_eq!(names.len(), 12, "{}", c.release);
            assert_eq!(names[0], "hm", "{}", c.release);
            assert!(
                c.envelope("volume_list_empty.xml")
                    .volume_names()
                    .unwrap()
                    .is_empty(),
                "{}",
                c.release
            );
        }
    }

    #[test]
    fn successful_writes_have_op_ret_zero() {
        for c in &CAPTURES {
            for name in [
                "volume_create.xml",
                "volume_set_multi.xml",
                "volume_start.xml",
                "volume_stop.xml",
                "volume_delete.xml",
            ] {
                assert!(!c.envelope(name).failed(), "{} {name}", c.release);
            }
        }
    }

    #[test]
    fn settable_option_names() {
        for c in &CAPTURES {
            let names = settable_options(&c.fixture("volume_set_help_xml.xml")).unwrap();
            assert!(names.contains("performance.cache-size"), "{}", c.release);
            assert!(names.contains("auth.allow"), "{}", c.release);
            assert!(!names.contains("user.csi.name"), "{}", c.release);
            assert!(names.len() > 200, "{}", c.release);
        }
    }

    #[test]
    fn quota_limits() {
        for c in &CAPTURES {
            let limit = c.envelope("quota_list.xml").quota_hard_limit("/").unwrap();
            assert_eq!(limit, Some(10 << 20), "{}", c.release);
            // Enabled, no limit yet.
            let none = c
                .envelope("quota_list_no_limit.xml")
                .quota_hard_limit("/")
                .unwrap();
            assert_eq!(none, None, "{}", c.release);
            for name in [
                "quota_enable.xml",
                "quota_limit_usage.xml",
                "quota_limit_usage_same.xml",
            ] {
                assert!(!c.envelope(name).failed(), "{} {name}", c.release);
            }
            assert!(
                c.envelope("quota_list.xml")
                    .quota_hard_limit("/elsewhere")
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn garbage_is_bad_output_not_a_panic() {
        for text in [
            "",
            "Connection failed. Please check",
            "<cliOutput/>",
            "<x/>",
        ] {
            let err = Envelope::parse("volume info", text).unwrap_err();
            assert!(matches!(err, GlusterError::BadOutput { .. }), "{text}");
        }
    }
}
