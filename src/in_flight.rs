//! At most one operation per volume at a time. A second request for a volume
//! that is busy gets ABORTED at once (the sidecars retry), instead of racing
//! the first through glusterd or the mount table.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<String>>>,
}

/// Held while an operation runs; frees the key when dropped.
pub struct InFlightGuard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// `None` when an operation on `key` is already running.
    pub fn try_begin(&self, key: &str) -> Option<InFlightGuard> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.insert(key.to_string()).then(|| InFlightGuard {
            keys: Arc::clone(&self.keys),
            key: key.to_string(),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_at_a_time_per_key() {
        let in_flight = InFlight::new();
        let a = in_flight.try_begin("a").unwrap();
        assert!(in_flight.try_begin("a").is_none());
        let _b = in_flight.try_begin("b").unwrap();
        drop(a);
        assert!(in_flight.try_begin("a").is_some());
    }
}
