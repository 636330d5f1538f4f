//! `glusterfs-csi migrate`: for every PersistentVolume of the removed
//! in-tree `kubernetes.io/glusterfs` plugin, the CSI PersistentVolume that
//! mounts the same Gluster volume with this driver, its claim, rollback
//! manifests and a runbook. It reads what kubectl printed and writes new
//! files only: it never talks to the cluster, and never overwrites a file.
//!
//! - [`input`]: bounded read, YAML/JSON documents and `List`s, typed and
//!   checked views of PersistentVolumes and Endpoints;
//! - [`plan`]: Endpoints resolution (as the in-tree plugin did), volume
//!   context, handle, mount options, claim;
//! - [`manifests`] and [`runbook`]: what is written.

pub mod input;
pub mod manifests;
pub mod plan;
pub mod runbook;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::AppResult;
use crate::cli::MigrateArgs;
use input::is_dns1123_subdomain;
use plan::{Plan, Settings};

/// Where each file goes, relative to the output directory.
pub mod files {
    use std::path::PathBuf;

    use super::plan::Migration;

    pub const RUNBOOK: &str = "RUNBOOK.md";

    /// The new PersistentVolume and its claim.
    pub fn new_volume(m: &Migration) -> PathBuf {
        PathBuf::from(format!("new/{}.yaml", m.new_name))
    }

    /// The old claim, to bind the old volume again.
    pub fn old_claim(m: &Migration) -> PathBuf {
        PathBuf::from(format!("rollback/{}.pvc.yaml", m.old.name))
    }

    /// The old PersistentVolume, to create it again.
    pub fn old_volume(m: &Migration) -> PathBuf {
        PathBuf::from(format!("rollback/{}.pv.yaml", m.old.name))
    }
}

pub fn run(args: MigrateArgs) -> AppResult<()> {
    let settings = settings(&args)?;
    let (text, source_name) = match &args.input {
        Some(path) if path.as_os_str() != "-" => {
            let name = path.display().to_string();
            let file = std::fs::File::open(path).map_err(|e| format!("opening {name}: {e}"))?;
            (input::read_bounded(file, args.max_input_mib, &name)?, name)
        }
        _ => (
            input::read_bounded(
                std::io::stdin().lock(),
                args.max_input_mib,
                "standard input",
            )?,
            "standard input".to_string(),
        ),
    };
    let objects = input::parse_objects(&text, &source_name)?;
    let plan = plan::plan(&objects, &settings)?;
    for u in &plan.unmigratable {
        eprintln!("glusterfs-csi migrate: cannot migrate {}", u.error);
    }
    if !plan.unmigratable.is_empty() && !args.skip_unmigratable {
        return Err(format!(
            "{} in-tree PersistentVolume{} cannot be migrated (above); nothing was written. Fix \
             the input, or pass --skip-unmigratable to write the others and list these in the \
             runbook",
            plan.unmigratable.len(),
            if plan.unmigratable.len() == 1 {
                ""
            } else {
                "s"
            }
        )
        .into());
    }
    if plan.migrations.is_empty() && plan.unmigratable.is_empty() {
        println!(
            "no PersistentVolume with spec.glusterfs in {source_name} ({} objects, {} other \
             PersistentVolumes): nothing to migrate, nothing written",
            plan.objects, plan.other_volumes
        );
        return Ok(());
    }
    let written = write_new_files(&args.output_dir, &outputs(&plan, &settings, &source_name))?;
    for m in &plan.migrations {
        println!(
            "{} -> {}: Gluster volume {} on {}{}",
            m.old.name,
            m.new_name,
            m.context.volume,
            m.context.servers().join(","),
            match &m.bind {
                Some(claim) => format!(", claim {}/{}", claim.namespace, claim.name),
                None => String::new(),
            }
        );
    }
    for u in &plan.unmigratable {
        println!("{}: skipped (see the runbook)", u.pv);
    }
    println!(
        "wrote {written} files to {}; follow {}",
        args.output_dir.display(),
        args.output_dir.join(files::RUNBOOK).display()
    );
    Ok(())
}

fn settings(args: &MigrateArgs) -> Result<Settings, String> {
    let driver = &args.driver_name;
    if driver.len() > 63 || !is_dns1123_subdomain(driver) {
        return Err(format!(
            "--driver-name {driver:?} is not a CSI driver name (at most 63 characters: lowercase \
             letters, digits, '-', '.')"
        ));
    }
    let suffix = &args.name_suffix;
    if suffix.is_empty() || !is_dns1123_subdomain(&format!("a{suffix}")) {
        return Err(format!(
            "--name-suffix {suffix:?} must be non-empty and keep names valid (lowercase letters, \
             digits, '-', '.'; ending with a letter or digit)"
        ));
    }
    Ok(Settings {
        driver_name: driver.clone(),
        name_suffix: suffix.clone(),
    })
}

/// Every file to write, relative to the output directory, with its text.
fn outputs(plan: &Plan, settings: &Settings, source_name: &str) -> Vec<(PathBuf, String)> {
    let mut outputs = vec![(
        PathBuf::from(files::RUNBOOK),
        runbook::render(plan, &settings.driver_name, source_name),
    )];
    for m in &plan.migrations {
        outputs.push((
            files::new_volume(m),
            manifests::new_volume(m, &settings.driver_name),
        ));
        outputs.push((files::old_volume(m), manifests::old_volume(m)));
        if let Some(claim) = manifests::old_claim(m) {
            outputs.push((files::old_claim(m), claim));
        }
    }
    outputs
}

/// Writes every file, each one new: if any already exists (or is a link)
/// nothing is written at all.
fn write_new_files(dir: &Path, outputs: &[(PathBuf, String)]) -> Result<usize, String> {
    if let Some((taken, _)) = outputs
        .iter()
        .find(|(path, _)| std::fs::symlink_metadata(dir.join(path)).is_ok())
    {
        return Err(format!(
            "refusing to overwrite {}: give an empty or new --output-dir (nothing was written)",
            dir.join(taken).display()
        ));
    }
    for (path, text) in outputs {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("making {}: {e}", parent.display()))?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(outputs.len())
}
