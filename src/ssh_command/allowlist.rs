//! What the controller's ssh key may ask of glusterd on this server: the
//! commands [`crate::gluster::GlusterCli`] sends, in the shapes the
//! controller makes them, and nothing else. Decided here, on the server that
//! owns the data, whatever the client is.
//!
//! A connection carries one command: one line of plain words, read back with
//! [`CliCommand::from_line`], the inverse of what the controller's transports
//! write. Two steps decide it:
//!
//! 1. [`parse`], from the words alone (`V` is always a name this driver
//!    makes, `csi-…` or `csi_…`):
//!    - reads: `pool list`, `system:: uuid get`, `volume info`,
//!      `volume info V`, `volume status V [H:R/V] clients`,
//!      `volume status V client-list` (as text: its XML lacks the counts),
//!      `volume set help-xml`, `volume get all cluster.op-version` and
//!      `cluster.max-op-version` (the start-up version report),
//!      `volume status V` and `volume heal V info summary` (volume health;
//!      run as glfsheal against this server's glusterd socket);
//!    - `volume create V [replica N [arbiter 1]] H:R/V ... [force]`: N from 2
//!      to 16 (absent for one brick), `arbiter 1` only with replica 3, one
//!      brick per replica on distinct hosts `H` (host names), every path
//!      exactly `R/V` for a brick root `R` configured on this server
//!      (`--brick-root`, never taken from the client);
//!    - `volume set V ...` in one of the four shapes of [`Rule`];
//!    - `volume start V [force]`, `volume stop V [force]`, `volume delete V`;
//!    - quota: `volume quota V enable`, `volume quota V limit-usage / BYTES`
//!      (the limit on the whole volume only).
//! 2. [`admit`], for commands that change an existing volume: glusterd's own
//!    view of it ([`Ownership`]) must fit the [`Rule`]. A volume glusterd
//!    does not know is left to glusterd, which answers "does not exist".
//!
//! Brick removals (`ssh-command remove-brick`) are held to the same brick
//! roots by [`check_removal`] before the brick agent's own checks.

use tonic::Status;

use crate::controller::params::{MAX_REPLICA, is_option_key, is_option_value, validate_brick_root};
use crate::gluster::transport::{CliArg, CliCommand};
use crate::gluster::{GlusterError, VolumeInfo};
use crate::names::{VolumeName, is_host_name, validate_csi_name};
use crate::ownership::{
    INTERRUPTED_CREATE, OPT_CSI_DELETING, OPT_CSI_NAME, OPT_CSI_SIZE, Ownership, RESERVED_PREFIX,
};

/// Most a client may send: the controller's longest command is a few KiB.
pub const MAX_REQUEST: usize = 64 * 1024;

/// How much of a refused request is repeated in messages and logs.
const SHOWN: usize = 300;

const ALLOWED: &str = "pool list, system:: uuid get, volume info, volume set help-xml, \
                       volume get all cluster.op-version|cluster.max-op-version|cluster.brick-multiplex, \
                       volume status V, volume heal V info summary, \
                       volume create|set|start|stop|delete of the driver's volumes, \
                       volume quota V enable|limit-usage / BYTES";

/// Directories under which this server lets the controller put bricks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrickRoots(Vec<String>);

impl BrickRoots {
    pub fn new(roots: &[String]) -> Result<BrickRoots, String> {
        for root in roots {
            validate_brick_root(root).map_err(|e| format!("--brick-root: {e}"))?;
        }
        Ok(BrickRoots(roots.to_vec()))
    }

    /// `path` is exactly one of the roots.
    pub fn check_root(&self, path: &str) -> Result<(), String> {
        if self.0.iter().any(|root| root == path) {
            return Ok(());
        }
        Err(format!(
            "{path:?} is not a brick root this server allows ({})",
            self.0.join(", ")
        ))
    }

    /// `path` is exactly `<root>/<volume>` for one of the roots. Both parts
    /// are plain (validated roots, driver volume names), so no `..`, `//` or
    /// trailing `/` can pass.
    pub fn check(&self, path: &str, volume: &VolumeName) -> Result<(), String> {
        if self.0.is_empty() {
            return Err(
                "this server allows no brick roots (add --brick-root to the key's forced command)"
                    .into(),
            );
        }
        let fits = |root: &String| {
            path.strip_prefix(root.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                == Some(volume.as_str())
        };
        if self.0.iter().any(fits) {
            return Ok(());
        }
        Err(format!(
            "brick path {path:?} is not <brick root>/{volume} for a brick root this server \
             allows ({})",
            self.0.join(", ")
        ))
    }
}

/// Why a request was refused, and what it was (escaped, shortened).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused `{request}`: {reason}")]
pub struct Refusal {
    pub request: String,
    pub reason: String,
}

impl Refusal {
    pub fn new(request: &[u8], reason: impl Into<String>) -> Refusal {
        Refusal {
            request: shown(request),
            reason: reason.into(),
        }
    }
}

/// A request as it can safely appear in a message or a log line.
pub fn shown(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let mut shown: String = text.escape_debug().take(SHOWN).collect();
    if text.escape_debug().nth(SHOWN).is_some() {
        shown.push('…');
    }
    shown
}

/// A command that passed [`parse`].
#[derive(Debug, PartialEq, Eq)]
pub struct Allowed {
    pub words: Vec<CliArg>,
    /// What glusterd must say about the volume first, for commands that
    /// change one.
    pub guard: Option<Guard>,
}

impl Allowed {
    /// `volume status V client-list` only answers as text: its XML lacks
    /// the counts the controller reads.
    pub fn wants_xml(&self) -> bool {
        let words: Vec<&str> = self.words.iter().map(CliArg::as_str).collect();
        !matches!(words.as_slice(), ["volume", "status", _, "client-list"])
    }

    /// `volume heal V info summary`: the volume, for running glfsheal.
    pub fn heal_summary_volume(&self) -> Option<&str> {
        match self.words.as_slice() {
            [volume, heal, volume_name, info, summary]
                if volume.as_str() == "volume"
                    && heal.as_str() == "heal"
                    && info.as_str() == "info"
                    && summary.as_str() == "summary" =>
            {
                Some(volume_name.as_str())
            }
            _ => None,
        }
    }

    /// The command as it is shown in messages.
    pub fn request(&self) -> String {
        let line = CliCommand::new(self.words.clone()).line();
        shown(line.as_bytes())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    pub volume: VolumeName,
    pub rule: Rule,
}

/// Which volumes a changing command may touch, by what it changes. Each is
/// one step of the controller's create or delete (src/controller/mod.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `volume set V user.csi.name <csi name> user.csi.size <bytes>`: marks
    /// a volume its `volume create` just made (or that an interrupted create
    /// left): unstarted, unmarked, bricks at `<root>/V`.
    Mark,
    /// `volume set V user.csi.deleting <time> user.csi.name interrupted-create`:
    /// claims such an unmarked volume for removal after a failed create.
    ClaimForDeletion,
    /// `volume set V user.csi.deleting <time>`: a marked volume.
    MarkForDeletion,
    /// `volume set V <key> <value> ...` (StorageClass `volumeOptions`, never
    /// `user.csi.*`): a marked volume not being deleted.
    Options,
    /// `volume start V [force]`: a marked volume not being deleted.
    Start,
    /// `volume stop V [force]`, `volume delete V`: a marked volume already
    /// marked for deletion.
    Remove,
    /// `volume quota V enable`, `volume quota V limit-usage / BYTES`: a
    /// marked volume not being deleted (its size, enforced).
    Quota,
    /// `volume set V user.csi.size <bytes>`: a marked volume not being
    /// deleted (ControllerExpandVolume records the new size).
    Resize,
}

/// Decides from the words alone whether `request` (what the client sent)
/// is a command the controller makes.
pub fn parse(request: &[u8], roots: &BrickRoots) -> Result<Allowed, Refusal> {
    let refuse = |reason: String| Refusal::new(request, reason);
    if request.len() > MAX_REQUEST {
        return Err(refuse(format!(
            "more than {} KiB: one command per connection",
            MAX_REQUEST / 1024
        )));
    }
    let text = std::str::from_utf8(request).map_err(|_| refuse("not text".into()))?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.trim().is_empty() {
        return Err(refuse("no command".into()));
    }
    if line.contains('\n') {
        return Err(refuse(
            "more than one line: one command per connection".into(),
        ));
    }
    let command = CliCommand::from_line(line).map_err(|e| match e {
        GlusterError::UnsafeArgument(word) if word.is_empty() => {
            refuse("words must be separated by single spaces".into())
        }
        GlusterError::UnsafeArgument(word) => refuse(format!(
            "{word:?} is not a plain word (letters, digits and ._:/=,*%+@-, not starting with -)"
        )),
        other => refuse(other.to_string()),
    })?;
    let words: Vec<&str> = command.words.iter().map(CliArg::as_str).collect();
    let guard = shape(&words, roots).map_err(refuse)?;
    Ok(Allowed {
        words: command.words,
        guard,
    })
}

/// The allowed shapes (see the module comment); `Some` when glusterd must
/// be asked about the volume first.
fn shape(words: &[&str], roots: &BrickRoots) -> Result<Option<Guard>, String> {
    let guarded = |volume: &str, rule: Rule| {
        Ok(Some(Guard {
            volume: driver_volume(volume)?,
            rule,
        }))
    };
    match words {
        ["pool", "list"]
        | ["system::", "uuid", "get"]
        | ["volume", "info"]
        | ["volume", "set", "help-xml"]
        | [
            "volume",
            "get",
            "all",
            "cluster.op-version" | "cluster.max-op-version" | "cluster.brick-multiplex",
        ] => Ok(None),
        ["volume", "info", volume]
        | ["volume", "status", volume]
        | ["volume", "status", volume, "clients" | "client-list"]
        | ["volume", "heal", volume, "info", "summary"] => driver_volume(volume).map(|_| None),
        ["volume", "status", volume, brick, "clients"] => {
            let volume = driver_volume(volume)?;
            let (host, path) = brick
                .split_once(':')
                .ok_or_else(|| format!("{brick:?} is not a brick (host:path)"))?;
            if !is_host_name(host) {
                return Err(format!(
                    "brick host {host:?} is not a host name or IPv4 address"
                ));
            }
            roots.check(path, &volume).map(|()| None)
        }
        ["volume", "create", volume, rest @ ..] => create(volume, rest, roots).map(|()| None),
        ["volume", "set", volume, pairs @ ..] => {
            driver_volume(volume)?;
            guarded(volume, set_rule(pairs)?)
        }
        ["volume", "start", volume] | ["volume", "start", volume, "force"] => {
            guarded(volume, Rule::Start)
        }
        ["volume", "stop", volume]
        | ["volume", "stop", volume, "force"]
        | ["volume", "delete", volume] => guarded(volume, Rule::Remove),
        ["volume", "quota", volume, "enable"] => guarded(volume, Rule::Quota),
        ["volume", "quota", volume, "limit-usage", "/", bytes] => {
            number("limit-usage", bytes)?;
            guarded(volume, Rule::Quota)
        }
        _ => Err(format!(
            "not a command the controller sends (allowed: {ALLOWED})"
        )),
    }
}

fn driver_volume(word: &str) -> Result<VolumeName, String> {
    VolumeName::parse(word).ok_or_else(|| {
        format!("{word:?} is not a volume name this driver makes (csi-... or csi_...)")
    })
}

/// `volume create V [replica N [arbiter 1]] bricks... [force]`, as
/// `GlusterCli::create_volume` writes it (`force` only where bricks on the
/// root file system are allowed; glusterd refuses them without it).
fn create(volume: &str, rest: &[&str], roots: &BrickRoots) -> Result<(), String> {
    let volume = driver_volume(volume)?;
    let rest = match rest.split_last() {
        Some((&"force", rest)) => rest,
        _ => rest,
    };
    let (replica, bricks) = match rest {
        ["replica", count, "arbiter", "1", bricks @ ..] => {
            let replica = replica_count(count)?;
            if replica != 3 {
                return Err(format!("an arbiter needs replica 3, not {replica}"));
            }
            (replica, bricks)
        }
        ["replica", count, bricks @ ..] => (replica_count(count)?, bricks),
        bricks => (1, bricks),
    };
    if bricks.len() != replica as usize {
        return Err(format!(
            "{} brick(s) for replica {replica}: the controller sends one per replica",
            bricks.len()
        ));
    }
    let mut hosts: Vec<&str> = Vec::new();
    for brick in bricks {
        let (host, path) = brick
            .split_once(':')
            .ok_or_else(|| format!("{brick:?} is not a brick (host:path)"))?;
        if !is_host_name(host) {
            return Err(format!(
                "brick host {host:?} is not a host name or IPv4 address"
            ));
        }
        if hosts.contains(&host) {
            return Err(format!("two bricks on {host}"));
        }
        roots.check(path, &volume)?;
        hosts.push(host);
    }
    Ok(())
}

/// 2 to 16, written as the controller writes numbers (no sign, no zeros in front).
fn replica_count(word: &str) -> Result<u32, String> {
    word.parse::<u32>()
        .ok()
        .filter(|n| (2..=MAX_REPLICA).contains(n) && n.to_string() == word)
        .ok_or_else(|| format!("replica {word:?} is not a count from 2 to {MAX_REPLICA}"))
}

/// Which of the controller's `volume set` shapes `pairs` is.
fn set_rule(pairs: &[&str]) -> Result<Rule, String> {
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Err("`volume set` takes key value pairs".into());
    }
    let pairs: Vec<(&str, &str)> = pairs.chunks(2).map(|p| (p[0], p[1])).collect();
    match pairs.as_slice() {
        [(OPT_CSI_NAME, csi_name), (OPT_CSI_SIZE, size)] => {
            validate_csi_name(csi_name).map_err(|e| format!("{OPT_CSI_NAME} {csi_name:?} {e}"))?;
            number(OPT_CSI_SIZE, size)?;
            Ok(Rule::Mark)
        }
        [(OPT_CSI_DELETING, at)] => number(OPT_CSI_DELETING, at).map(|()| Rule::MarkForDeletion),
        [(OPT_CSI_SIZE, size)] => number(OPT_CSI_SIZE, size).map(|()| Rule::Resize),
        [(OPT_CSI_DELETING, at), (OPT_CSI_NAME, INTERRUPTED_CREATE)] => {
            number(OPT_CSI_DELETING, at).map(|()| Rule::ClaimForDeletion)
        }
        options => {
            for (at, (key, value)) in options.iter().enumerate() {
                if key.starts_with(RESERVED_PREFIX) {
                    return Err(format!(
                        "{key} is one of the driver's marks, set only in the controller's own \
                         shapes"
                    ));
                }
                if !is_option_key(key) {
                    return Err(format!(
                        "{key:?} is not a gluster option name like performance.cache-size"
                    ));
                }
                if !is_option_value(value) {
                    return Err(format!("{value:?} is not an option value the driver sets"));
                }
                if options[..at].iter().any(|(earlier, _)| earlier == key) {
                    return Err(format!("{key} is set twice"));
                }
            }
            Ok(Rule::Options)
        }
    }
}

fn number(key: &str, word: &str) -> Result<(), String> {
    let plain = !word.is_empty() && word.len() <= 20 && word.bytes().all(|b| b.is_ascii_digit());
    if plain && word.parse::<u64>().is_ok() {
        Ok(())
    } else {
        Err(format!("{key} {word:?} is not a whole number"))
    }
}

/// Decides, from glusterd's answer to `volume info V`, whether the guarded
/// command may run. `None`: no such volume; glusterd will say so itself.
pub fn admit(guard: &Guard, volume: Option<&VolumeInfo>, roots: &BrickRoots) -> Result<(), String> {
    let Some(volume) = volume else {
        return Ok(());
    };
    let name = &guard.volume;
    let ownership = Ownership::of(volume);
    let not_ours =
        || format!("gluster volume {name} does not carry this driver's marks ({OPT_CSI_NAME})");
    match (guard.rule, ownership) {
        (Rule::Mark | Rule::ClaimForDeletion, Ownership::Unmarked) => {
            for brick in &volume.bricks {
                roots.check(&brick.path, name).map_err(|e| {
                    format!("gluster volume {name} was not made by this driver: {e}")
                })?;
            }
            Ok(())
        }
        (Rule::Mark | Rule::ClaimForDeletion, Ownership::Ours { .. } | Ownership::Foreign) => {
            Err(format!(
                "gluster volume {name} is not a volume this driver has just made (unstarted, \
                 unmarked, bricks named after it)"
            ))
        }
        (Rule::MarkForDeletion, Ownership::Ours { .. }) => Ok(()),
        (
            Rule::Options | Rule::Start | Rule::Quota | Rule::Resize,
            Ownership::Ours {
                deleting: false, ..
            },
        ) => Ok(()),
        (
            Rule::Options | Rule::Start | Rule::Quota | Rule::Resize,
            Ownership::Ours { deleting: true, .. },
        ) => Err(format!(
            "gluster volume {name} is being deleted ({OPT_CSI_DELETING})"
        )),
        (Rule::Remove, Ownership::Ours { deleting: true, .. }) => Ok(()),
        (
            Rule::Remove,
            Ownership::Ours {
                deleting: false, ..
            },
        ) => Err(format!(
            "gluster volume {name} is not marked for deletion ({OPT_CSI_DELETING})"
        )),
        (
            Rule::MarkForDeletion
            | Rule::Options
            | Rule::Start
            | Rule::Remove
            | Rule::Quota
            | Rule::Resize,
            Ownership::Unmarked | Ownership::Foreign,
        ) => Err(not_ours()),
    }
}

/// A brick removal request (`ssh-command remove-brick`) names a driver
/// volume and a brick at `<root>/<volume>` under this server's roots.
pub fn check_removal(volume: &str, path: &str, roots: &BrickRoots) -> Result<(), Status> {
    let volume = driver_volume(volume).map_err(Status::invalid_argument)?;
    roots
        .check(path, &volume)
        .map_err(Status::permission_denied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::volume_info;
    use crate::gluster::VolumeStatus;

    const V: &str = "csi-pvc-1";

    fn roots() -> BrickRoots {
        BrickRoots::new(&["/bricks".into(), "/data/glusterfs".into()]).unwrap()
    }

    fn allowed(line: &str) -> Allowed {
        parse(line.as_bytes(), &roots()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn rule(line: &str) -> Option<Rule> {
        allowed(line).guard.map(|g| g.rule)
    }

    #[test]
    fn every_command_the_controller_sends_is_allowed() {
        let cases: &[(&str, Option<Rule>)] = &[
            ("pool list\n", None),
            ("system:: uuid get\n", None),
            ("volume info\n", None),
            ("volume info csi-pvc-1\n", None),
            ("volume status csi-pvc-1 clients\n", None),
            ("volume status csi-pvc-1 client-list\n", None),
            ("volume status csi-pvc-1\n", None),
            ("volume heal csi-pvc-1 info summary\n", None),
            (
                "volume status csi-pvc-1 h1:/bricks/csi-pvc-1 clients\n",
                None,
            ),
            ("volume info csi_sanity-vol_3703aaca8e5266ff\n", None),
            ("volume set help-xml\n", None),
            ("volume get all cluster.op-version\n", None),
            ("volume get all cluster.max-op-version\n", None),
            ("volume get all cluster.brick-multiplex\n", None),
            ("volume create csi-pvc-1 h1:/bricks/csi-pvc-1 force\n", None),
            ("volume create csi-pvc-1 h1:/bricks/csi-pvc-1\n", None),
            (
                "volume create csi-pvc-1 replica 2 h1:/bricks/csi-pvc-1 \
                 10.0.0.2:/data/glusterfs/csi-pvc-1 force\n",
                None,
            ),
            (
                "volume create csi-pvc-1 replica 3 arbiter 1 h1:/bricks/csi-pvc-1 \
                 h2:/bricks/csi-pvc-1 h3.example.com:/bricks/csi-pvc-1 force\n",
                None,
            ),
            (
                "volume set csi-pvc-1 user.csi.name pvc-1 user.csi.size 1073741824\n",
                Some(Rule::Mark),
            ),
            (
                "volume set csi-pvc-1 user.csi.name Sanity.Vol_1 user.csi.size 0\n",
                Some(Rule::Mark),
            ),
            (
                "volume set csi-pvc-1 user.csi.deleting 1700000000\n",
                Some(Rule::MarkForDeletion),
            ),
            (
                "volume set csi-pvc-1 user.csi.deleting 1700000000 user.csi.name \
                 interrupted-create\n",
                Some(Rule::ClaimForDeletion),
            ),
            (
                "volume set csi-pvc-1 performance.cache-size 64MB auth.allow 10.0.0.*\n",
                Some(Rule::Options),
            ),
            (
                "volume set csi-pvc-1 user.team storage\n",
                Some(Rule::Options),
            ),
            ("volume start csi-pvc-1\n", Some(Rule::Start)),
            ("volume start csi-pvc-1 force\n", Some(Rule::Start)),
            ("volume stop csi-pvc-1\n", Some(Rule::Remove)),
            ("volume stop csi-pvc-1 force\n", Some(Rule::Remove)),
            ("volume delete csi-pvc-1\n", Some(Rule::Remove)),
            // Without its newline too.
            ("volume delete csi-pvc-1", Some(Rule::Remove)),
            ("volume quota csi-pvc-1 enable\n", Some(Rule::Quota)),
            (
                "volume quota csi-pvc-1 limit-usage / 10485760\n",
                Some(Rule::Quota),
            ),
            (
                "volume set csi-pvc-1 user.csi.size 104857600\n",
                Some(Rule::Resize),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(rule(line), *expected, "{line:?}");
        }
        let start = allowed("volume start csi-pvc-1 force\n");
        assert_eq!(start.guard.unwrap().volume.as_str(), V);
        assert_eq!(
            start.words.iter().map(CliArg::as_str).collect::<Vec<_>>(),
            ["volume", "start", V, "force"]
        );
    }

    #[test]
    fn what_the_controller_writes_is_what_is_allowed() {
        // The very words of GlusterCli, through the line the transport writes.
        let options = [
            ("user.csi.name".to_string(), "pvc-1".to_string()),
            ("user.csi.size".to_string(), "5".to_string()),
        ];
        let words = crate::gluster::volume_set_words(V, &options);
        let command = CliCommand::new(words.into_iter().map(|w| CliArg::new(w).unwrap()).collect());
        assert_eq!(rule(&command.line()), Some(Rule::Mark));
        let volume = CliArg::new(V).unwrap();
        let heal = crate::gluster::transport::heal_summary_command(&volume).unwrap();
        let heal = allowed(&heal.line());
        assert_eq!(heal.guard, None);
        assert_eq!(heal.heal_summary_volume(), Some(V));
        assert!(heal.wants_xml());
        assert_eq!(
            allowed("volume status csi-pvc-1\n").heal_summary_volume(),
            None
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let refused: &[(&[u8], &str)] = &[
            (b"", "no command"),
            (b"\n", "no command"),
            (
                b"pool list\nvolume delete csi-pvc-1\n",
                "one command per connection",
            ),
            (b"pool list\npool list\n", "one command per connection"),
            (b"pool list\n\n", "one command per connection"),
            (b"pool  list\n", "single spaces"),
            (b" pool list\n", "single spaces"),
            (b"pool list\r\n", "not a plain word"),
            (b"pool\tlist\n", "not a plain word"),
            (b"\xff\xfe\n", "not text"),
            (
                b"--mode=script volume delete csi-pvc-1\n",
                "not a plain word",
            ),
            (b"volume info -x\n", "not a plain word"),
            (b"volume info csi-pvc-1 --xml\n", "not a plain word"),
            (b"volume delete csi-pvc-1;id\n", "not a plain word"),
            (b"volume delete $(id)\n", "not a plain word"),
            (
                b"peer detach 127.1.1.3\n",
                "not a command the controller sends",
            ),
            (
                b"peer probe evil.example.com\n",
                "not a command the controller sends",
            ),
            (
                b"system:: execute gsec_create\n",
                "not a command the controller sends",
            ),
            (
                b"system:: uuid reset\n",
                "not a command the controller sends",
            ),
            (
                b"volume frobnicate csi-pvc-1\n",
                "not a command the controller sends",
            ),
            (
                b"volume reset csi-pvc-1\n",
                "not a command the controller sends",
            ),
            (
                b"volume heal csi-pvc-1\n",
                "not a command the controller sends",
            ),
            (
                b"volume heal csi-pvc-1 info\n",
                "not a command the controller sends",
            ),
            (
                b"volume heal csi-pvc-1 split-brain latest-mtime /f\n",
                "not a command the controller sends",
            ),
            (
                b"volume heal gv0 info summary\n",
                "not a volume name this driver makes",
            ),
            (
                b"volume status gv0\n",
                "not a volume name this driver makes",
            ),
            (
                b"volume status all\n",
                "not a volume name this driver makes",
            ),
            (
                b"volume get all all\n",
                "not a command the controller sends",
            ),
            (
                b"volume get csi-pvc-1 cluster.op-version\n",
                "not a command the controller sends",
            ),
            (
                b"volume add-brick csi-pvc-1 h:/bricks/csi-pvc-1\n",
                "not a command",
            ),
            (
                b"volume quota csi-pvc-1 disable\n",
                "not a command the controller sends",
            ),
            (
                b"volume quota csi-pvc-1 remove /\n",
                "not a command the controller sends",
            ),
            (
                b"volume quota csi-pvc-1 limit-usage /data 1048576\n",
                "not a command the controller sends",
            ),
            (
                b"volume quota csi-pvc-1 limit-usage / 10MB\n",
                "limit-usage \"10MB\" is not a whole number",
            ),
            (
                b"volume quota csi-pvc-1 limit-usage / 1048576 80%\n",
                "not a command the controller sends",
            ),
            (
                b"volume quota csi-pvc-1 limit-objects / 1000\n",
                "not a command the controller sends",
            ),
            (
                b"volume quota gv0 limit-usage / 1048576\n",
                "not a volume name this driver makes",
            ),
            (
                // The controller never reads limits: glusterd would keep a
                // mount of the volume for it (src/controller/quota.rs).
                b"volume quota csi-pvc-1 list /\n",
                "not a command the controller sends",
            ),
            (
                b"volume set csi-pvc-1 user.csi.size 10MB\n",
                "user.csi.size \"10MB\" is not a whole number",
            ),
            (
                b"snapshot create s csi-pvc-1\n",
                "not a command the controller sends",
            ),
            (b"pool list extra\n", "not a command the controller sends"),
            (b"volume info all\n", "not a volume name this driver makes"),
            (
                b"volume delete gv0\n",
                "not a volume name this driver makes",
            ),
            (
                b"volume stop gv0 force\n",
                "not a volume name this driver makes",
            ),
            (
                b"volume start csi-pvc-1 now\n",
                "not a command the controller sends",
            ),
            (
                b"volume delete csi-pvc-1 force\n",
                "not a command the controller sends",
            ),
            (
                b"volume set all cluster.op-version 1\n",
                "not a volume name",
            ),
            // volume create: shapes.
            (
                b"volume create gv0 h:/bricks/gv0 force\n",
                "not a volume name",
            ),
            (
                b"volume create csi-pvc-1 force\n",
                "0 brick(s) for replica 1",
            ),
            (
                b"volume create csi-pvc-1 replica 1 h:/bricks/csi-pvc-1 force\n",
                "not a count",
            ),
            (
                b"volume create csi-pvc-1 replica 17 h:/bricks/csi-pvc-1 force\n",
                "not a count",
            ),
            (
                b"volume create csi-pvc-1 replica 02 a:/bricks/csi-pvc-1 b:/bricks/csi-pvc-1 \
                  force\n",
                "not a count",
            ),
            (
                b"volume create csi-pvc-1 replica 2 a:/bricks/csi-pvc-1 force\n",
                "1 brick(s) for replica 2",
            ),
            (
                b"volume create csi-pvc-1 replica 2 arbiter 1 a:/bricks/csi-pvc-1 \
                  b:/bricks/csi-pvc-1 force\n",
                "arbiter needs replica 3",
            ),
            (
                b"volume create csi-pvc-1 replica 2 a:/bricks/csi-pvc-1 a:/bricks/csi-pvc-1 \
                  force\n",
                "two bricks on a",
            ),
            (
                b"volume create csi-pvc-1 disperse 3 a:/bricks/csi-pvc-1 force\n",
                "3 brick(s) for replica 1",
            ),
            (
                b"volume create csi-pvc-1 h:/root/x force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/root/csi-pvc-1 force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/bricks/../etc force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/bricks/../csi-pvc-1 force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/bricks/other-name force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/bricks/h/csi-pvc-1 force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/bricks//csi-pvc-1 force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/bricks/csi-pvc-1/ force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:/bricksx/csi-pvc-1 force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 h:bricks/csi-pvc-1 force\n",
                "is not <brick root>",
            ),
            (
                b"volume create csi-pvc-1 /bricks/csi-pvc-1 force\n",
                "is not a brick",
            ),
            (
                b"volume create csi-pvc-1 :/bricks/csi-pvc-1 force\n",
                "not a host name",
            ),
            (
                b"volume create csi-pvc-1 a..b:/bricks/csi-pvc-1 force\n",
                "not a host name",
            ),
            // volume set: shapes.
            (b"volume set csi-pvc-1\n", "key value pairs"),
            (
                b"volume set csi-pvc-1 performance.cache-size\n",
                "key value pairs",
            ),
            (
                b"volume set csi-pvc-1 group virt\n",
                "not a gluster option name",
            ),
            (
                b"volume set csi-pvc-1 user.csi.name evil\n",
                "driver's marks",
            ),
            (
                b"volume set csi-pvc-1 user.csi.size 1 performance.cache-size 1MB\n",
                "driver's marks",
            ),
            (
                b"volume set csi-pvc-1 user.csi.size 1 user.csi.name pvc-1\n",
                "driver's marks",
            ),
            (
                b"volume set csi-pvc-1 user.csi.name pvc-1 user.csi.size 1 a.b c\n",
                "driver's marks",
            ),
            (
                b"volume set csi-pvc-1 user.csi.deleting soon\n",
                "not a whole number",
            ),
            (
                b"volume set csi-pvc-1 user.csi.deleting 1 user.csi.name other\n",
                "driver's marks",
            ),
            (
                b"volume set csi-pvc-1 user.csi.name .hidden user.csi.size 1\n",
                "user.csi.name",
            ),
            (b"volume set csi-pvc-1 user.csi.other 1\n", "driver's marks"),
            (b"volume set csi-pvc-1 a.b 1 a.b 2\n", "set twice"),
            (
                b"volume set csi-pvc-1 Performance.X 1\n",
                "not a gluster option name",
            ),
            (b"volume set csi-pvc-1 a.b x=y\n", "not an option value"),
        ];
        for (request, why) in refused {
            let refusal = parse(request, &roots()).expect_err(&shown(request));
            assert!(
                refusal.reason.contains(why),
                "{:?}: {refusal} (expected {why:?})",
                shown(request)
            );
        }
        let huge = format!("volume info {}\n", "x".repeat(MAX_REQUEST));
        assert!(
            parse(huge.as_bytes(), &roots())
                .unwrap_err()
                .reason
                .contains("64 KiB")
        );
    }

    #[test]
    fn refusals_show_the_request_escaped_and_short() {
        let refusal = parse(b"pool list\nrm -rf /\n", &roots()).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "refused `pool list\\nrm -rf /`: more than one line: one command per connection"
        );
        let long = format!("volume info {}\n", "a\u{1b}".repeat(500));
        let shown = shown(long.as_bytes());
        assert!(shown.ends_with('…') && !shown.contains('\u{1b}'), "{shown}");
        assert_eq!(
            allowed("volume start csi-pvc-1 force\n").request(),
            "volume start csi-pvc-1 force"
        );
    }

    #[test]
    fn no_brick_roots_no_bricks() {
        let none = BrickRoots::new(&[]).unwrap();
        let refusal = parse(
            b"volume create csi-pvc-1 h:/bricks/csi-pvc-1 force\n",
            &none,
        )
        .unwrap_err();
        assert!(refusal.reason.contains("--brick-root"), "{refusal}");
        assert!(parse(b"pool list\n", &none).is_ok());
        for bad in ["bricks", "/", "/data/../etc", "/data/", "/a b"] {
            assert!(BrickRoots::new(&[bad.into()]).is_err(), "{bad:?}");
        }
    }

    fn guard(rule: Rule) -> Guard {
        Guard {
            volume: VolumeName::parse(V).unwrap(),
            rule,
        }
    }

    #[test]
    fn changes_need_glusterd_to_agree_the_volume_is_ours() {
        let marked = volume_info(
            V,
            VolumeStatus::Started,
            &[(OPT_CSI_NAME, "pvc-1"), (OPT_CSI_SIZE, "1")],
        );
        let deleting = volume_info(
            V,
            VolumeStatus::Started,
            &[(OPT_CSI_NAME, "pvc-1"), (OPT_CSI_DELETING, "1")],
        );
        // Just made by `volume create` (fakes put bricks at /bricks/<volume>).
        let fresh = volume_info(V, VolumeStatus::Created, &[]);
        let mut elsewhere = fresh.clone();
        elsewhere.bricks[1].path = format!("/srv/{V}");
        let started_unmarked = volume_info(V, VolumeStatus::Started, &[]);
        let admin_marked = volume_info(V, VolumeStatus::Created, &[("user.team", "x")]);
        use Rule::*;
        let table: &[(Rule, &VolumeInfo, bool)] = &[
            (Mark, &fresh, true),
            (Mark, &elsewhere, false),
            (Mark, &marked, false),
            (Mark, &started_unmarked, false),
            (Mark, &admin_marked, false),
            (ClaimForDeletion, &fresh, true),
            (ClaimForDeletion, &elsewhere, false),
            (ClaimForDeletion, &marked, false),
            (ClaimForDeletion, &started_unmarked, false),
            (MarkForDeletion, &marked, true),
            (MarkForDeletion, &deleting, true),
            (MarkForDeletion, &fresh, false),
            (MarkForDeletion, &started_unmarked, false),
            (Options, &marked, true),
            (Options, &deleting, false),
            (Options, &fresh, false),
            (Options, &started_unmarked, false),
            (Start, &marked, true),
            (Start, &deleting, false),
            (Start, &fresh, false),
            (Remove, &deleting, true),
            (Remove, &marked, false),
            (Remove, &fresh, false),
            (Remove, &started_unmarked, false),
            (Remove, &admin_marked, false),
            (Quota, &marked, true),
            (Quota, &deleting, false),
            (Quota, &fresh, false),
            (Quota, &started_unmarked, false),
            (Resize, &marked, true),
            (Resize, &deleting, false),
            (Resize, &fresh, false),
            (Resize, &admin_marked, false),
        ];
        for (rule, volume, ok) in table {
            let verdict = admit(&guard(*rule), Some(volume), &roots());
            assert_eq!(verdict.is_ok(), *ok, "{rule:?} on {volume:?}: {verdict:?}");
        }
        // glusterd itself answers for a volume it does not know.
        assert!(admit(&guard(Remove), None, &roots()).is_ok());
    }

    #[test]
    fn brick_removals_stay_under_the_roots() {
        assert!(check_removal(V, "/bricks/csi-pvc-1", &roots()).is_ok());
        assert!(check_removal(V, "/data/glusterfs/csi-pvc-1", &roots()).is_ok());
        for (volume, path, code) in [
            ("gv0", "/bricks/gv0", tonic::Code::InvalidArgument),
            (V, "/root/csi-pvc-1", tonic::Code::PermissionDenied),
            (V, "/bricks/../csi-pvc-1", tonic::Code::PermissionDenied),
            (V, "/bricks/x/csi-pvc-1", tonic::Code::PermissionDenied),
            (V, "/bricks/csi-pvc-2", tonic::Code::PermissionDenied),
        ] {
            let status = check_removal(volume, path, &roots()).unwrap_err();
            assert_eq!(status.code(), code, "{volume} {path}: {status:?}");
        }
    }
}
