//! The topic exchange: a trie over the words of binding keys.
//!
//! A binding key such as `logs.#.error` is stored as a path root → `logs` →
//! `#` → `error`, and the destination sits on the last node. Routing walks the
//! trie once, word by word, keeping the set of nodes the key prefix can be in
//! (an NFA simulation), so its cost depends on the key and on how many patterns
//! could match it, not on how many bindings exist.
//!
//! Words are split on `.` exactly as RabbitMQ's `split_topic_key` does: the
//! empty key has no words, and every `.` ends a word, so `"."` is two empty
//! words and `"a..b"` is `a`, ``, `b`. A word is special only when it is
//! exactly `*` (one word, possibly empty) or `#` (zero or more words).
//!
//! Nodes live in an arena and are indexed by `u32`. A node with neither
//! destinations nor children is freed as soon as its last binding goes, and
//! freed slots are reused, so bind/unbind churn does not grow memory beyond the
//! peak number of live nodes.

use smallvec::SmallVec;

use super::word_map::WordMap;

type NodeId = u32;
const ROOT: NodeId = 0;
const NO_NODE: NodeId = NodeId::MAX;

/// Active node sets hold this many ids before they spill to the heap; a key
/// rarely keeps more than a handful of patterns alive at once.
type NodeSet = SmallVec<[NodeId; 16]>;

#[derive(Debug)]
struct Node<D> {
    /// Children by literal word.
    words: WordMap<NodeId>,
    star: NodeId,
    hash: NodeId,
    /// Reached through a `#` edge: may consume any further word and stay here.
    via_hash: bool,
    /// Distinct destinations whose binding key ends at this node.
    dests: SmallVec<[D; 1]>,
}

impl<D> Node<D> {
    fn new(via_hash: bool) -> Self {
        Node {
            words: WordMap::default(),
            star: NO_NODE,
            hash: NO_NODE,
            via_hash,
            dests: SmallVec::new(),
        }
    }

    fn is_prunable(&self) -> bool {
        self.dests.is_empty()
            && self.words.is_empty()
            && self.star == NO_NODE
            && self.hash == NO_NODE
    }
}

/// One word of a binding key, classified.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Word(&'a [u8]),
    Star,
    Hash,
}

impl<'a> Edge<'a> {
    fn of(word: &'a [u8]) -> Edge<'a> {
        match word {
            b"*" => Edge::Star,
            b"#" => Edge::Hash,
            _ => Edge::Word(word),
        }
    }
}

/// Splits a routing or binding key into words the way RabbitMQ does.
pub(crate) fn words(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    // `split` yields one empty word for an empty slice; RabbitMQ yields none.
    let skip = usize::from(key.is_empty());
    key.split(|byte| *byte == b'.').skip(skip)
}

#[derive(Debug)]
pub(crate) struct TopicTrie<D> {
    nodes: Vec<Node<D>>,
    free: Vec<NodeId>,
}

impl<D: Copy + Eq + Ord> TopicTrie<D> {
    pub(crate) fn new() -> Self {
        TopicTrie {
            nodes: vec![Node::new(false)],
            free: Vec::new(),
        }
    }

    /// Number of live nodes, the root included (for tests of pruning).
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    /// Number of node slots ever allocated (live or free).
    #[cfg(test)]
    pub(crate) fn node_capacity(&self) -> usize {
        self.nodes.len()
    }

    fn node(&self, id: NodeId) -> &Node<D> {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<D> {
        &mut self.nodes[id as usize]
    }

    fn child(&self, id: NodeId, edge: Edge<'_>) -> NodeId {
        let node = self.node(id);
        match edge {
            Edge::Word(word) => node.words.get(word).copied().unwrap_or(NO_NODE),
            Edge::Star => node.star,
            Edge::Hash => node.hash,
        }
    }

    fn allocate(&mut self, via_hash: bool) -> NodeId {
        match self.free.pop() {
            Some(id) => {
                *self.node_mut(id) = Node::new(via_hash);
                id
            }
            None => {
                let id = NodeId::try_from(self.nodes.len()).unwrap_or(NO_NODE);
                assert!(id != NO_NODE, "topic trie exceeds {} nodes", NO_NODE);
                self.nodes.push(Node::new(via_hash));
                id
            }
        }
    }

    /// Adds `dest` under `pattern`; false if it was already there.
    pub(crate) fn insert(&mut self, pattern: &[u8], dest: D) -> bool {
        let mut at = ROOT;
        for word in words(pattern) {
            let edge = Edge::of(word);
            let existing = self.child(at, edge);
            at = if existing != NO_NODE {
                existing
            } else {
                let created = self.allocate(matches!(edge, Edge::Hash));
                let node = self.node_mut(at);
                match edge {
                    Edge::Word(word) => *node.words.get_or_insert_with(word, || created) = created,
                    Edge::Star => node.star = created,
                    Edge::Hash => node.hash = created,
                }
                created
            };
        }
        let dests = &mut self.node_mut(at).dests;
        if dests.contains(&dest) {
            return false;
        }
        dests.push(dest);
        true
    }

    /// Removes `dest` from `pattern` and frees the nodes left empty; false if
    /// it was not there.
    pub(crate) fn remove(&mut self, pattern: &[u8], dest: D) -> bool {
        // The path from the root, as (parent, edge) pairs, to prune upwards.
        let mut path: SmallVec<[(NodeId, Edge<'_>); 16]> = SmallVec::new();
        let mut at = ROOT;
        for word in words(pattern) {
            let edge = Edge::of(word);
            let next = self.child(at, edge);
            if next == NO_NODE {
                return false;
            }
            path.push((at, edge));
            at = next;
        }
        let dests = &mut self.node_mut(at).dests;
        let Some(position) = dests.iter().position(|d| *d == dest) else {
            return false;
        };
        dests.remove(position);
        while let Some((parent, edge)) = path.pop() {
            if !self.node(at).is_prunable() {
                break;
            }
            let node = self.node_mut(parent);
            match edge {
                Edge::Word(word) => {
                    let removed = node.words.remove(word);
                    debug_assert_eq!(removed, Some(at), "trie edge points elsewhere");
                }
                Edge::Star => node.star = NO_NODE,
                Edge::Hash => node.hash = NO_NODE,
            }
            // Drop the old node's storage now rather than at reuse.
            *self.node_mut(at) = Node::new(false);
            self.free.push(at);
            at = parent;
        }
        true
    }

    /// Adds `set`'s `#` children, transitively: a `#` may match zero words.
    fn close_over_hash(&self, set: &mut NodeSet) {
        let mut i = 0;
        while i < set.len() {
            let hash = self.node(set[i]).hash;
            if hash != NO_NODE && !set.contains(&hash) {
                set.push(hash);
            }
            i += 1;
        }
    }

    /// Appends each destination whose pattern matches `routing_key`, once.
    pub(crate) fn route<const N: usize>(&self, routing_key: &[u8], out: &mut SmallVec<[D; N]>) {
        let mut current = NodeSet::new();
        let mut next = NodeSet::new();
        current.push(ROOT);
        self.close_over_hash(&mut current);
        for word in words(routing_key) {
            next.clear();
            // Each node enters `next` at most once here: a word or star child
            // has one parent, and a `#` node (entered only by itself) is
            // neither. `close_over_hash` checks for the one overlap left.
            for &id in &current {
                let node = self.node(id);
                if let Some(&child) = node.words.get(word) {
                    next.push(child);
                }
                if node.star != NO_NODE {
                    next.push(node.star);
                }
                if node.via_hash {
                    next.push(id);
                }
            }
            if next.is_empty() {
                return;
            }
            self.close_over_hash(&mut next);
            std::mem::swap(&mut current, &mut next);
        }
        let start = out.len();
        let mut matched_nodes = 0;
        for &id in &current {
            let dests = &self.node(id).dests;
            if !dests.is_empty() {
                matched_nodes += 1;
                out.extend_from_slice(dests);
            }
        }
        // Dests are distinct within a node; only several nodes can repeat one.
        if matched_nodes > 1 {
            super::dedup_tail(out, start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(trie: &TopicTrie<u32>, key: &str) -> Vec<u32> {
        let mut out: SmallVec<[u32; 8]> = SmallVec::new();
        trie.route(key.as_bytes(), &mut out);
        let mut out = out.to_vec();
        out.sort_unstable();
        out
    }

    fn matches(pattern: &str, key: &str) -> bool {
        let mut trie = TopicTrie::new();
        trie.insert(pattern.as_bytes(), 1u32);
        route(&trie, key) == [1]
    }

    /// Reference matcher: a direct recursive reading of the topic rules.
    fn reference_matches(pattern: &[&[u8]], key: &[&[u8]]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&b"#", rest)) => {
                reference_matches(rest, key)
                    || (!key.is_empty() && reference_matches(pattern, &key[1..]))
            }
            Some((&word, rest)) => match key.split_first() {
                Some((&first, key_rest)) => {
                    (word == b"*" || word == first) && reference_matches(rest, key_rest)
                }
                None => false,
            },
        }
    }

    #[test]
    fn words_split_like_rabbitmq() {
        let split = |key: &str| {
            words(key.as_bytes())
                .map(|w| w.to_vec())
                .collect::<Vec<_>>()
        };
        assert_eq!(split(""), Vec::<Vec<u8>>::new());
        assert_eq!(split("."), vec![b"".to_vec(), b"".to_vec()]);
        assert_eq!(
            split("a..b"),
            vec![b"a".to_vec(), b"".to_vec(), b"b".to_vec()]
        );
        assert_eq!(split("a."), vec![b"a".to_vec(), b"".to_vec()]);
    }

    #[test]
    fn hash_matches_zero_or_more_words() {
        let cases = [
            ("#", "", true),
            ("#", "a", true),
            ("#", "a.b.c", true),
            ("#", ".", true),
            ("#.a", "a", true),
            ("#.a", "x.a", true),
            ("#.a", "a.x", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("a.#", "b", false),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("a.#.b", "a.b.x", false),
            ("a.#.#.b", "a.b", true),
            ("a.#.#.b", "a.x.b", true),
            ("a.#.#.b", "a.x.y.z.b", true),
            ("#.#", "", true),
            ("#.#", "a.b", true),
            ("a.*.#", "a", false),
            ("a.*.#", "a.b", true),
            ("a.*.#", "a.b.c.d", true),
            ("#.b.#", "b", true),
            ("#.b.#", "a.b.c", true),
            ("#.b.#", "a.c", false),
            ("a#", "a", false),
            ("a#", "a#", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(
                matches(pattern, key),
                expected,
                "pattern {pattern:?} key {key:?}"
            );
        }
    }

    #[test]
    fn star_matches_exactly_one_word_including_empty() {
        let cases = [
            ("*", "a", true),
            ("*", "", false),
            ("*", "a.b", false),
            ("*", ".", false),
            ("*.*", "a", false),
            ("*.*", "a.b", true),
            ("*.*", ".", true),
            ("*.*", "a.", true),
            ("a.*", "a.", true),
            ("a.*", "a", false),
            ("*.b", ".b", true),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("", "", true),
            ("", "a", false),
            ("a", "", false),
            ("*", "*", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(
                matches(pattern, key),
                expected,
                "pattern {pattern:?} key {key:?}"
            );
        }
    }

    #[test]
    fn destination_matched_by_several_patterns_is_routed_once() {
        let mut trie = TopicTrie::new();
        for pattern in ["a.*", "#", "a.b", "*.b", "a.#", "#.#"] {
            assert!(trie.insert(pattern.as_bytes(), 7u32));
        }
        trie.insert(b"a.b", 9);
        assert_eq!(route(&trie, "a.b"), vec![7, 9]);
        assert_eq!(route(&trie, "zzz"), vec![7]);
    }

    #[test]
    fn duplicate_insert_and_missing_remove_report_false() {
        let mut trie = TopicTrie::new();
        assert!(trie.insert(b"a.b", 1u32));
        assert!(!trie.insert(b"a.b", 1));
        assert!(!trie.remove(b"a.c", 1));
        assert!(!trie.remove(b"a.b", 2));
        assert!(!trie.remove(b"a", 1));
        assert!(trie.remove(b"a.b", 1));
        assert!(!trie.remove(b"a.b", 1));
    }

    #[test]
    fn unbinding_prunes_nodes_and_churn_reuses_them() {
        let mut trie = TopicTrie::new();
        trie.insert(b"keep.#", 1u32);
        let baseline = trie.node_count();
        let mut peak_capacity = 0;
        for round in 0..20u32 {
            for i in 0..200u32 {
                let pattern = format!("r{round}.q{i}.*.#.x{i}");
                assert!(trie.insert(pattern.as_bytes(), i));
            }
            peak_capacity = peak_capacity.max(trie.node_capacity());
            for i in 0..200u32 {
                let pattern = format!("r{round}.q{i}.*.#.x{i}");
                assert!(trie.remove(pattern.as_bytes(), i), "remove {pattern}");
            }
            assert_eq!(
                trie.node_count(),
                baseline,
                "nodes left after round {round}"
            );
        }
        assert!(
            trie.node_capacity() <= peak_capacity,
            "arena grew past its peak: {} > {peak_capacity}",
            trie.node_capacity()
        );
        assert_eq!(route(&trie, "keep.it"), vec![1]);
        assert!(trie.remove(b"keep.#", 1));
        assert_eq!(trie.node_count(), 1, "only the root should remain");
    }

    #[test]
    fn removing_a_prefix_pattern_keeps_longer_patterns() {
        let mut trie = TopicTrie::new();
        trie.insert(b"a", 1u32);
        trie.insert(b"a.b", 2);
        trie.insert(b"a.#", 3);
        assert!(trie.remove(b"a", 1));
        assert_eq!(route(&trie, "a.b"), vec![2, 3]);
        assert!(trie.remove(b"a.#", 3));
        assert_eq!(route(&trie, "a.b"), vec![2]);
        assert_eq!(route(&trie, "a"), Vec::<u32>::new());
        assert!(trie.remove(b"a.b", 2));
        assert_eq!(trie.node_count(), 1);
    }

    fn word() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just(""), Just("*"), Just("#")]
    }

    fn key_word() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("")]
    }

    fn join(words: &[&str], empty: bool) -> String {
        if empty {
            String::new()
        } else {
            words.join(".")
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn trie_agrees_with_reference_matcher(
            patterns in prop::collection::vec((prop::collection::vec(word(), 1..6), any::<bool>()), 1..12),
            keys in prop::collection::vec((prop::collection::vec(key_word(), 1..7), any::<bool>()), 1..12),
            removed in prop::collection::vec(any::<bool>(), 12),
        ) {
            let patterns: Vec<String> = patterns
                .iter()
                .map(|(words, empty)| join(words, *empty && words.len() == 1))
                .collect();
            let mut trie = TopicTrie::new();
            let mut live = Vec::new();
            for (dest, pattern) in patterns.iter().enumerate() {
                trie.insert(pattern.as_bytes(), dest as u32);
            }
            for (dest, pattern) in patterns.iter().enumerate() {
                if removed[dest] {
                    prop_assert!(trie.remove(pattern.as_bytes(), dest as u32));
                } else {
                    live.push((dest as u32, pattern));
                }
            }
            for (words_of_key, empty) in &keys {
                let key = join(words_of_key, *empty && words_of_key.len() == 1);
                let key_words: Vec<&[u8]> = words(key.as_bytes()).collect();
                let mut expected: Vec<u32> = live
                    .iter()
                    .filter(|(_, pattern)| {
                        let pattern_words: Vec<&[u8]> = words(pattern.as_bytes()).collect();
                        reference_matches(&pattern_words, &key_words)
                    })
                    .map(|(dest, _)| *dest)
                    .collect();
                expected.sort_unstable();
                prop_assert_eq!(route(&trie, &key), expected, "key {:?} patterns {:?}", key, live);
            }
            for (dest, pattern) in &live {
                prop_assert!(trie.remove(pattern.as_bytes(), *dest));
            }
            prop_assert_eq!(trie.node_count(), 1, "trie not pruned to the root");
        }
    }
}
