//! Brick directories on the servers: the agent that removes them (run by the
//! node plugin on each server), its client (used by the controller), and
//! the careful filesystem code underneath.

pub mod agent;
pub mod client;
pub mod remove;
pub mod ssh;
pub mod trash;

pub use agent::BrickAgentService;
pub use client::AgentBrickRemover;
