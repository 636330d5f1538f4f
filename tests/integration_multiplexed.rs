//! The integration suite (tests/integration.rs) again, on dev clusters
//! whose bricks are multiplexed (`dev`'s default; the other suites turn it
//! off): the bricks of every server share one glusterfsd process. The
//! harness reads the setting from this binary's name
//! (`common::suite_multiplexes`).

#[path = "integration.rs"]
mod suite;
