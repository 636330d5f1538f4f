//! The YAML written for each migration: the new CSI PersistentVolume and its
//! claim, and what rolls the move back (the old PersistentVolume as it can be
//! created again, and the old claim).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::input::ClaimRef;
use super::plan::Migration;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: S,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PvSpec {
    capacity: BTreeMap<&'static str, String>,
    access_modes: Vec<String>,
    persistent_volume_reclaim_policy: &'static str,
    storage_class_name: &'static str,
    volume_mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mount_options: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claim_ref: Option<ObjectRef>,
    csi: CsiSource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    api_version: &'static str,
    kind: &'static str,
    namespace: String,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CsiSource {
    driver: String,
    volume_handle: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    read_only: bool,
    volume_attributes: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PvcSpec {
    access_modes: Vec<String>,
    resources: Resources,
    storage_class_name: String,
    volume_mode: &'static str,
    volume_name: String,
}

#[derive(Serialize)]
struct Resources {
    requests: BTreeMap<&'static str, String>,
}

/// Block-style YAML that reads back the same under YAML 1.1 too, as
/// Kubernetes' own YAML decoding reads it: a string is left plain only when
/// it cannot be taken for anything else there (`yes`, `on`, `2001`, `1:20`
/// are booleans and numbers in YAML 1.1), otherwise it is double-quoted.
/// Keys come out sorted, as kubectl prints them.
pub fn to_yaml(value: &impl Serialize) -> String {
    // Plain data (strings, lists, maps) with string keys: cannot fail.
    let value = serde_json::to_value(value).expect("manifests have string keys");
    let mut out = String::new();
    match &value {
        serde_json::Value::Object(map) if !map.is_empty() => emit_map(map, 0, &mut out),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn emit_map(map: &serde_json::Map<String, serde_json::Value>, indent: usize, out: &mut String) {
    for (i, (key, value)) in map.iter().enumerate() {
        // The first key of a list item follows its "- ".
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&string(key));
        out.push(':');
        emit_value(value, indent, out);
    }
}

fn emit_value(value: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value as J;
    match value {
        J::Object(map) if !map.is_empty() => {
            out.push('\n');
            emit_map(map, indent + 2, out);
        }
        J::Array(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                match item {
                    J::Object(map) if !map.is_empty() => emit_map(map, indent + 2, out),
                    J::Array(list) if !list.is_empty() => {
                        // A list in a list: its own block, one level in.
                        out.truncate(out.len() - 1);
                        emit_value(item, indent + 2, out);
                    }
                    other => {
                        out.push_str(&scalar(other));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(value: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match value {
        J::String(s) => string(s),
        J::Object(_) => "{}".to_string(),
        J::Array(_) => "[]".to_string(),
        // null, booleans and numbers print the same in JSON and YAML.
        other => other.to_string(),
    }
}

/// Plain when it starts with a letter, holds only letters, digits and
/// `._/-@`, and is no YAML 1.1 boolean or null; JSON-quoted otherwise (a
/// JSON string is a YAML double-quoted scalar).
fn string(s: &str) -> String {
    const RESERVED: [&str; 9] = ["y", "n", "yes", "no", "true", "false", "on", "off", "null"];
    let plain = s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-' | b'@'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

/// The new PersistentVolume, then (for a bound volume) its claim: the same
/// namespace and name as the old claim, bound by `volumeName`.
pub fn new_volume(m: &Migration, driver: &str) -> String {
    let pv = Manifest {
        api_version: "v1",
        kind: "PersistentVolume",
        metadata: Metadata {
            name: m.new_name.clone(),
            namespace: None,
            annotations: m.annotations.clone(),
        },
        spec: PvSpec {
            capacity: BTreeMap::from([("storage", m.old.capacity.clone())]),
            access_modes: m.old.access_modes.clone(),
            // Never Delete: the driver did not make this volume.
            persistent_volume_reclaim_policy: "Retain",
            storage_class_name: "",
            volume_mode: "Filesystem",
            mount_options: m.mount_options.clone(),
            claim_ref: m.bind.as_ref().map(|claim| ObjectRef {
                api_version: "v1",
                kind: "PersistentVolumeClaim",
                namespace: claim.namespace.clone(),
                name: claim.name.clone(),
            }),
            csi: CsiSource {
                driver: driver.to_string(),
                volume_handle: m.volume_handle.clone(),
                read_only: m.old.read_only,
                volume_attributes: m.context.to_map().into_iter().collect(),
            },
        },
    };
    let mut text = format!(
        "# glusterfs-csi migrate: replaces in-tree PersistentVolume {} (Gluster volume {}); see \
         RUNBOOK.md\n",
        m.old.name, m.context.volume
    );
    text.push_str(&to_yaml(&pv));
    if let Some(claim) = &m.bind {
        text.push_str("---\n");
        text.push_str(&to_yaml(&claim_bound_to(
            m,
            claim,
            String::new(),
            m.new_name.clone(),
        )));
    }
    text
}

/// The claim `claim` of `m`'s volume (its access modes and capacity),
/// bound by `volumeName` to `volume_name`.
fn claim_bound_to(
    m: &Migration,
    claim: &ClaimRef,
    storage_class_name: String,
    volume_name: String,
) -> Manifest<PvcSpec> {
    Manifest {
        api_version: "v1",
        kind: "PersistentVolumeClaim",
        metadata: Metadata {
            name: claim.name.clone(),
            namespace: Some(claim.namespace.clone()),
            annotations: BTreeMap::new(),
        },
        spec: PvcSpec {
            access_modes: m.old.access_modes.clone(),
            resources: Resources {
                requests: BTreeMap::from([("storage", m.old.capacity.clone())]),
            },
            storage_class_name,
            volume_mode: "Filesystem",
            volume_name,
        },
    }
}

/// The old claim as it can be created again (bound to the old volume by
/// `volumeName`), for rolling back before the old volume is deleted.
pub fn old_claim(m: &Migration) -> Option<String> {
    let claim = m.bind.as_ref()?;
    let pvc = claim_bound_to(
        m,
        claim,
        m.old.storage_class.clone().unwrap_or_default(),
        m.old.name.clone(),
    );
    Some(format!(
        "# glusterfs-csi migrate: the claim {}/{} as it was, bound to in-tree PersistentVolume \
         {}; see RUNBOOK.md\n{}",
        claim.namespace,
        claim.name,
        m.old.name,
        to_yaml(&pvc)
    ))
}

/// Fields the API server sets; an object that is created again must not
/// carry them.
const SERVER_SET: [&str; 7] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "generation",
    "selfLink",
    "managedFields",
];

/// The old PersistentVolume as it can be created again: what the API
/// server set removed, still bound by name to its claim, and Retain (it
/// comes back to be mounted, never to be deleted).
pub fn old_volume(m: &Migration) -> String {
    let mut value = m.original.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in SERVER_SET {
                metadata.remove(key);
            }
        }
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert(
                "persistentVolumeReclaimPolicy".into(),
                Value::String("Retain".into()),
            );
            if let Some(claim) = spec.get_mut("claimRef").and_then(Value::as_object_mut) {
                claim.remove("uid");
                claim.remove("resourceVersion");
            }
        }
    }
    format!(
        "# glusterfs-csi migrate: in-tree PersistentVolume {} as it can be created again (Retain); \
         see RUNBOOK.md\n{}",
        m.old.name,
        to_yaml(&value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings YAML 1.1 (Kubernetes' YAML decoding) reads as something
    /// else come out quoted, and every value reads back unchanged.
    #[test]
    fn yaml_reads_back_the_same_under_yaml_1_1() {
        let risky = [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "n",
            "true",
            "null",
            "~",
            "",
            "2001",
            "1:20",
            "0x1F",
            "1_000",
            "1e3",
            ".inf",
            "a: b",
            "- x",
            "#c",
            "x #c",
            "multi\nline\n",
            "'q'",
            "\"dq\"",
            "tab\there",
            "é",
        ];
        let value = serde_json::json!({
            "metadata": {
                "annotations": risky.iter().enumerate()
                    .map(|(i, s)| (format!("k{i}"), serde_json::Value::String(s.to_string())))
                    .collect::<serde_json::Map<_, _>>(),
                "yes": "key too",
            },
            "spec": {
                "list": risky,
                "objects": [{"a": "1", "b": ["x", "yes"]}, {}],
                "empty": [],
                "none": {},
                "flag": true,
                "count": 3,
                "plain": ["ReadWriteMany", "vol_1@pvc-2", "glusterfs.csi.io/migrated-from"],
            },
        });
        let text = to_yaml(&value);
        for word in ["yes", "No", "ON", "off", "y", "n", "2001", "1:20"] {
            assert!(
                text.contains(&format!("\"{word}\"")),
                "{word} unquoted in:\n{text}"
            );
        }
        for plain in [
            "- ReadWriteMany\n",
            "- vol_1@pvc-2\n",
            "- glusterfs.csi.io/migrated-from\n",
        ] {
            assert!(text.contains(plain), "{plain:?} quoted in:\n{text}");
        }
        let back: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
    }
}
