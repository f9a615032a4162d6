//! The fanout exchange: every bound destination, whatever the key.

use smallvec::SmallVec;

/// The distinct destinations with at least one binding, in a flat vector so
/// that routing is one copy. Removal scans it, which is fine for the tens to
/// thousands of queues a fanout exchange has.
#[derive(Debug)]
pub(crate) struct FanoutIndex<D> {
    dests: Vec<D>,
}

impl<D: Copy + Eq> FanoutIndex<D> {
    pub(crate) fn new() -> Self {
        FanoutIndex { dests: Vec::new() }
    }

    pub(crate) fn insert(&mut self, dest: D) {
        debug_assert!(
            !self.dests.contains(&dest),
            "fanout index already holds the destination"
        );
        self.dests.push(dest);
    }

    pub(crate) fn remove(&mut self, dest: D) -> bool {
        match self.dests.iter().position(|d| *d == dest) {
            Some(position) => {
                self.dests.swap_remove(position);
                true
            }
            None => false,
        }
    }

    pub(crate) fn route<const N: usize>(&self, out: &mut SmallVec<[D; N]>) {
        out.extend_from_slice(&self.dests);
    }
}
