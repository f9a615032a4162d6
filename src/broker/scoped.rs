//! Names scoped by vhost: the same name in two vhosts is two entries. Looked up by borrowed
//! bytes (a vhost, then a name), so a lookup copies nothing.

use std::collections::HashMap;

use bytes::Bytes;

#[derive(Debug)]
pub struct Scoped<T> {
    by_vhost: HashMap<Bytes, HashMap<Bytes, T>>,
    len: usize,
}

impl<T> Default for Scoped<T> {
    fn default() -> Self {
        Scoped {
            by_vhost: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> Scoped<T> {
    pub fn get(&self, vhost: &[u8], name: &[u8]) -> Option<&T> {
        self.by_vhost.get(vhost)?.get(name)
    }

    pub fn insert(&mut self, vhost: Bytes, name: Bytes, value: T) -> Option<T> {
        let old = self.by_vhost.entry(vhost).or_default().insert(name, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, vhost: &[u8], name: &[u8]) -> Option<T> {
        let names = self.by_vhost.get_mut(vhost)?;
        let old = names.remove(name)?;
        if names.is_empty() {
            self.by_vhost.remove(vhost);
        }
        self.len -= 1;
        Some(old)
    }

    /// The entries of one vhost.
    pub fn in_vhost(&self, vhost: &[u8]) -> impl Iterator<Item = &T> {
        self.by_vhost
            .get(vhost)
            .into_iter()
            .flat_map(|n| n.values())
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_name_in_two_vhosts_is_two_entries() {
        let mut s = Scoped::default();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert!(s.insert(b("/"), b("q"), 1).is_none());
        assert!(s.insert(b("v"), b("q"), 2).is_none());
        assert_eq!((s.get(b"/", b"q"), s.get(b"v", b"q")), (Some(&1), Some(&2)));
        assert_eq!(s.insert(b("v"), b("q"), 3), Some(2));
        assert_eq!(s.len(), 2);
        assert_eq!(s.in_vhost(b"v").copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(s.remove(b"v", b"q"), Some(3));
        assert_eq!(s.remove(b"v", b"q"), None);
        assert_eq!((s.len(), s.get(b"/", b"q")), (1, Some(&1)));
        assert_eq!(s.in_vhost(b"v").count(), 0);
    }
}
