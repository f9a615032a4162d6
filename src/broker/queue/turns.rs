//! The round-robin order of a queue's consumers that may have credit, by consumer priority
//! (`x-priority` of basic.consume): the highest level with a consumer is served first, and
//! consumers of one level take turns. Without priorities there is one level.

use std::collections::VecDeque;

use smallvec::SmallVec;

#[derive(Debug, Default)]
pub struct Turns {
    /// (priority, consumer ids in turn order), highest priority first.
    levels: SmallVec<[(i32, VecDeque<u64>); 1]>,
}

impl Turns {
    fn level(&mut self, priority: i32) -> &mut VecDeque<u64> {
        let at = self.levels.partition_point(|(p, _)| *p > priority);
        if self.levels.get(at).is_none_or(|(p, _)| *p != priority) {
            self.levels.insert(at, (priority, VecDeque::new()));
        }
        &mut self.levels[at].1
    }

    pub fn push_back(&mut self, priority: i32, id: u64) {
        self.level(priority).push_back(id);
    }

    pub fn push_front(&mut self, priority: i32, id: u64) {
        self.level(priority).push_front(id);
    }

    /// The next consumer of the highest level that has one.
    pub fn pop_front(&mut self) -> Option<u64> {
        self.levels.iter_mut().find_map(|(_, ids)| ids.pop_front())
    }

    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        for (_, ids) in &mut self.levels {
            ids.retain(|id| keep(*id));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &u64> {
        self.levels.iter().flat_map(|(_, ids)| ids.iter())
    }

    pub fn len(&self) -> usize {
        self.levels.iter().map(|(_, ids)| ids.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_priorities_first_and_round_robin_within_one() {
        let mut t = Turns::default();
        t.push_back(0, 1);
        t.push_back(5, 2);
        t.push_back(0, 3);
        t.push_back(5, 4);
        t.push_front(-1, 5);
        assert_eq!(t.len(), 5);
        let order: Vec<u64> = std::iter::from_fn(|| t.pop_front()).collect();
        assert_eq!(order, [2, 4, 1, 3, 5]);
        t.push_back(1, 7);
        t.push_back(1, 8);
        t.retain(|id| id != 7);
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), [8]);
    }
}
