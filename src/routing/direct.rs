//! The direct exchange: one hash lookup of the routing key.

use std::collections::HashMap;

use smallvec::SmallVec;

/// Routing key → the distinct destinations bound with exactly that key.
#[derive(Debug)]
pub(crate) struct DirectIndex<D> {
    by_key: HashMap<Box<[u8]>, SmallVec<[D; 2]>>,
}

impl<D: Copy + Eq> DirectIndex<D> {
    pub(crate) fn new() -> Self {
        DirectIndex {
            by_key: HashMap::new(),
        }
    }

    pub(crate) fn insert(&mut self, routing_key: &[u8], dest: D) {
        match self.by_key.get_mut(routing_key) {
            Some(dests) => {
                debug_assert!(
                    !dests.contains(&dest),
                    "direct index already holds {routing_key:?}"
                );
                dests.push(dest);
            }
            None => {
                let mut dests = SmallVec::new();
                dests.push(dest);
                self.by_key.insert(routing_key.into(), dests);
            }
        }
    }

    pub(crate) fn remove(&mut self, routing_key: &[u8], dest: D) -> bool {
        let Some(dests) = self.by_key.get_mut(routing_key) else {
            return false;
        };
        let Some(position) = dests.iter().position(|d| *d == dest) else {
            return false;
        };
        dests.swap_remove(position);
        if dests.is_empty() {
            self.by_key.remove(routing_key);
        }
        true
    }

    /// Destinations are distinct per key, so no deduplication is needed.
    pub(crate) fn route<const N: usize>(&self, routing_key: &[u8], out: &mut SmallVec<[D; N]>) {
        if let Some(dests) = self.by_key.get(routing_key) {
            out.extend_from_slice(dests);
        }
    }
}
