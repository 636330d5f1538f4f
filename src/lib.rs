//! glusterfs-csi: a CSI driver that turns volume requests into replicated
//! GlusterFS volumes, made through glusterd and mounted with FUSE.
//!
//! Layers, each depending only on the ones below:
//! - [`csi`]: gRPC adapters (validate, guard, call logic, map errors);
//! - [`controller`] and [`node`]: provisioning and mounting logic;
//! - [`gluster`], [`mount`], [`bricks`]: the real backends behind traits.
//!
//! [`dev`] runs the whole driver against a throwaway local Gluster cluster;
//! [`doctor`] checks a node for what the driver needs there; [`migrate`]
//! turns PersistentVolumes of the removed in-tree plugin into this driver's.

pub mod app;
pub mod bricks;
pub mod cli;
pub mod controller;
pub mod csi;
pub mod dev;
pub mod doctor;
#[cfg(test)]
pub mod fakes;
pub mod gluster;
pub mod in_flight;
pub mod metrics;
pub mod migrate;
pub mod mount;
pub mod names;
pub mod node;
pub mod operations;
pub mod ownership;
pub mod proto;
pub mod reaper;
pub mod ssh_command;
pub mod volume_context;
pub mod wiring;

/// What a mode returns: any error, reported once by `main`.
pub type AppResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Command-line input refused after parsing: `main` exits 2 for it, as clap
/// does for what it refuses itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
