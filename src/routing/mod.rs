//! Exchange routing: which destinations a message published to an exchange
//! reaches, with RabbitMQ's semantics.
//!
//! This module is pure data: it holds one exchange's bindings and answers
//! `route` queries. It does no I/O and knows nothing of queues or channels;
//! the destination is any small `Copy` id (a queue id, or an exchange id for
//! exchange-to-exchange bindings, which the caller follows itself).
//!
//! ```
//! use smallvec::SmallVec;
//! use warren::protocol::table::FieldTable;
//! use warren::routing::{Bindings, ExchangeKind};
//!
//! let mut bindings = Bindings::new(ExchangeKind::Topic);
//! let no_arguments = FieldTable::default();
//! bindings.bind(1u32, b"stock.*.nyse", &no_arguments);
//! bindings.bind(2u32, b"stock.#", &no_arguments);
//! let mut out: SmallVec<[u32; 8]> = SmallVec::new();
//! bindings.route(b"stock.ibm.nyse", None, &mut out);
//! out.sort();
//! assert_eq!(out.as_slice(), &[1, 2]);
//! ```
//!
//! A binding is identified, as in RabbitMQ, by (destination, routing key,
//! arguments sorted by key): binding the same triple twice is a no-op, and the
//! same destination may be bound several times with different keys or
//! arguments. `Bindings` keeps that set of triples once, per destination, and
//! beside it an index shaped for the exchange type:
//!
//! | type    | index                              | route cost                    |
//! |---------|------------------------------------|-------------------------------|
//! | direct  | hash map key → destinations        | one lookup                    |
//! | fanout  | vector of destinations             | one copy                      |
//! | topic   | trie over the words of the keys    | words × live patterns         |
//! | headers | vector of (destination, arguments) | every binding, as in RabbitMQ |
//!
//! The indexes hold each destination at most once per key (per argument set
//! for headers), so direct and fanout never produce duplicates. Topic and
//! headers can reach one destination along several bindings (`a.*` and `#`);
//! they sort and deduplicate only the part of `out` they appended, and only
//! when more than one binding matched, so the common case costs nothing extra.
//!
//! Routing allocates nothing unless `out` grows past its inline capacity, a
//! topic key keeps more than 16 trie nodes alive, or a message has more than
//! 16 headers for a headers exchange.

mod args;
mod direct;
mod fanout;
pub mod headers;
mod topic;
mod word_map;

use std::collections::HashMap;
use std::hash::Hash;

use smallvec::SmallVec;

use crate::protocol::table::FieldTable;
use direct::DirectIndex;
use fanout::FanoutIndex;
use headers::HeadersIndex;
use topic::TopicTrie;
use word_map::WordMap;

pub use headers::{
    validate_arguments as validate_headers_arguments, BindingArgumentsError, XMatch,
};

/// The four exchange types of AMQP 0-9-1 as RabbitMQ names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// The type named in exchange.declare; None for any other name (RabbitMQ
    /// answers 503 COMMAND_INVALID "unknown exchange type").
    pub fn parse(name: &[u8]) -> Option<ExchangeKind> {
        match name {
            b"direct" => Some(ExchangeKind::Direct),
            b"fanout" => Some(ExchangeKind::Fanout),
            b"topic" => Some(ExchangeKind::Topic),
            b"headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// The argument sets one destination is bound with under one routing key;
/// almost always exactly one, the empty table.
type ArgumentSets = SmallVec<[FieldTable; 1]>;

#[derive(Debug, Default)]
struct DestBindings {
    by_key: WordMap<ArgumentSets>,
    binding_count: usize,
}

#[derive(Debug)]
enum Index<D> {
    Direct(DirectIndex<D>),
    Fanout(FanoutIndex<D>),
    Topic(TopicTrie<D>),
    Headers(HeadersIndex<D>),
}

/// All bindings of one exchange, generic over the destination id (a queue or
/// an exchange id).
#[derive(Debug)]
pub struct Bindings<D> {
    kind: ExchangeKind,
    by_dest: HashMap<D, DestBindings>,
    binding_count: usize,
    index: Index<D>,
}

impl<D: Copy + Eq + Hash + Ord + std::fmt::Debug> Bindings<D> {
    pub fn new(kind: ExchangeKind) -> Self {
        let index = match kind {
            ExchangeKind::Direct => Index::Direct(DirectIndex::new()),
            ExchangeKind::Fanout => Index::Fanout(FanoutIndex::new()),
            ExchangeKind::Topic => Index::Topic(TopicTrie::new()),
            ExchangeKind::Headers => Index::Headers(HeadersIndex::new()),
        };
        Bindings {
            kind,
            by_dest: HashMap::new(),
            binding_count: 0,
            index,
        }
    }

    pub fn kind(&self) -> ExchangeKind {
        self.kind
    }

    /// Returns false if this exact binding (dest, routing key, arguments)
    /// already existed (RabbitMQ treats a duplicate bind as a no-op).
    ///
    /// Headers arguments are not validated here; call
    /// [`validate_headers_arguments`] first to refuse a bad `x-match` as
    /// RabbitMQ does.
    pub fn bind(&mut self, dest: D, routing_key: &[u8], arguments: &FieldTable) -> bool {
        let arguments = args::sorted(arguments);
        let entry = self.by_dest.entry(dest).or_default();
        let new_dest = entry.binding_count == 0;
        let argument_sets = entry
            .by_key
            .get_or_insert_with(routing_key, ArgumentSets::new);
        if argument_sets
            .iter()
            .any(|existing| args::identical(existing, &arguments))
        {
            return false;
        }
        let new_key = argument_sets.is_empty();
        match &mut self.index {
            Index::Direct(index) if new_key => index.insert(routing_key, dest),
            Index::Fanout(index) if new_dest => index.insert(dest),
            Index::Topic(index) if new_key => {
                let inserted = index.insert(routing_key, dest);
                debug_assert!(inserted, "topic trie already held {dest:?} for a new key");
            }
            Index::Headers(index) => index.insert(dest, arguments.clone()),
            _ => {}
        }
        argument_sets.push(arguments);
        entry.binding_count += 1;
        self.binding_count += 1;
        true
    }

    /// Returns false if it did not exist (not an error in RabbitMQ).
    pub fn unbind(&mut self, dest: D, routing_key: &[u8], arguments: &FieldTable) -> bool {
        let arguments = args::sorted(arguments);
        let Some(entry) = self.by_dest.get_mut(&dest) else {
            return false;
        };
        let Some(argument_sets) = entry.by_key.get_mut(routing_key) else {
            return false;
        };
        let Some(position) = argument_sets
            .iter()
            .position(|existing| args::identical(existing, &arguments))
        else {
            return false;
        };
        argument_sets.swap_remove(position);
        let key_gone = argument_sets.is_empty();
        if key_gone {
            entry.by_key.remove(routing_key);
        }
        entry.binding_count -= 1;
        let dest_gone = entry.binding_count == 0;
        if dest_gone {
            self.by_dest.remove(&dest);
        }
        let removed = match &mut self.index {
            Index::Direct(index) if key_gone => index.remove(routing_key, dest),
            Index::Fanout(index) if dest_gone => index.remove(dest),
            Index::Topic(index) if key_gone => index.remove(routing_key, dest),
            Index::Headers(index) => index.remove(dest, &arguments),
            _ => true,
        };
        debug_assert!(
            removed,
            "index lacked a binding of {dest:?} the binding set had"
        );
        self.binding_count -= 1;
        true
    }

    /// Removes every binding to `dest` (queue or exchange deleted); returns
    /// how many.
    pub fn remove_destination(&mut self, dest: D) -> usize {
        let Some(entry) = self.by_dest.remove(&dest) else {
            return 0;
        };
        match &mut self.index {
            Index::Direct(index) => {
                for (routing_key, _) in entry.by_key.iter() {
                    let removed = index.remove(routing_key, dest);
                    debug_assert!(removed, "direct index lacked a key of {dest:?}");
                }
            }
            Index::Fanout(index) => {
                let removed = index.remove(dest);
                debug_assert!(removed, "fanout index lacked {dest:?}");
            }
            Index::Topic(index) => {
                for (routing_key, _) in entry.by_key.iter() {
                    let removed = index.remove(routing_key, dest);
                    debug_assert!(removed, "topic trie lacked a key of {dest:?}");
                }
            }
            Index::Headers(index) => index.remove_destination(dest),
        }
        self.binding_count -= entry.binding_count;
        entry.binding_count
    }

    pub fn len(&self) -> usize {
        self.binding_count
    }

    pub fn is_empty(&self) -> bool {
        self.binding_count == 0
    }

    pub fn has_destination(&self, dest: D) -> bool {
        self.by_dest.contains_key(&dest)
    }

    /// Appends every matching destination to `out`, each at most once per
    /// call (destinations already in `out` before the call are left alone).
    /// `headers` is used only by headers exchanges, `routing_key` by the
    /// others.
    pub fn route(
        &self,
        routing_key: &[u8],
        headers: Option<&FieldTable>,
        out: &mut SmallVec<[D; 8]>,
    ) {
        match &self.index {
            Index::Direct(index) => index.route(routing_key, out),
            Index::Fanout(index) => index.route(out),
            Index::Topic(index) => index.route(routing_key, out),
            Index::Headers(index) => index.route(headers, out),
        }
    }

    /// Iterates (dest, routing_key, arguments) for listing / persistence, in
    /// no particular order. Arguments come back sorted by key, as RabbitMQ
    /// stores them.
    pub fn iter(&self) -> impl Iterator<Item = (D, &[u8], &FieldTable)> {
        self.by_dest.iter().flat_map(|(dest, entry)| {
            entry
                .by_key
                .iter()
                .flat_map(move |(routing_key, argument_sets)| {
                    argument_sets
                        .iter()
                        .map(move |arguments| (*dest, routing_key, arguments))
                })
        })
    }

    /// Live topic trie nodes (root included); 0 for other kinds.
    #[cfg(test)]
    fn topic_node_count(&self) -> usize {
        match &self.index {
            Index::Topic(index) => index.node_count(),
            _ => 0,
        }
    }
}

/// Sorts and deduplicates `out[start..]`, leaving `out[..start]` untouched.
fn dedup_tail<D: Copy + Ord, const N: usize>(out: &mut SmallVec<[D; N]>, start: usize) {
    let tail = &mut out[start..];
    tail.sort_unstable();
    let mut kept = 0;
    for read in 0..tail.len() {
        if kept == 0 || tail[read] != tail[kept - 1] {
            tail[kept] = tail[read];
            kept += 1;
        }
    }
    out.truncate(start + kept);
}

#[cfg(test)]
mod tests;
