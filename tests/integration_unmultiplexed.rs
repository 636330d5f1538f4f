//! The integration suite (tests/integration.rs) again, on dev clusters
//! whose bricks are not multiplexed: every brick its own glusterfsd, as
//! gluster runs by default. The harness reads the setting from this
//! binary's name (`common::suite_multiplexes`).

#[path = "integration.rs"]
mod suite;
