//! Names for the things the broker passes between shards: a connection, a queue, and the
//! shard a queue lives on. Plain values, shared by every layer.

/// A connection anywhere in the broker: its shard, its slab key there, and a serial that
/// tells a reused slab slot apart from the connection that had it before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub shard: u16,
    pub key: u32,
    pub serial: u32,
}

/// A queue anywhere in the broker, checked the same way as [`ConnRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef {
    pub shard: u16,
    pub key: u32,
    pub serial: u32,
}

// Which shard owns a queue. The hash must be stable across restarts and builds (queues are
// recovered onto the shard their name hashes to), so it is a fixed FNV-1a, not `std`'s
// randomized hasher.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The shard that owns queue `queue` of virtual host `vhost`: FNV-1a 64 over the vhost bytes,
/// one 0xFF separator byte (which never occurs in UTF-8), then the queue name bytes.
pub fn queue_shard_bytes(vhost: &[u8], queue: &[u8], shards: usize) -> usize {
    let hash = fnv1a(fnv1a(FNV_OFFSET, vhost), &[0xFF]);
    (fnv1a(hash, queue) % shards.max(1) as u64) as usize
}

/// A stable 64-bit hash of a queue name (FNV-1a), for keys that name a queue without a
/// reference to it.
pub fn name_hash(name: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, name)
}

/// See [`queue_shard_bytes`].
pub fn queue_shard(vhost: &str, queue: &str, shards: usize) -> usize {
    queue_shard_bytes(vhost.as_bytes(), queue.as_bytes(), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn stable_values() {
        // Pinned: changing these strands durable queues on the wrong shard after an upgrade.
        assert_eq!(queue_shard("/", "hello", 1), 0);
        let spread: Vec<usize> = (0..64)
            .map(|i| queue_shard("/", &format!("q{i}"), 4))
            .collect();
        for s in 0..4 {
            assert!(spread.contains(&s), "shard {s} never chosen: {spread:?}");
        }
    }
}
