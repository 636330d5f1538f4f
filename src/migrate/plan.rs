//! From an in-tree PersistentVolume and its Endpoints to what its CSI
//! successor says: the Gluster volume and servers (a volume context NodeStage
//! accepts), a volume handle no driver-made id can ever be, mount options the
//! node takes, and the claim to bind.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::input::{
    ANN_GID, ClaimRef, FieldError, InTreePv, InputError, KIND_ENDPOINTS, KIND_PV, Object,
    endpoint_addresses, is_dns1123_subdomain,
};
use crate::names::{VolumeName, is_gluster_volume_name};
use crate::node::MountOptions;
use crate::volume_context::{MAX_VOLUME_ID, VolumeContext};

/// What the command line decides about the new objects.
#[derive(Clone, Debug)]
pub struct Settings {
    pub driver_name: String,
    /// Appended to the old PersistentVolume's name.
    pub name_suffix: String,
}

/// Where the Endpoints namespace came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointsFrom {
    /// `spec.glusterfs.endpointsNamespace`.
    EndpointsNamespace,
    /// The claim's namespace: the in-tree plugin looked in the namespace of
    /// the pod, which is the claim's.
    ClaimNamespace,
}

/// One in-tree PersistentVolume and its CSI successor.
#[derive(Clone, Debug)]
pub struct Migration {
    pub old: InTreePv,
    /// The old object as read, for the rollback manifest.
    pub original: serde_json::Value,
    pub new_name: String,
    pub volume_handle: String,
    pub context: VolumeContext,
    pub endpoints_namespace: String,
    pub endpoints_from: EndpointsFrom,
    /// For the new PV's `spec.mountOptions`, as NodeStage will check them.
    pub mount_options: Vec<String>,
    /// Options of the old PV the driver sets itself, left out.
    pub dropped_options: Vec<String>,
    /// The claim the new PV is bound to, with a new PVC (old PV `Bound`).
    pub bind: Option<ClaimRef>,
    /// Annotations carried to the new PV.
    pub annotations: BTreeMap<String, String>,
    /// What the runbook must tell about this volume.
    pub notes: Vec<String>,
}

/// An in-tree PersistentVolume that cannot be migrated, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmigratable {
    pub pv: String,
    pub error: FieldError,
}

#[derive(Debug)]
pub struct Plan {
    pub migrations: Vec<Migration>,
    pub unmigratable: Vec<Unmigratable>,
    /// PersistentVolumes without `spec.glusterfs`, left alone.
    pub other_volumes: usize,
    pub objects: usize,
}

/// Annotation on the new PV naming the one it replaces.
pub const ANN_MIGRATED_FROM: &str = "glusterfs.csi.io/migrated-from";

/// Options mount.glusterfs gets from the driver itself, derived from the
/// Endpoints or per mount: left out of the new PV (the node refuses them).
const SET_BY_DRIVER: [&str; 3] = ["log-file", "backup-volfile-servers", "backupvolfile-server"];

pub fn plan(objects: &[Object], settings: &Settings) -> Result<Plan, InputError> {
    let mut pv_names: HashMap<&str, &Object> = HashMap::new();
    let mut endpoints: HashMap<(&str, &str), &Object> = HashMap::new();
    for object in objects {
        if object.kind == KIND_PV && pv_names.insert(&object.name, object).is_some() {
            return Err(InputError::Duplicate(object.describe()));
        }
        if object.kind == KIND_ENDPOINTS {
            let namespace = object.namespace.as_deref().ok_or_else(|| {
                object.fields().error(
                    "metadata.namespace",
                    "missing (Endpoints live in a namespace; print them with kubectl get -A)",
                )
            })?;
            if endpoints
                .insert((namespace, object.name.as_str()), object)
                .is_some()
            {
                return Err(InputError::Duplicate(object.describe()));
            }
        }
    }
    let mut plan = Plan {
        migrations: Vec::new(),
        unmigratable: Vec::new(),
        other_volumes: 0,
        objects: objects.len(),
    };
    for object in objects.iter().filter(|o| o.kind == KIND_PV) {
        let migrated = InTreePv::read(object).and_then(|pv| match pv {
            None => Ok(None),
            Some(pv) => migrate(pv, object, &endpoints, &pv_names, settings).map(Some),
        });
        match migrated {
            Ok(Some(migration)) => plan.migrations.push(migration),
            Ok(None) => plan.other_volumes += 1,
            Err(error) => plan.unmigratable.push(Unmigratable {
                pv: object.name.clone(),
                error,
            }),
        }
    }
    note_shared_volumes(&mut plan.migrations);
    Ok(plan)
}

fn migrate(
    pv: InTreePv,
    object: &Object,
    endpoints: &HashMap<(&str, &str), &Object>,
    pv_names: &HashMap<&str, &Object>,
    settings: &Settings,
) -> Result<Migration, FieldError> {
    let f = object.fields();
    let mut notes = Vec::new();
    let volume =
        gluster_volume(&pv.path).map_err(|reason| f.error("spec.glusterfs.path", reason))?;

    let (endpoints_namespace, endpoints_from) = match (&pv.endpoints_namespace, &pv.claim) {
        (Some(namespace), _) => (namespace.clone(), EndpointsFrom::EndpointsNamespace),
        (None, Some(claim)) => (claim.namespace.clone(), EndpointsFrom::ClaimNamespace),
        (None, None) => {
            return Err(f.error(
                "spec.glusterfs.endpointsNamespace",
                "not set, and the volume has no spec.claimRef: the in-tree plugin looked for \
                 the Endpoints in the namespace of the pod using the volume, which cannot be \
                 known here; set spec.glusterfs.endpointsNamespace in the input",
            ));
        }
    };
    let found = endpoints
        .get(&(endpoints_namespace.as_str(), pv.endpoints.as_str()))
        .ok_or_else(|| {
            let whence = match endpoints_from {
                EndpointsFrom::EndpointsNamespace => "spec.glusterfs.endpointsNamespace",
                EndpointsFrom::ClaimNamespace => "the namespace of spec.claimRef",
            };
            let elsewhere: Vec<&str> = endpoints
                .keys()
                .filter(|(_, name)| *name == pv.endpoints)
                .map(|(namespace, _)| *namespace)
                .collect();
            let hint = if elsewhere.is_empty() {
                "Was it deleted, or was the input printed without -A?".to_string()
            } else {
                format!(
                    "Endpoints of that name are in namespace {}, which the in-tree plugin \
                     did not look in either",
                    elsewhere.join(", ")
                )
            };
            f.error(
                "spec.glusterfs.endpoints",
                format!(
                    "Endpoints {endpoints_namespace}/{} is not in the input (looked in \
                     {whence}); without it the Gluster servers are unknown. {hint}",
                    pv.endpoints
                ),
            )
        })?;
    let servers = endpoint_addresses(found).map_err(|e| {
        f.error(
            "spec.glusterfs.endpoints",
            format!(
                "Endpoints {endpoints_namespace}/{}: {}: {}",
                pv.endpoints, e.field, e.reason
            ),
        )
    })?;
    let context = VolumeContext::new(&volume, &servers, Vec::new())
        .ok_or_else(|| f.error("spec.glusterfs.endpoints", "no servers"))?;
    // Exactly what NodeStage reads back.
    VolumeContext::from_map(&context.to_map())
        .map_err(|e| f.error("spec.glusterfs", e.to_string()))?;

    let (mount_options, dropped_options) = mount_options(&pv, &f)?;
    if !dropped_options.is_empty() {
        notes.push(format!(
            "mount options left out, the driver sets them itself (servers from the Endpoints, \
             its own log file): {}",
            dropped_options.join(", ")
        ));
    }

    let mut annotations = BTreeMap::from([(ANN_MIGRATED_FROM.to_string(), pv.name.clone())]);
    if let Some(gid) = &pv.gid {
        let valid = !gid.is_empty()
            && gid.len() <= 10
            && gid.bytes().all(|b| b.is_ascii_digit())
            && gid.parse::<u64>().is_ok_and(|g| g <= i32::MAX as u64);
        if !valid {
            return Err(f.error(
                format!("metadata.annotations[{ANN_GID:?}]"),
                format!("{gid:?} is not a group id (0 to 2147483647)"),
            ));
        }
        annotations.insert(ANN_GID.to_string(), gid.clone());
    }
    if let Some(id) = &pv.heketi_volume_id {
        if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            annotations.insert(super::input::ANN_HEKETI_VOLUME_ID.to_string(), id.clone());
        } else {
            notes.push(format!(
                "Heketi volume id {id:?} is not one: not carried over"
            ));
        }
    }

    let new_name = format!("{}{}", pv.name, settings.name_suffix);
    if !is_dns1123_subdomain(&new_name) {
        return Err(f.error(
            "metadata.name",
            format!(
                "the new PersistentVolume would be {new_name:?} ({} characters), not a valid \
                 name (at most 253: lowercase letters, digits, '-', '.'); choose another \
                 --name-suffix",
                new_name.len()
            ),
        ));
    }
    if pv_names.contains_key(new_name.as_str()) {
        return Err(f.error(
            "metadata.name",
            format!(
                "the new PersistentVolume would be {new_name:?}, which already exists; was \
                 this volume migrated already? Otherwise choose another --name-suffix"
            ),
        ));
    }

    let bind = match (pv.phase.as_deref(), &pv.claim) {
        (None | Some("Bound"), Some(claim)) => Some(claim.clone()),
        (phase, claim) => {
            notes.push(format!(
                "not bound to a claim ({}): only the PersistentVolume is written, without a \
                 claim",
                match (phase, claim) {
                    (Some(phase), Some(claim)) => format!(
                        "{phase}; it was claimed by {}/{}",
                        claim.namespace, claim.name
                    ),
                    (Some(phase), None) => phase.to_string(),
                    (None, _) => "no spec.claimRef".to_string(),
                }
            ));
            None
        }
    };
    match pv.reclaim_policy.as_deref() {
        Some("Retain") => {}
        Some(policy) => notes.push(format!(
            "reclaim policy is {policy}: step 1 turns it to Retain before anything else, or \
             deleting the old claim could have {} the Gluster volume",
            if pv.provisioned_in_tree {
                "Heketi delete"
            } else {
                "Kubernetes try to remove"
            }
        )),
        None => notes.push("reclaim policy not printed: step 1 sets Retain".to_string()),
    }
    if pv.has_node_affinity {
        notes.push(
            "spec.nodeAffinity is not carried over; add it to the new PersistentVolume if pods \
             must stay on those nodes"
                .to_string(),
        );
    }
    let original = serde_json::to_value(&object.value).map_err(|e| {
        f.error(
            "(the whole object)",
            format!("cannot be written back for rollback: {e}"),
        )
    })?;
    Ok(Migration {
        volume_handle: volume_handle(&volume, &pv.name),
        original,
        new_name,
        context,
        endpoints_namespace,
        endpoints_from,
        mount_options,
        dropped_options,
        bind,
        annotations,
        notes,
        old: pv,
    })
}

/// The Gluster volume `spec.glusterfs.path` names (the in-tree plugin
/// mounted `<server>:<path>`, so one leading `/` is allowed).
fn gluster_volume(path: &str) -> Result<String, String> {
    let volume = path.strip_prefix('/').unwrap_or(path);
    if volume.contains('/') {
        return Err(format!(
            "{path:?} names a directory inside a volume; this driver mounts whole volumes \
             (mount the volume and use a subPath in the pod instead)"
        ));
    }
    if !is_gluster_volume_name(volume) {
        return Err(format!(
            "{path:?} is not a Gluster volume name (letters, digits, '-', '_'; not starting \
             with '-')"
        ));
    }
    Ok(volume.to_string())
}

/// The old PV's mount options as NodeStage will check them, plus `ro` for
/// a read-only volume (the in-tree plugin added it too); those the driver
/// sets itself are returned apart.
fn mount_options(
    pv: &InTreePv,
    f: &super::input::Fields<'_>,
) -> Result<(Vec<String>, Vec<String>), FieldError> {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (i, entry) in pv.mount_options.iter().enumerate() {
        for option in entry.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let key = option.split_once('=').map_or(option, |(k, _)| k);
            if SET_BY_DRIVER.contains(&key) {
                dropped.push(option.to_string());
                continue;
            }
            MountOptions::parse([option]).map_err(|reason| {
                f.error(
                    format!("spec.mountOptions[{i}]"),
                    format!("{reason} (the node plugin would refuse to mount the volume)"),
                )
            })?;
            kept.push(option.to_string());
        }
    }
    let mut options = MountOptions::parse(kept.iter().map(String::as_str))
        .map_err(|reason| f.error("spec.mountOptions", reason))?;
    if pv.read_only {
        options = options.with_read_only();
    }
    Ok((options.as_slice().to_vec(), dropped))
}

/// A handle unique per PersistentVolume (several may name one Gluster
/// volume) that never reads as a volume the driver made: `@` is in no
/// driver-made name, so DeleteVolume leaves it alone and NodeStage takes
/// the volume from the context.
pub fn volume_handle(volume: &str, old_pv: &str) -> String {
    let readable = format!("{volume}@{old_pv}");
    let handle = if readable.len() <= MAX_VOLUME_ID {
        readable
    } else {
        let digest = Sha256::digest(old_pv.as_bytes());
        let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{volume}@{tag}")
    };
    debug_assert!(VolumeName::parse(&handle).is_none());
    handle
}

/// Several PersistentVolumes on one Gluster volume: each is told of the
/// others (their data is the same).
fn note_shared_volumes(migrations: &mut [Migration]) {
    // The same name on other servers is another volume.
    let key = |m: &Migration| {
        let mut servers = m.context.servers();
        servers.sort();
        (m.context.volume.clone(), servers)
    };
    let mut by_volume: HashMap<(String, Vec<String>), Vec<String>> = HashMap::new();
    for m in migrations.iter() {
        by_volume
            .entry(key(m))
            .or_default()
            .push(m.old.name.clone());
    }
    for m in migrations.iter_mut() {
        let others: Vec<&String> = by_volume[&key(m)]
            .iter()
            .filter(|name| **name != m.old.name)
            .collect();
        if !others.is_empty() {
            let others: Vec<&str> = others.iter().map(|s| s.as_str()).collect();
            m.notes.push(format!(
                "Gluster volume {} is also mounted through {}: same data",
                m.context.volume,
                others.join(", ")
            ));
        }
    }
}
