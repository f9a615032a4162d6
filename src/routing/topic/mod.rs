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
mod tests;
