//! Memory and disk alarms, as RabbitMQ raises them: when the broker's resident memory passes
//! its high watermark, or free space under the data directory falls below the limit,
//! connections that publish get `connection.blocked` and are no longer read until the alarm
//! clears (`connection.unblocked`). Consumers keep draining queues meanwhile.
//!
//! A monitor thread (off the shards, as nothing here is on the message path) samples both
//! every [`CHECK_EVERY`] and publishes the state in one atomic that the shards poll.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const MEMORY: u8 = 1;
pub const DISK: u8 = 2;
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
pub struct Alarms {
    state: AtomicU8,
}

impl Alarms {
    /// The alarms in force (`MEMORY | DISK` bits).
    pub fn state(&self) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    /// The reason RabbitMQ gives in connection.blocked.
    pub fn reason(state: u8) -> &'static str {
        match state {
            s if s & MEMORY != 0 && s & DISK != 0 => "low on memory and disk",
            s if s & MEMORY != 0 => "low on memory",
            _ => "low on disk",
        }
    }
}

/// Starts the monitor thread; it runs until the process exits.
pub fn start_monitor(
    data_dir: PathBuf,
    memory_limit: u64,
    disk_free_limit: u64,
) -> std::io::Result<Arc<Alarms>> {
    let alarms = Arc::new(Alarms::default());
    let shared = alarms.clone();
    std::thread::Builder::new()
        .name("warren-alarms".into())
        .spawn(move || loop {
            let mut state = 0;
            let rss = resident_bytes();
            if rss > memory_limit {
                state |= MEMORY;
            }
            let free = free_disk_bytes(&data_dir);
            if free.is_some_and(|free| free < disk_free_limit) {
                state |= DISK;
            }
            let before = shared.state.swap(state, Ordering::Relaxed);
            log_change(before, state, MEMORY, || {
                format!("memory: resident {rss} bytes, high watermark {memory_limit} bytes")
            });
            log_change(before, state, DISK, || {
                format!(
                    "disk: {} bytes free under {}, limit {disk_free_limit} bytes",
                    free.unwrap_or(0),
                    data_dir.display()
                )
            });
            std::thread::sleep(CHECK_EVERY);
        })?;
    Ok(alarms)
}

fn log_change(before: u8, now: u8, bit: u8, what: impl FnOnce() -> String) {
    match (before & bit != 0, now & bit != 0) {
        (false, true) => crate::warn!("{} alarm set ({}); blocking publishers", name(bit), what()),
        (true, false) => crate::info!("{} alarm cleared ({})", name(bit), what()),
        _ => {}
    }
}

fn name(bit: u8) -> &'static str {
    if bit == MEMORY {
        "memory"
    } else {
        "disk"
    }
}

/// The process's resident set, from /proc/self/statm.
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

/// Bytes available to unprivileged users on the file system holding `dir`.
pub fn free_disk_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct; path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible() {
        assert!(resident_bytes() > 0);
        assert!(free_disk_bytes(std::path::Path::new("/")).is_some());
        assert_eq!(Alarms::reason(MEMORY), "low on memory");
        assert_eq!(Alarms::reason(DISK | MEMORY), "low on memory and disk");
    }
}
