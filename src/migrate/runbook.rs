//! The runbook: what to run, volume by volume, to move from the in-tree
//! PersistentVolumes to the new ones, how to check each step and how to
//! undo it. Every name in it was validated (Kubernetes names), so the
//! commands can be pasted as they are.

use std::fmt::Write;

use super::files;
use super::plan::{EndpointsFrom, Migration, Plan};

/// Prefix of the Endpoints Heketi's provisioner made for one claim.
const HEKETI_ENDPOINTS_PREFIX: &str = "glusterfs-dynamic-";

pub fn render(plan: &Plan, driver: &str, source_name: &str) -> String {
    let mut md = String::new();
    let w = &mut md;
    line(w, format!("# Moving in-tree GlusterFS volumes to {driver}"));
    line(w, "");
    line(
        w,
        format!(
            "Written by `glusterfs-csi migrate` from {source_name} ({}: {} in-tree \
             GlusterFS, {} other {} left alone). It changed nothing in the cluster: every \
             step below is yours to run, in order, from the directory holding this file.",
            count(plan.objects, "object"),
            count(
                plan.migrations.len() + plan.unmigratable.len(),
                "PersistentVolume"
            ),
            plan.other_volumes,
            if plan.other_volumes == 1 {
                "PersistentVolume"
            } else {
                "PersistentVolumes"
            }
        ),
    );
    line(w, "");
    if !plan.migrations.is_empty() {
        line(
            w,
            "| old PersistentVolume | claim | Gluster volume | servers | new PersistentVolume |",
        );
        line(w, "| --- | --- | --- | --- | --- |");
        for m in &plan.migrations {
            line(
                w,
                format!(
                    "| `{}` | {} | `{}` | {} | `{}` |",
                    m.old.name,
                    claim_name(m),
                    m.context.volume,
                    m.context.servers().join(", "),
                    m.new_name
                ),
            );
        }
        line(w, "");
    }
    if !plan.unmigratable.is_empty() {
        line(w, "## Not migrated");
        line(w, "");
        line(
            w,
            "Nothing was written for these; their pods keep failing to mount on Kubernetes 1.26 \
             and later until they are fixed and `glusterfs-csi migrate` is run again for them:",
        );
        line(w, "");
        for u in &plan.unmigratable {
            line(w, format!("- `{}`: {}", u.pv, u.error));
        }
        line(w, "");
    }
    if plan.migrations.is_empty() {
        return md;
    }
    before_you_start(w, driver);
    line(w, "## Volume by volume");
    line(w, "");
    line(
        w,
        "One volume at a time. For a workload with several of these claims, stop it once \
         (step 2), do steps 3 and 4 for each of its claims, then start it (step 5).",
    );
    line(w, "");
    for m in &plan.migrations {
        volume_steps(w, m, plan);
    }
    what_changes(w, driver);
    md
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn line(w: &mut String, text: impl AsRef<str>) {
    w.push_str(text.as_ref());
    w.push('\n');
}

fn claim_name(m: &Migration) -> String {
    match &m.bind {
        Some(claim) => format!("`{}/{}`", claim.namespace, claim.name),
        None => "(none)".to_string(),
    }
}

fn before_you_start(w: &mut String, driver: &str) {
    line(w, "## Before you start");
    line(w, "");
    for item in [
        format!(
            "1. The driver runs: `kubectl get csidriver {driver}` shows it, and its node plugin \
             runs on every node these volumes' pods may run on (`kubectl get csinode NODE -o \
             jsonpath='{{.spec.drivers[*].name}}'` lists `{driver}`)."
        ),
        "2. Best done while the cluster still runs Kubernetes 1.25 or older: the old volumes \
         still mount there, so every step can be rolled back with pods running on them again. \
         From 1.26 on the old volumes cannot be mounted at all, and rolling back only restores \
         the objects."
            .to_string(),
        "3. Keep a copy of everything this touches: `kubectl get pv,pvc,endpoints,services -A \
         -o yaml > before-migration.yaml`."
            .to_string(),
        format!(
            "4. Nothing here deletes data. The new PersistentVolumes are `Retain`, and their \
             volume handles (`<volume>@<old PersistentVolume>`) are never ids of volumes the \
             driver made: {driver} only ever deletes Gluster volumes carrying its `user.csi.*` \
             marks, and a DeleteVolume for these handles changes nothing. Do not delete the \
             volumes in Heketi (`heketi-cli volume delete`) either: the new PersistentVolumes \
             mount the very same Gluster volumes."
        ),
        "5. Claims keep their namespace and name, so pods and workloads need no change."
            .to_string(),
    ] {
        line(w, item);
    }
    line(w, "");
}

fn volume_steps(w: &mut String, m: &Migration, plan: &Plan) {
    let old = &m.old.name;
    let new = &m.new_name;
    let title = match &m.bind {
        Some(claim) => format!("{}/{}: `{old}` → `{new}`", claim.namespace, claim.name),
        None => format!("`{old}` → `{new}` (no claim)"),
    };
    line(w, format!("### {title}"));
    line(w, "");
    let from = match m.endpoints_from {
        EndpointsFrom::EndpointsNamespace => "spec.glusterfs.endpointsNamespace",
        EndpointsFrom::ClaimNamespace => "the claim's namespace, as the in-tree plugin did",
    };
    line(
        w,
        format!(
            "Gluster volume `{}` on {} (Endpoints `{}/{}`, namespace from {from}). {} \
             PersistentVolume{}.",
            m.context.volume,
            m.context.servers().join(", "),
            m.endpoints_namespace,
            m.old.endpoints,
            if m.old.provisioned_in_tree {
                "Heketi-made"
            } else {
                "Hand-made"
            },
            match &m.old.gid {
                Some(gid) => format!(", supplemental group {gid}"),
                None => String::new(),
            }
        ),
    );
    line(w, "");
    for note in &m.notes {
        line(w, format!("- {note}"));
    }
    if !m.notes.is_empty() {
        line(w, "");
    }

    let mut step = 0;
    let mut next = |w: &mut String, heading: &str| {
        step += 1;
        line(w, format!("{step}. **{heading}**"));
        step
    };

    let retain = next(
        w,
        "Keep the Gluster volume whatever happens to the old objects.",
    );
    commands(
        w,
        &[
            format!(
                "kubectl patch pv {old} -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"Retain\"}}}}'"
            ),
            format!(
                "kubectl get pv {old} -o jsonpath='{{.spec.persistentVolumeReclaimPolicy}}{{\"\\n\"}}'   # must print Retain"
            ),
        ],
    );
    match m.old.reclaim_policy.as_deref() {
        Some("Retain") => rollback(w, "nothing to undo (it was Retain already).".to_string()),
        Some(policy) => rollback(
            w,
            format!(
                "`kubectl patch pv {old} -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"{policy}\"}}}}'` \
                 (it was {policy})."
            ),
        ),
        None => rollback(
            w,
            "set the policy it had before, if it was not Retain.".to_string(),
        ),
    }

    let Some(claim) = &m.bind else {
        let create = next(w, "Create the new PersistentVolume.");
        commands(
            w,
            &[
                format!("kubectl apply -f {}", files::new_volume(m).display()),
                format!("kubectl get pv {new}   # STATUS Available"),
            ],
        );
        rollback(
            w,
            format!(
                "`kubectl delete pv {new}` (only the object goes; the Gluster volume stays), \
                 then step {retain}'s rollback."
            ),
        );
        next(w, "Remove the old PersistentVolume.");
        remove_old(w, m, plan, create);
        return;
    };
    let (ns, pvc) = (&claim.namespace, &claim.name);

    let stop = next(w, "Stop every pod using the claim.");
    commands(
        w,
        &[
            format!("kubectl describe pvc -n {ns} {pvc} | grep '^Used By'   # the pods using it"),
            format!(
                "kubectl scale -n {ns} deployment/WORKLOAD --replicas=0   # or statefulset/WORKLOAD: whatever owns those pods"
            ),
            format!("kubectl describe pvc -n {ns} {pvc} | grep '^Used By'   # must show <none>"),
        ],
    );
    rollback(
        w,
        "scale the workload back to the replicas it had, then the step before.".to_string(),
    );

    let delete_claim = next(
        w,
        "Delete the old claim; the old volume becomes Released and, being Retain, keeps its data.",
    );
    commands(
        w,
        &[
            format!("kubectl delete pvc -n {ns} {pvc}"),
            format!("kubectl get pv {old}   # STATUS Released"),
        ],
    );
    line(
        w,
        "   Roll back: bind the old claim to the old volume again, then roll back the steps \
         before:",
    );
    commands(
        w,
        &[
            format!(
                "kubectl patch pv {old} --type json -p '[{{\"op\":\"remove\",\"path\":\"/spec/claimRef\"}}]'"
            ),
            format!("kubectl apply -f {}", files::old_claim(m).display()),
            format!("kubectl get pvc -n {ns} {pvc}   # STATUS Bound, VOLUME {old}"),
        ],
    );

    let create = next(w, "Create the new volume and claim.");
    commands(
        w,
        &[
            format!("kubectl apply -f {}", files::new_volume(m).display()),
            format!("kubectl get pvc -n {ns} {pvc}   # STATUS Bound, VOLUME {new}"),
        ],
    );
    rollback(
        w,
        format!(
            "`kubectl delete -f {}` (the claim and the volume objects only: the Gluster volume \
             stays), then step {delete_claim}'s rollback.",
            files::new_volume(m).display()
        ),
    );

    next(w, "Start the workload again and check the data is there.");
    commands(
        w,
        &[
            "kubectl scale -n NAMESPACE deployment/WORKLOAD --replicas=N   # as it was before step 2"
                .replace("NAMESPACE", ns),
            format!("kubectl describe pvc -n {ns} {pvc} | grep '^Used By'   # the pods are back"),
        ],
    );
    rollback(
        w,
        format!("scale it to 0 again (step {stop}), then step {create}'s rollback."),
    );

    next(
        w,
        "Once the workload is fine, remove the old PersistentVolume.",
    );
    remove_old(w, m, plan, create);
}

fn remove_old(w: &mut String, m: &Migration, plan: &Plan, create: usize) {
    let old = &m.old.name;
    commands(w, &[format!("kubectl delete pv {old}")]);
    line(
        w,
        "   Only the object goes: with Retain and no claim holding it, nothing touches the \
         Gluster volume.",
    );
    rollback(
        w,
        format!(
            "`kubectl apply -f {}` creates the old volume again (Retain), then step {create}'s \
             rollback and those before it (Kubernetes 1.25 or older).",
            files::old_volume(m).display()
        ),
    );
    // Heketi's Endpoints and Service served this volume alone; a shared
    // Endpoints object (hand-made) may still serve others, even pods that
    // name it inline.
    let endpoints = &m.old.endpoints;
    let shared = plan
        .migrations
        .iter()
        .any(|o| o.old.name != *old && o.old.endpoints == *endpoints);
    if m.old.provisioned_in_tree && endpoints.starts_with(HEKETI_ENDPOINTS_PREFIX) && !shared {
        line(
            w,
            "   Last, once rolling back is no longer wanted: Heketi's Endpoints and Service \
             for this volume alone are no longer read (restoring them needs \
             before-migration.yaml):",
        );
        commands(
            w,
            &[format!(
                "kubectl delete -n {} service/{endpoints} endpoints/{endpoints}",
                m.endpoints_namespace
            )],
        );
    }
    line(w, "");
}

fn commands(w: &mut String, lines: &[String]) {
    line(w, "   ```sh");
    for l in lines {
        line(w, format!("   {l}"));
    }
    line(w, "   ```");
}

fn rollback(w: &mut String, text: String) {
    let _ = writeln!(w, "   Roll back: {text}");
}

fn what_changes(w: &mut String, driver: &str) {
    line(w, "## What changes for pods");
    line(w, "");
    for item in [
        "- **Supplemental group.** The old volume's `pv.beta.kubernetes.io/gid` annotation is \
         on the new one. The kubelet adds that group to every pod using a PersistentVolume \
         with the annotation, whatever its plugin, as it did with the in-tree plugin, so pods \
         that could write through the group still can. The driver itself changes no owner or \
         group (its CSIDriver has `fsGroupPolicy: None`); files keep theirs."
            .to_string(),
        format!(
            "- **Mounting.** The node plugin mounts each volume once per node (FUSE, with the \
             other servers as `backup-volfile-servers`) and binds it into pods; the in-tree \
             plugin mounted it once per pod. Client logs are the node plugin's, no longer \
             under the kubelet's `plugins/kubernetes.io/glusterfs` directory. A read-only \
             volume is mounted read-only (`ro`, and `readOnly` on {driver}'s volume)."
        ),
        "- **Servers.** The new PersistentVolume names the Gluster servers itself \
         (`volumeAttributes`: `server`, `backupServers`); the Endpoints are no longer read. A \
         PersistentVolume's source cannot be edited: if the servers' addresses change, create \
         the volume again with the same handle and attributes edited (Retain keeps the data)."
            .to_string(),
        "- **New claims.** StatefulSet `volumeClaimTemplates` and PVCs that name the old \
         StorageClass still name it: existing replicas keep their (migrated) claims, but new \
         ones need a StorageClass that provisions, such as one of this driver's."
            .to_string(),
    ] {
        line(w, item);
    }
}
