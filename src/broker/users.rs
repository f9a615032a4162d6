//! Users: names, tags, and passwords kept only as salted hashes in RabbitMQ's format
//! (`rabbit_password_hashing_sha256`: a 4-byte random salt followed by SHA-256(salt ++
//! password); `_sha512` and `_md5` are read too, so a RabbitMQ definitions export logs in
//! with the same passwords). Comparisons take the same time whatever matches.
//!
//! Users are topology: changed through the owner shard, stored in the definitions log and
//! replicated to every shard, where connections authenticate against them.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

use crate::store::record::UserDef;

pub const SHA256: &str = "rabbit_password_hashing_sha256";
const SHA512: &str = "rabbit_password_hashing_sha512";
const MD5: &str = "rabbit_password_hashing_md5";

/// Tags rabbitmqctl's set_user_tags knows; others are kept as given, as RabbitMQ does.
pub const KNOWN_TAGS: [&str; 6] = [
    "administrator",
    "monitoring",
    "policymaker",
    "management",
    "impersonator",
    "none",
];

/// Every user of the broker, by name.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: BTreeMap<Bytes, UserDef>,
}

impl Users {
    pub fn get(&self, name: &[u8]) -> Option<&UserDef> {
        self.by_name.get(name)
    }

    pub fn put(&mut self, user: UserDef) {
        self.by_name.insert(user.name.clone(), user);
    }

    pub fn remove(&mut self, name: &[u8]) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = &UserDef> {
        self.by_name.values()
    }

    /// True when `password` is `name`'s. Unknown users cost a hash too, so that timing does
    /// not tell which names exist.
    pub fn check_password(&self, name: &[u8], password: &[u8]) -> bool {
        match self.by_name.get(name) {
            Some(user) => password_matches(user, password),
            None => {
                let _ = hash_with(SHA256, &[0; 4], password);
                false
            }
        }
    }
}

/// A user with a fresh salted SHA-256 hash of `password` and `tags`.
pub fn new_user(name: &[u8], password: &[u8], tags: &[u8]) -> UserDef {
    let salt = random_salt();
    let mut hash = salt.to_vec();
    hash.extend(hash_with(SHA256, &salt, password).unwrap_or_default());
    UserDef {
        name: Bytes::copy_from_slice(name),
        password_hash: Bytes::from(hash),
        hashing: Bytes::from_static(SHA256.as_bytes()),
        tags: Bytes::copy_from_slice(tags),
    }
}

/// A user from a RabbitMQ definitions export: `password_hash` in base64 and its
/// `hashing_algorithm` (SHA-256 when absent, as RabbitMQ assumes).
pub fn imported_user(
    name: &str,
    password_hash_b64: &str,
    hashing: Option<&str>,
    tags: &str,
) -> Result<UserDef, String> {
    let hashing = hashing.unwrap_or(SHA256);
    if ![SHA256, SHA512, MD5].contains(&hashing) {
        return Err(format!(
            "user '{name}': unknown hashing algorithm '{hashing}'"
        ));
    }
    let hash = base64::engine::general_purpose::STANDARD
        .decode(password_hash_b64.trim())
        .map_err(|e| format!("user '{name}': password_hash is not base64: {e}"))?;
    if !hash.is_empty() && hash.len() <= 4 {
        return Err(format!("user '{name}': password_hash is too short"));
    }
    Ok(UserDef {
        name: Bytes::copy_from_slice(name.as_bytes()),
        password_hash: Bytes::from(hash),
        hashing: Bytes::copy_from_slice(hashing.as_bytes()),
        tags: Bytes::copy_from_slice(tags.as_bytes()),
    })
}

/// The hash as a definitions export shows it.
pub fn password_hash_b64(user: &UserDef) -> String {
    base64::engine::general_purpose::STANDARD.encode(&user.password_hash)
}

fn password_matches(user: &UserDef, password: &[u8]) -> bool {
    let Some((salt, digest)) = user.password_hash.split_at_checked(4) else {
        return false;
    };
    if digest.is_empty() {
        return false;
    }
    let algorithm = std::str::from_utf8(&user.hashing).unwrap_or_default();
    match hash_with(algorithm, salt, password) {
        Some(computed) => constant_time_eq(&computed, digest),
        None => false,
    }
}

/// The digest of salt ++ password under `algorithm`.
fn hash_with(algorithm: &str, salt: &[u8], password: &[u8]) -> Option<Vec<u8>> {
    fn digest<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
        let mut d = D::new();
        d.update(salt);
        d.update(password);
        d.finalize().to_vec()
    }
    match algorithm {
        SHA256 => Some(digest::<Sha256>(salt, password)),
        SHA512 => Some(digest::<Sha512>(salt, password)),
        MD5 => Some(digest::<Md5>(salt, password)),
        _ => None,
    }
}

/// Equal bytes, in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn random_salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    // SAFETY: getrandom writes at most `salt.len()` bytes into the local array.
    let n = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
    if n != salt.len() as isize {
        // Never expected on Linux >= 3.17; a salt from the clock still differs per user.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        salt = nanos.to_le_bytes();
    }
    salt
}

/// True when `user` carries `tag` (tags are stored comma-separated).
pub fn has_tag(user: &UserDef, tag: &str) -> bool {
    user.tags.split(|b| *b == b',').any(|t| t == tag.as_bytes())
}

/// Tags as rabbitmqctl lists them: `[administrator, monitoring]`.
pub fn tags_list(user: &UserDef) -> String {
    let tags: Vec<&str> = std::str::from_utf8(&user.tags)
        .unwrap_or_default()
        .split(',')
        .filter(|t| !t.is_empty())
        .collect();
    format!("[{}]", tags.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_user_logs_in_with_its_password_only() {
        let mut users = Users::default();
        users.put(new_user(b"alice", b"s3cret", b"monitoring"));
        assert!(users.check_password(b"alice", b"s3cret"));
        assert!(!users.check_password(b"alice", b"s3cre"));
        assert!(!users.check_password(b"bob", b"s3cret"));
        let alice = users.get(b"alice").expect("alice");
        assert_eq!(alice.password_hash.len(), 4 + 32);
        assert!(!alice.password_hash.windows(6).any(|w| w == b"s3cret"));
        // Two users with one password get different salts.
        let again = new_user(b"alice", b"s3cret", b"");
        assert_ne!(again.password_hash, alice.password_hash);
    }

    #[test]
    fn rabbitmq_hashes_of_each_algorithm_are_accepted() {
        for algorithm in [SHA256, SHA512, MD5] {
            let salt = [9u8, 8, 7, 6];
            let mut raw = salt.to_vec();
            raw.extend(hash_with(algorithm, &salt, b"pw").expect("known algorithm"));
            let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
            let user = imported_user("u", &b64, Some(algorithm), "").expect("valid");
            let mut users = Users::default();
            users.put(user);
            assert!(users.check_password(b"u", b"pw"), "{algorithm}");
            assert!(!users.check_password(b"u", b"pW"), "{algorithm}");
        }
        assert!(imported_user("u", "not base64!", None, "").is_err());
        assert!(imported_user("u", "AAAA", Some("rabbit_password_hashing_rot13"), "").is_err());
    }

    #[test]
    fn a_user_without_a_password_cannot_log_in_with_one() {
        let user = imported_user("u", "", None, "").expect("an empty hash is allowed");
        let mut users = Users::default();
        users.put(user);
        assert!(!users.check_password(b"u", b""));
    }

    #[test]
    fn tags_are_listed_as_rabbitmqctl_shows_them() {
        assert_eq!(
            tags_list(&new_user(b"a", b"p", b"administrator,monitoring")),
            "[administrator, monitoring]"
        );
        assert_eq!(tags_list(&new_user(b"a", b"p", b"")), "[]");
    }
}
