//! A map keyed by byte strings that stays a plain vector while small.
//!
//! Most trie nodes have one or two children and most destinations have one or
//! two binding keys, so a `HashMap` per node would cost more memory than the
//! data it holds. A node such as `stock` under `stock.<sym>.*` may however have
//! 100k children, where a linear scan would make routing cost grow with the
//! number of bindings. The map therefore switches to hashing above
//! `SMALL_MAX_LEN` entries and back below `SMALL_MIN_LEN` (the gap avoids
//! flapping when one entry comes and goes at the boundary).
//!
//! The hash map uses std's randomly seeded SipHash: routing keys and binding
//! keys come from clients, so a fast unseeded hash would let one client make
//! every lookup collide.

use std::collections::hash_map;
use std::collections::HashMap;

const SMALL_MAX_LEN: usize = 8;
const SMALL_MIN_LEN: usize = 4;

#[derive(Debug)]
pub(crate) enum WordMap<V> {
    Small(Vec<(Box<[u8]>, V)>),
    Large(HashMap<Box<[u8]>, V>),
}

impl<V> Default for WordMap<V> {
    fn default() -> Self {
        WordMap::Small(Vec::new())
    }
}

impl<V> WordMap<V> {
    pub(crate) fn len(&self) -> usize {
        match self {
            WordMap::Small(entries) => entries.len(),
            WordMap::Large(map) => map.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get(&self, word: &[u8]) -> Option<&V> {
        match self {
            WordMap::Small(entries) => entries
                .iter()
                .find(|(key, _)| key.as_ref() == word)
                .map(|(_, value)| value),
            WordMap::Large(map) => map.get(word),
        }
    }

    pub(crate) fn get_mut(&mut self, word: &[u8]) -> Option<&mut V> {
        match self {
            WordMap::Small(entries) => entries
                .iter_mut()
                .find(|(key, _)| key.as_ref() == word)
                .map(|(_, value)| value),
            WordMap::Large(map) => map.get_mut(word),
        }
    }

    /// Returns the value for `word`, inserting `make()` first if absent.
    /// Copies `word` only when it is inserted.
    pub(crate) fn get_or_insert_with(&mut self, word: &[u8], make: impl FnOnce() -> V) -> &mut V {
        if let WordMap::Small(entries) = self {
            if entries.len() >= SMALL_MAX_LEN
                && !entries.iter().any(|(key, _)| key.as_ref() == word)
            {
                let map: HashMap<Box<[u8]>, V> = std::mem::take(entries).into_iter().collect();
                *self = WordMap::Large(map);
            }
        }
        match self {
            WordMap::Small(entries) => {
                let position = match entries.iter().position(|(key, _)| key.as_ref() == word) {
                    Some(position) => position,
                    None => {
                        entries.push((word.into(), make()));
                        entries.len() - 1
                    }
                };
                &mut entries[position].1
            }
            WordMap::Large(map) => {
                // Two lookups on insert rather than allocating a key for
                // `entry()` on every hit.
                if !map.contains_key(word) {
                    map.insert(word.into(), make());
                }
                match map.get_mut(word) {
                    Some(value) => value,
                    None => unreachable!("key inserted just above"),
                }
            }
        }
    }

    pub(crate) fn remove(&mut self, word: &[u8]) -> Option<V> {
        match self {
            WordMap::Small(entries) => {
                let position = entries.iter().position(|(key, _)| key.as_ref() == word)?;
                Some(entries.swap_remove(position).1)
            }
            WordMap::Large(map) => {
                let value = map.remove(word)?;
                if map.len() < SMALL_MIN_LEN {
                    let entries: Vec<(Box<[u8]>, V)> = map.drain().collect();
                    *self = WordMap::Small(entries);
                }
                Some(value)
            }
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_, V> {
        match self {
            WordMap::Small(entries) => Iter::Small(entries.iter()),
            WordMap::Large(map) => Iter::Large(map.iter()),
        }
    }
}

pub(crate) enum Iter<'a, V> {
    Small(std::slice::Iter<'a, (Box<[u8]>, V)>),
    Large(hash_map::Iter<'a, Box<[u8]>, V>),
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (&'a [u8], &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(entries) => entries.next().map(|(key, value)| (key.as_ref(), value)),
            Iter::Large(entries) => entries.next().map(|(key, value)| (key.as_ref(), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_into_a_hash_map_and_shrinks_back() {
        let mut map: WordMap<usize> = WordMap::default();
        for i in 0..100usize {
            *map.get_or_insert_with(i.to_string().as_bytes(), || 0) += i;
        }
        assert!(
            matches!(map, WordMap::Large(_)),
            "expected a hash map at 100 entries"
        );
        assert_eq!(map.len(), 100);
        assert_eq!(map.get(b"42"), Some(&42));
        for i in 0..98usize {
            assert_eq!(map.remove(i.to_string().as_bytes()), Some(i));
        }
        assert!(
            matches!(map, WordMap::Small(_)),
            "expected a vector at 2 entries"
        );
        let mut left: Vec<_> = map
            .iter()
            .map(|(key, value)| (key.to_vec(), *value))
            .collect();
        left.sort();
        assert_eq!(left, vec![(b"98".to_vec(), 98), (b"99".to_vec(), 99)]);
        assert_eq!(map.remove(b"nope"), None);
    }
}
