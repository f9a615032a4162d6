//! Placeholder until the web UI lands: no assets.

/// (content type, bytes) of a UI asset.
pub fn asset(_path: &str) -> Option<(&'static str, &'static [u8])> {
    None
}
