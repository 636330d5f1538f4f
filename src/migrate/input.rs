//! Reading what `kubectl get pv,endpoints -A -o yaml` (or `-o json`) prints:
//! bounded, every document and every `List` item turned into an [`Object`],
//! and typed views of the two kinds migration needs. Every field is checked
//! on the way in; an error names the object and the field.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;
use yaml_serde::Value;

pub const KIND_PV: &str = "PersistentVolume";
pub const KIND_ENDPOINTS: &str = "Endpoints";

/// The annotation the kubelet turns into a supplemental group of every pod
/// using the PersistentVolume, whatever its plugin.
pub const ANN_GID: &str = "pv.beta.kubernetes.io/gid";
/// Heketi's id of the volume (set by the in-tree provisioner).
pub const ANN_HEKETI_VOLUME_ID: &str = "gluster.kubernetes.io/heketi-volume-id";
/// Which provisioner made the PersistentVolume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The in-tree plugin's name, as the PersistentVolume controller records it.
pub const IN_TREE_PLUGIN: &str = "kubernetes.io/glusterfs";
/// StorageClass of PersistentVolumes older than `spec.storageClassName`.
const ANN_LEGACY_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("the input is larger than {limit_mib} MiB (raise --max-input-mib if it is right)")]
    TooLarge { limit_mib: u64 },
    #[error("reading {source_name}: {reason}")]
    Read { source_name: String, reason: String },
    #[error("{source_name} is not UTF-8 text")]
    NotText { source_name: String },
    #[error("{source_name} is not valid {format}: {reason}")]
    Syntax {
        source_name: String,
        format: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("{0} appears twice in the input")]
    Duplicate(String),
}

/// A bad or missing field of one object.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[error("{object}: {field}: {reason}")]
pub struct FieldError {
    /// `PersistentVolume pvc-1`, `Endpoints apps/glusterfs-cluster`, or where
    /// in the input an object without a usable name sits.
    pub object: String,
    /// As in the object's YAML: `spec.glusterfs.path`,
    /// `metadata.annotations["pv.beta.kubernetes.io/gid"]`.
    pub field: String,
    pub reason: String,
}

/// Reads at most `limit_mib` MiB; more is refused rather than cut.
pub fn read_bounded(
    reader: impl Read,
    limit_mib: u64,
    source_name: &str,
) -> Result<String, InputError> {
    let limit = limit_mib.saturating_mul(1024 * 1024);
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| InputError::Read {
            source_name: source_name.to_string(),
            reason: e.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(InputError::TooLarge { limit_mib });
    }
    String::from_utf8(bytes).map_err(|_| InputError::NotText {
        source_name: source_name.to_string(),
    })
}

/// One Kubernetes object of the input.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub value: Value,
}

impl Object {
    /// How errors and the runbook name it.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    pub fn fields(&self) -> Fields<'_> {
        Fields::new(self.describe(), &self.value)
    }
}

/// Every object of the input: YAML documents (`---`), a `kind: List`'s
/// items, or one JSON document.
pub fn parse_objects(text: &str, source_name: &str) -> Result<Vec<Object>, InputError> {
    let syntax = |format, reason: String| InputError::Syntax {
        source_name: source_name.to_string(),
        format,
        reason,
    };
    let yaml = || -> Result<Vec<Value>, String> {
        yaml_serde::Deserializer::from_str(text)
            .map(Value::deserialize)
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    };
    let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        // `-o json`; a YAML flow document also starts so, and is YAML's to read.
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => {
                vec![yaml_serde::to_value(json).map_err(|e| syntax("JSON", e.to_string()))?]
            }
            Err(json_error) => yaml().map_err(|_| syntax("JSON", json_error.to_string()))?,
        }
    } else {
        yaml().map_err(|reason| syntax("YAML", reason))?
    };
    let mut objects = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let place = format!("document {}", index + 1);
        let fields = Fields::new(place.clone(), &document);
        let kind = fields.required_string(&["kind"])?;
        if kind.ends_with("List") && fields.get(&["items"]).is_some() {
            for (i, item) in fields.list(&["items"])?.into_iter().enumerate() {
                objects.push(object(item.clone(), format!("{place}, items[{i}]"))?);
            }
        } else {
            objects.push(object(document, place)?);
        }
    }
    Ok(objects)
}

fn object(value: Value, place: String) -> Result<Object, FieldError> {
    let fields = Fields::new(place, &value);
    let kind = fields.required_string(&["kind"])?.to_string();
    fields.required_string(&["apiVersion"])?;
    let name = fields.required_string(&["metadata", "name"])?.to_string();
    let namespace = fields
        .string(&["metadata", "namespace"])?
        .map(str::to_string);
    if kind == KIND_PV || kind == KIND_ENDPOINTS {
        if !is_dns1123_subdomain(&name) {
            return Err(fields.error(
                "metadata.name",
                format!("{name:?} is not a Kubernetes object name (DNS-1123 subdomain)"),
            ));
        }
        if let Some(namespace) = &namespace
            && !is_dns1123_label(namespace)
        {
            return Err(fields.error(
                "metadata.namespace",
                format!("{namespace:?} is not a namespace name (DNS-1123 label)"),
            ));
        }
    }
    Ok(Object {
        kind,
        namespace,
        name,
        value,
    })
}

/// A claim a PersistentVolume is (or was) bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
}

/// What migration reads of a PersistentVolume with `spec.glusterfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InTreePv {
    pub name: String,
    pub endpoints: String,
    /// `spec.glusterfs.endpointsNamespace`, if set.
    pub endpoints_namespace: Option<String>,
    /// `spec.glusterfs.path` as written.
    pub path: String,
    pub read_only: bool,
    pub claim: Option<ClaimRef>,
    /// `status.phase` (`Bound`, `Released`, ...), if printed.
    pub phase: Option<String>,
    /// `spec.capacity.storage`, a Kubernetes quantity.
    pub capacity: String,
    pub access_modes: Vec<String>,
    pub mount_options: Vec<String>,
    pub reclaim_policy: Option<String>,
    /// `spec.storageClassName`, or the older annotation.
    pub storage_class: Option<String>,
    pub gid: Option<String>,
    pub heketi_volume_id: Option<String>,
    /// Made by the in-tree provisioner (Heketi), not by hand.
    pub provisioned_in_tree: bool,
    /// `spec.nodeAffinity` is set (not carried over).
    pub has_node_affinity: bool,
}

const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];
const RECLAIM_POLICIES: [&str; 3] = ["Retain", "Delete", "Recycle"];

impl InTreePv {
    /// The PersistentVolume's in-tree fields; `None` when it has no
    /// `spec.glusterfs` (another kind of volume: not ours to migrate).
    pub fn read(object: &Object) -> Result<Option<InTreePv>, FieldError> {
        let f = object.fields();
        if f.get(&["spec", "glusterfs"]).is_none() {
            return Ok(None);
        }
        f.mapping(&["spec", "glusterfs"])?;
        let endpoints = f.required_string(&["spec", "glusterfs", "endpoints"])?;
        if !is_dns1123_subdomain(endpoints) {
            return Err(f.error(
                "spec.glusterfs.endpoints",
                format!("{endpoints:?} is not an Endpoints name"),
            ));
        }
        let endpoints_namespace = match f.string(&["spec", "glusterfs", "endpointsNamespace"])? {
            // The in-tree plugin refused to mount such a volume.
            Some("") => {
                return Err(f.error(
                    "spec.glusterfs.endpointsNamespace",
                    "set but empty (the in-tree plugin refused to mount this volume)",
                ));
            }
            Some(namespace) if !is_dns1123_label(namespace) => {
                return Err(f.error(
                    "spec.glusterfs.endpointsNamespace",
                    format!("{namespace:?} is not a namespace name"),
                ));
            }
            other => other.map(str::to_string),
        };
        let path = f
            .required_string(&["spec", "glusterfs", "path"])?
            .to_string();
        let read_only = f
            .boolean(&["spec", "glusterfs", "readOnly"])?
            .unwrap_or(false);
        let claim = match f.get(&["spec", "claimRef"]) {
            None => None,
            Some(_) => {
                if let Some(kind) = f.string(&["spec", "claimRef", "kind"])?
                    && kind != "PersistentVolumeClaim"
                {
                    return Err(f.error(
                        "spec.claimRef.kind",
                        format!("{kind:?}: a PersistentVolume can only be claimed by a PersistentVolumeClaim"),
                    ));
                }
                let namespace = f.required_string(&["spec", "claimRef", "namespace"])?;
                if !is_dns1123_label(namespace) {
                    return Err(f.error(
                        "spec.claimRef.namespace",
                        format!("{namespace:?} is not a namespace name"),
                    ));
                }
                let name = f.required_string(&["spec", "claimRef", "name"])?;
                if !is_dns1123_subdomain(name) {
                    return Err(f.error(
                        "spec.claimRef.name",
                        format!("{name:?} is not a PersistentVolumeClaim name"),
                    ));
                }
                Some(ClaimRef {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
        };
        let capacity = f.required_string(&["spec", "capacity", "storage"])?;
        if !is_quantity(capacity) {
            return Err(f.error(
                "spec.capacity.storage",
                format!("{capacity:?} is not a Kubernetes quantity (10Gi, 500M)"),
            ));
        }
        let access_modes = f.strings(&["spec", "accessModes"])?;
        if access_modes.is_empty() {
            return Err(f.error("spec.accessModes", "missing"));
        }
        if let Some((i, bad)) = access_modes
            .iter()
            .enumerate()
            .find(|(_, m)| !ACCESS_MODES.contains(&m.as_str()))
        {
            return Err(f.error(
                format!("spec.accessModes[{i}]"),
                format!("{bad:?} is not one of {}", ACCESS_MODES.join(", ")),
            ));
        }
        let reclaim_policy = f
            .string(&["spec", "persistentVolumeReclaimPolicy"])?
            .map(str::to_string);
        if let Some(policy) = &reclaim_policy
            && !RECLAIM_POLICIES.contains(&policy.as_str())
        {
            return Err(f.error(
                "spec.persistentVolumeReclaimPolicy",
                format!("{policy:?} is not one of {}", RECLAIM_POLICIES.join(", ")),
            ));
        }
        match f.string(&["spec", "volumeMode"])? {
            None | Some("Filesystem") => {}
            Some(mode) => {
                return Err(f.error(
                    "spec.volumeMode",
                    format!("{mode:?}: only Filesystem volumes exist on GlusterFS"),
                ));
            }
        }
        let class_field: &[&str] = match f.get(&["spec", "storageClassName"]) {
            Some(_) => &["spec", "storageClassName"],
            None => &["metadata", "annotations", ANN_LEGACY_CLASS],
        };
        let storage_class = f.string(class_field)?;
        if let Some(class) = storage_class
            && !class.is_empty()
            && !is_dns1123_subdomain(class)
        {
            return Err(f.error(
                field_name(class_field),
                format!("{class:?} is not a StorageClass name"),
            ));
        }
        let annotation = |key| f.string(&["metadata", "annotations", key]);
        Ok(Some(InTreePv {
            name: object.name.clone(),
            endpoints: endpoints.to_string(),
            endpoints_namespace,
            path,
            read_only,
            claim,
            phase: f.string(&["status", "phase"])?.map(str::to_string),
            capacity: capacity.to_string(),
            access_modes,
            mount_options: f.strings(&["spec", "mountOptions"])?,
            reclaim_policy,
            storage_class: storage_class.map(str::to_string),
            gid: annotation(ANN_GID)?.map(str::to_string),
            heketi_volume_id: annotation(ANN_HEKETI_VOLUME_ID)?.map(str::to_string),
            provisioned_in_tree: annotation(ANN_PROVISIONED_BY)? == Some(IN_TREE_PLUGIN),
            has_node_affinity: f.get(&["spec", "nodeAffinity"]).is_some(),
        }))
    }
}

/// The addresses of an Endpoints object, as the in-tree plugin took them:
/// every `subsets[].addresses[].ip`, first seen first, repeats dropped
/// (`notReadyAddresses` were never used).
pub fn endpoint_addresses(object: &Object) -> Result<Vec<String>, FieldError> {
    let f = object.fields();
    let mut addresses: Vec<String> = Vec::new();
    for (i, subset) in f.list(&["subsets"])?.into_iter().enumerate() {
        let subset = f.child(format!("subsets[{i}]"), subset);
        for (j, address) in subset.list(&["addresses"])?.into_iter().enumerate() {
            let address = subset.child(format!("addresses[{j}]"), address);
            let ip = address.required_string(&["ip"])?;
            match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) if is_usable_server(v4) => {}
                Ok(IpAddr::V4(_)) => {
                    return Err(address.error("ip", format!("{ip:?} cannot be a Gluster server")));
                }
                Ok(IpAddr::V6(_)) => {
                    return Err(address.error(
                        "ip",
                        format!(
                            "{ip:?} is IPv6; this driver names servers by IPv4 address or host \
                             name (put a host name for it in the new PersistentVolume's \
                             volumeAttributes by hand)"
                        ),
                    ));
                }
                Err(_) => {
                    return Err(address.error("ip", format!("{ip:?} is not an IP address")));
                }
            }
            if !addresses.iter().any(|a| a == ip) {
                addresses.push(ip.to_string());
            }
        }
    }
    if addresses.is_empty() {
        return Err(f.error(
            "subsets",
            "no addresses (subsets[].addresses[].ip): the in-tree plugin had no server to mount \
             from either (notReadyAddresses were never used)",
        ));
    }
    Ok(addresses)
}

fn is_usable_server(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

/// Fields of one object (or of a part of it), read by path.
pub struct Fields<'a> {
    object: String,
    /// Where `value` sits in the object (`subsets[0].`), for error messages.
    prefix: String,
    value: &'a Value,
}

impl<'a> Fields<'a> {
    pub fn new(object: String, value: &'a Value) -> Self {
        Fields {
            object,
            prefix: String::new(),
            value,
        }
    }

    /// A part of this object, named `field` in errors.
    fn child(&self, field: String, value: &'a Value) -> Fields<'a> {
        Fields {
            object: self.object.clone(),
            prefix: format!("{}{field}.", self.prefix),
            value,
        }
    }

    pub fn error(&self, field: impl AsRef<str>, reason: impl Into<String>) -> FieldError {
        let field = format!("{}{}", self.prefix, field.as_ref());
        FieldError {
            object: self.object.clone(),
            field: field.trim_end_matches('.').to_string(),
            reason: reason.into(),
        }
    }

    /// The value at `path`; `None` when it, or anything on the way, is
    /// absent or null, or the way goes through something not an object.
    pub fn get(&self, path: &[&str]) -> Option<&'a Value> {
        let mut value = self.value;
        for key in path {
            value = value.as_mapping()?.get(*key)?;
        }
        (!value.is_null()).then_some(value)
    }

    /// Like [`Fields::get`], but a non-object on the way is an error.
    fn lookup(&self, path: &[&str]) -> Result<Option<&'a Value>, FieldError> {
        let mut value = self.value;
        for (depth, key) in path.iter().enumerate() {
            let Some(mapping) = value.as_mapping() else {
                let at = match (depth, self.prefix.is_empty()) {
                    (0, true) => "(the whole object)".to_string(),
                    _ => field_name(&path[..depth]),
                };
                return Err(
                    self.error(at, format!("expected an object, found {}", describe(value)))
                );
            };
            match mapping.get(*key) {
                Some(next) if !next.is_null() => value = next,
                _ => return Ok(None),
            }
        }
        Ok(Some(value))
    }

    pub fn string(&self, path: &[&str]) -> Result<Option<&'a str>, FieldError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.error(
                field_name(path),
                format!("expected a string, found {}", describe(other)),
            )),
        }
    }

    pub fn required_string(&self, path: &[&str]) -> Result<&'a str, FieldError> {
        match self.string(path)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.error(field_name(path), "missing")),
        }
    }

    pub fn boolean(&self, path: &[&str]) -> Result<Option<bool>, FieldError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(
                field_name(path),
                format!("expected true or false, found {}", describe(other)),
            )),
        }
    }

    pub fn mapping(&self, path: &[&str]) -> Result<Option<&'a yaml_serde::Mapping>, FieldError> {
        match self.lookup(path)? {
            None => Ok(None),
            Some(Value::Mapping(m)) => Ok(Some(m)),
            Some(other) => Err(self.error(
                field_name(path),
                format!("expected an object, found {}", describe(other)),
            )),
        }
    }

    /// A list (empty when absent).
    pub fn list(&self, path: &[&str]) -> Result<Vec<&'a Value>, FieldError> {
        match self.lookup(path)? {
            None => Ok(Vec::new()),
            Some(Value::Sequence(items)) => Ok(items.iter().collect()),
            Some(other) => Err(self.error(
                field_name(path),
                format!("expected a list, found {}", describe(other)),
            )),
        }
    }

    /// A list of strings (empty when absent).
    pub fn strings(&self, path: &[&str]) -> Result<Vec<String>, FieldError> {
        self.list(path)?
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.error(
                    format!("{}[{i}]", field_name(path)),
                    format!("expected a string, found {}", describe(other)),
                )),
            })
            .collect()
    }
}

/// `spec.glusterfs.path`, `metadata.annotations["pv.beta.kubernetes.io/gid"]`.
fn field_name(path: &[&str]) -> String {
    let mut name = String::new();
    for key in path {
        if key.contains(['.', '/']) {
            name.push_str(&format!("[{key:?}]"));
        } else {
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(key);
        }
    }
    name
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "an object",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): at most 253 characters,
/// dot-separated parts of lowercase letters, digits and inner `-`.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label_part)
}

/// A namespace name (RFC 1123 label): one such part of at most 63 characters.
pub fn is_dns1123_label(name: &str) -> bool {
    name.len() <= 63 && is_label_part(name)
}

fn is_label_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

/// A non-negative Kubernetes quantity: a decimal number with an optional
/// binary (`Ki`..`Ei`) or decimal (`n`..`E`) suffix or exponent.
pub fn is_quantity(text: &str) -> bool {
    const SUFFIXES: [&str; 15] = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P",
    ];
    if text.is_empty() || text.len() > 64 {
        return false;
    }
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number_ok = match number.split_once('.') {
        Some((whole, fraction)) => {
            (!whole.is_empty() || !fraction.is_empty()) && !fraction.contains('.')
        }
        None => !number.is_empty(),
    };
    let exponent_ok = |s: &str| {
        s.strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
    };
    number_ok && (SUFFIXES.contains(&suffix) || suffix == "E" || exponent_ok(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quantities() {
        for ok in [
            "pvc-1",
            "a",
            "glusterfs-dynamic-0a1b",
            "a.b-c",
            &"a".repeat(253),
        ] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a/b",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
        assert!(is_dns1123_label("kube-system"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        for ok in [
            "1Gi", "10Gi", "500M", "1.5Gi", "0", "1e3", "1E", "2Ti", "100",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "Gi", "-1Gi", "1GB", "1 Gi", "1..5", ".", "1e", "ten"] {
            assert!(!is_quantity(bad), "{bad:?}");
        }
    }

    #[test]
    fn reading_is_bounded() {
        let big = vec![b'a'; 1024 * 1024 + 1];
        assert_eq!(
            read_bounded(big.as_slice(), 1, "stdin"),
            Err(InputError::TooLarge { limit_mib: 1 })
        );
        let exact = vec![b'a'; 1024 * 1024];
        assert_eq!(
            read_bounded(exact.as_slice(), 1, "stdin").unwrap().len(),
            1 << 20
        );
        assert!(matches!(
            read_bounded([0xff, 0xfe].as_slice(), 1, "in.yaml"),
            Err(InputError::NotText { .. })
        ));
    }

    #[test]
    fn documents_lists_and_json_give_the_same_objects() {
        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Endpoints\n  \
                    metadata: {name: e, namespace: ns}\n---\n---\napiVersion: v1\nkind: \
                    PersistentVolume\nmetadata: {name: p}\n";
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"e","namespace":"ns"}},
            {"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"p"}}]}"#;
        for text in [yaml, json] {
            let names: Vec<String> = parse_objects(text, "in")
                .unwrap()
                .iter()
                .map(Object::describe)
                .collect();
            assert_eq!(names, ["Endpoints ns/e", "PersistentVolume p"]);
        }
    }

    #[test]
    fn syntax_and_shape_errors_say_where() {
        let err = parse_objects("kind: List\nitems: [\n", "pv.yaml").unwrap_err();
        assert!(
            matches!(&err, InputError::Syntax { format: "YAML", reason, .. } if reason.contains("line")),
            "{err}"
        );
        let err = parse_objects("{\"kind\": ", "pv.json").unwrap_err();
        assert!(
            matches!(err, InputError::Syntax { format: "JSON", .. }),
            "{err}"
        );
        let err = parse_objects(
            "apiVersion: v1\nkind: List\nitems:\n- kind: PersistentVolume\n  apiVersion: v1\n  \
             metadata: {name: Bad_Name}\n",
            "in",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1, items[0]: metadata.name: \"Bad_Name\" is not a Kubernetes object name \
             (DNS-1123 subdomain)"
        );
        let err =
            parse_objects("apiVersion: v1\nkind: Endpoints\nmetadata: []\n", "in").unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 1: metadata: expected an object, found a list"
        );
    }

    /// Anchors that expand exponentially must fail quickly, not eat memory.
    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, name) in ('b'..='j').enumerate() {
            let prev = (b'a' + i as u8) as char;
            text.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, \
                 *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let err = parse_objects(&text, "bomb.yaml").unwrap_err();
        assert!(matches!(err, InputError::Syntax { .. }), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn field_names_quote_keys_with_dots() {
        assert_eq!(
            field_name(&["metadata", "annotations", ANN_GID]),
            "metadata.annotations[\"pv.beta.kubernetes.io/gid\"]"
        );
        assert_eq!(
            field_name(&["spec", "glusterfs", "path"]),
            "spec.glusterfs.path"
        );
    }
}
