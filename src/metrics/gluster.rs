//! Labels for gluster CLI commands: a fixed set of command names derived
//! from a command's words, so volume names, brick paths, option keys and
//! values (anything that varies) never become a label value.

/// The commands the driver runs (and a few an operator would recognise), by
/// the words that name them. A command matching none is `other`.
const COMMANDS: &[&str] = &[
    "pool list",
    "peer status",
    "peer probe",
    "peer detach",
    "system:: uuid",
    "volume info",
    "volume list",
    "volume create",
    "volume start",
    "volume stop",
    "volume delete",
    "volume set",
    "volume set help-xml",
    "volume get",
    "volume reset",
    "volume status",
    "volume status clients",
    "volume status client-list",
    "volume status detail",
    "volume heal",
    "volume heal info",
    "volume heal split-brain",
    "volume heal summary",
    "volume heal statistics",
    "volume heal enable",
    "volume heal disable",
    "volume heal full",
    "volume quota",
    "volume quota enable",
    "volume quota disable",
    "volume quota limit-usage",
    "volume quota remove",
    "volume quota list",
    "volume quota default-soft-limit",
    "volume add-brick",
    "volume remove-brick",
    "volume replace-brick",
    "volume reset-brick",
    "volume rebalance",
    "volume profile",
    "volume top",
    "volume statedump",
    "snapshot create",
    "snapshot delete",
    "snapshot list",
    "snapshot info",
];

/// The label for a command: the first known name among its first two
/// words followed by its last (`volume status V H:/b clients` is `volume
/// status clients`), followed by its fourth (`volume quota V limit-usage /
/// 10MB` is `volume quota limit-usage`), or alone; `other` when none is
/// known. Only entries of [`COMMANDS`] (or `other`) can come out.
pub fn command_label(words: &[&str]) -> &'static str {
    let Some(head) = words.get(..2).map(|w| w.join(" ")) else {
        return "other";
    };
    let qualified = |word: Option<&&str>| word.map(|w| format!("{head} {w}"));
    [
        qualified(words.last()),
        qualified(words.get(3)),
        Some(head.clone()),
    ]
    .into_iter()
    .flatten()
    .find_map(|name| COMMANDS.iter().find(|known| **known == name).copied())
    .unwrap_or("other")
}

/// How a gluster command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlusterOutcome {
    /// glusterd answered and the operation succeeded (`opRet` 0).
    Ok,
    /// glusterd answered and refused or failed it (`opRet` -1): a volume
    /// that does not exist, a lock held by another transaction...
    Refused,
    /// No usable answer: the CLI could not be run or reach glusterd, timed
    /// out, or printed what could not be read.
    Error,
}

impl GlusterOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            GlusterOutcome::Ok => "ok",
            GlusterOutcome::Refused => "refused",
            GlusterOutcome::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_named_by_their_verbs() {
        for (words, label) in [
            (&["pool", "list"][..], "pool list"),
            (&["system::", "uuid", "get"], "system:: uuid"),
            (&["volume", "info"], "volume info"),
            (&["volume", "info", "csi-pvc-1"], "volume info"),
            (
                &[
                    "volume",
                    "create",
                    "csi-pvc-1",
                    "replica",
                    "3",
                    "h1:/b/csi-pvc-1",
                    "h2:/b/csi-pvc-1",
                    "h3:/b/csi-pvc-1",
                    "force",
                ],
                "volume create",
            ),
            (&["volume", "start", "csi-pvc-1", "force"], "volume start"),
            (&["volume", "stop", "csi-pvc-1"], "volume stop"),
            (&["volume", "delete", "csi-pvc-1"], "volume delete"),
            (
                &["volume", "set", "csi-pvc-1", "user.csi.name", "pvc-1"],
                "volume set",
            ),
            (&["volume", "set", "help-xml"], "volume set help-xml"),
            (
                &["volume", "get", "all", "cluster.op-version"],
                "volume get",
            ),
            (
                &["volume", "status", "csi-pvc-1", "clients"],
                "volume status clients",
            ),
            (
                &[
                    "volume",
                    "status",
                    "csi-pvc-1",
                    "h1:/b/csi-pvc-1",
                    "clients",
                ],
                "volume status clients",
            ),
            (
                &["volume", "status", "csi-pvc-1", "client-list"],
                "volume status client-list",
            ),
            (&["volume", "status", "csi-pvc-1"], "volume status"),
            (
                &["volume", "quota", "csi-pvc-1", "limit-usage", "/", "10MB"],
                "volume quota limit-usage",
            ),
            (
                &["volume", "quota", "csi-pvc-1", "enable"],
                "volume quota enable",
            ),
            (
                &["volume", "heal", "csi-pvc-1", "info", "split-brain"],
                "volume heal split-brain",
            ),
            (&["volume", "heal", "csi-pvc-1", "info"], "volume heal info"),
        ] {
            assert_eq!(command_label(words), label, "{words:?}");
        }
    }

    #[test]
    fn anything_else_is_other_and_never_user_input() {
        for words in [
            &[][..],
            &["volume"],
            &["volume", "frobnicate", "x"],
            &["csi-pvc-1", "info"],
            // A volume or option named like a known word does not make one.
            &["volume", "set", "info", "volume", "info"],
            &["volume", "quota", "x", "limit-usage-of-mine"],
        ] {
            let label = command_label(words);
            assert!(
                label == "other" || COMMANDS.contains(&label),
                "{words:?} -> {label}"
            );
        }
        assert_eq!(command_label(&["volume", "frobnicate", "x"]), "other");
        assert_eq!(command_label(&["csi-pvc-1", "info"]), "other");
        assert_eq!(command_label(&["volume"]), "other");
        assert_eq!(
            command_label(&["volume", "set", "info", "volume", "info"]),
            "volume set"
        );
        // Any words at all: the label set stays the fixed one.
        let mut labels = std::collections::BTreeSet::new();
        let vocabulary = ["volume", "heal", "quota", "info", "x", "status", "a b", ""];
        for a in vocabulary {
            for b in vocabulary {
                for c in vocabulary {
                    for d in vocabulary {
                        labels.insert(command_label(&[a, b, c, d]));
                        labels.insert(command_label(&[a, b, c, d, "y"]));
                    }
                }
            }
        }
        assert!(
            labels.iter().all(|l| *l == "other" || COMMANDS.contains(l)),
            "{labels:?}"
        );
        assert!(labels.len() <= COMMANDS.len() + 1);
    }
}
