//! Brick directories on the servers: the agent that removes them and checks
//! brick roots (run by the node plugin on each server), its client (used by
//! the controller), and the careful filesystem code underneath: a removed
//! brick is renamed into its brick root's trash, and a child process purges
//! the trash.

pub mod agent;
pub mod client;
pub mod purge;
pub mod remove;
pub mod root;
pub mod ssh;
pub mod trash;
pub mod walk;

pub use agent::{AgentToken, BrickAgentService, BrickRootsSeen};
pub use client::AgentBrickServers;

#[cfg(test)]
mod testing;
