//! Brick directories on the servers: the agent that removes them (run by the
//! node plugin on each server), its client (used by the controller), and
//! the careful filesystem code underneath: a removed brick is renamed into
//! its brick root's trash, and a child process purges the trash.

pub mod agent;
pub mod client;
pub mod purge;
pub mod remove;
pub mod ssh;
pub mod trash;
pub mod walk;

pub use agent::BrickAgentService;
pub use client::AgentBrickRemover;

#[cfg(test)]
mod testing;
