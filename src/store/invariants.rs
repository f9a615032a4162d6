//! What must hold of a store after every batch, checked under `debug_assert!`.

use super::Store;

impl<W> Store<W> {
    /// Panics with what drifted; true otherwise, so that it can sit in `debug_assert!`.
    pub fn check_invariants(&self) -> bool {
        assert!(
            self.synced <= self.appended,
            "store {}: synced {} past appended {}",
            self.dir.display(),
            self.synced,
            self.appended
        );
        assert!(
            self.segments.contains_key(&self.current),
            "store {}: current segment {} is not tracked",
            self.dir.display(),
            self.current
        );
        assert_eq!(
            self.seg_buf.len() as u64,
            self.current_len - self.seg_buf_offset,
            "store {}: segment buffer out of step with the segment's length",
            self.dir.display()
        );
        assert_eq!(
            self.defs_buf.len() as u64,
            self.defs_len - self.defs_buf_offset,
            "store {}: definitions buffer out of step with the log's length",
            self.dir.display()
        );
        let mut last = self.synced;
        for (ticket, _) in &self.waiters {
            assert!(
                *ticket > self.synced && *ticket >= last,
                "store {}: waiter for record {ticket} out of order (synced {}, previous {last})",
                self.dir.display(),
                self.synced
            );
            last = *ticket;
        }
        for id in &self.deletable {
            assert!(
                !self.segments.contains_key(id),
                "store {}: segment {id} is both live and deletable",
                self.dir.display()
            );
        }
        true
    }
}
