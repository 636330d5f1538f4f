//! Which FUSE mount options a volume may be mounted with.
//!
//! Options come from the StorageClass (`mountOptions`, reaching the node as
//! capability mount flags) and from the volume context. Each must be one
//! mount.glusterfs understands, with a value of the right shape; options that
//! name files or processes, or that the driver sets itself, are refused.

/// Options without a value.
const FLAGS: &[&str] = &[
    "ro",
    "rw",
    "acl",
    "selinux",
    "worm",
    "fopen-keep-cache",
    "auto_unmount",
    "_netdev",
    "nofail",
    "noatime",
    "nodiratime",
    "relatime",
    "nosuid",
    "nodev",
    "noexec",
];

/// Options with a numeric value.
const NUMERIC: &[&str] = &[
    "attribute-timeout",
    "entry-timeout",
    "negative-timeout",
    "gid-timeout",
    "background-qlen",
    "congestion-threshold",
    "reader-thread-count",
    "lru-limit",
    "invalidate-limit",
    "fetch-attempts",
];

/// Options with one of a fixed set of values.
const CHOICES: &[(&str, &[&str])] = &[
    (
        "log-level",
        &[
            "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE", "NONE",
        ],
    ),
    ("direct-io-mode", &["enable", "disable", "auto"]),
    ("use-readdirp", &["yes", "no"]),
    ("kernel-writeback-cache", &["yes", "no"]),
    ("auto-invalidation", &["yes", "no"]),
    ("resolve-gids", &["yes", "no"]),
    ("global-threading", &["yes", "no"]),
];

/// Set by the driver itself; refused from users.
const RESERVED: &[&str] = &[
    "backup-volfile-servers",
    "backupvolfile-server",
    "log-file",
    "server-port",
    "volfile-check",
    "volume-id",
    "volume-name",
    "subdir-mount",
    "process-name",
    "xlator-option",
    "fuse-mountopts",
    "transport",
    "dump-fuse",
    "oom-score-adj",
];

/// Validated mount options, in the order given, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions(Vec<String>);

impl MountOptions {
    /// Each input entry may itself be a comma list (`"ro,acl"`).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut options: Vec<String> = Vec::new();
        for option in entries
            .into_iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            check(option)?;
            if !options.iter().any(|o| o == option) {
                options.push(option.to_string());
            }
        }
        if options.iter().any(|o| o == "ro") && options.iter().any(|o| o == "rw") {
            return Err("\"ro\" and \"rw\" contradict each other".into());
        }
        Ok(MountOptions(options))
    }

    pub fn read_only(&self) -> bool {
        self.0.iter().any(|o| o == "ro")
    }

    pub fn with_read_only(mut self) -> Self {
        if !self.read_only() {
            self.0.retain(|o| o != "rw");
            self.0.push("ro".into());
        }
        self
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

fn check(option: &str) -> Result<(), String> {
    let (key, value) = match option.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (option, None),
    };
    if RESERVED.contains(&key) {
        return Err(format!("{key:?} is set by the driver and cannot be given"));
    }
    match value {
        None if FLAGS.contains(&key) => Ok(()),
        Some(v) if NUMERIC.contains(&key) => {
            if !v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            {
                Ok(())
            } else {
                Err(format!("{key} needs a number, not {v:?}"))
            }
        }
        Some(v) => match CHOICES.iter().find(|(k, _)| *k == key) {
            Some((_, allowed)) if allowed.contains(&v) => Ok(()),
            Some((_, allowed)) => Err(format!("{key} must be one of {}", allowed.join(", "))),
            None => Err(format!(
                "{option:?} is not a supported glusterfs mount option"
            )),
        },
        None => Err(format!(
            "{option:?} is not a supported glusterfs mount option"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_options_and_dedups() {
        let o =
            MountOptions::parse(["acl,log-level=WARNING", "attribute-timeout=0.5", "acl"]).unwrap();
        assert_eq!(
            o.as_slice(),
            ["acl", "log-level=WARNING", "attribute-timeout=0.5"]
        );
        assert!(!o.read_only());
        assert!(o.with_read_only().read_only());
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "log-file=/etc/passwd",
            "backup-volfile-servers=evil",
            "xlator-option=*.x=y",
            "log-level=LOUD",
            "entry-timeout=1;reboot",
            "entry-timeout=",
            "bogus",
            "ro,rw",
            "acl=1",
            "process-name=x",
        ] {
            assert!(MountOptions::parse([bad]).is_err(), "{bad}");
        }
    }
}
