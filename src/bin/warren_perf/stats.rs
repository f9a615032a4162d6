//! Counters shared by the worker threads, clocks and CPU accounting.
//!
//! Workers add to the shared atomics once per batch (one `recv` or one
//! `write`), never per message, so the counters cost nothing measurable; the
//! main thread snapshots them at the window's edges.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use super::conn::ABORT;

#[derive(Default)]
pub struct Shared {
    /// Producers start publishing.
    pub go: AtomicBool,
    /// Latency samples are recorded while set (the measurement window).
    pub measuring: AtomicBool,
    pub stop_producers: AtomicBool,
    pub stop_consumers: AtomicBool,
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub consumed: AtomicU64,
    /// Deliveries from the dead-letter queues (`--dead-letter`).
    pub dead_lettered: AtomicU64,
    pub blocked: AtomicU64,
    /// Producers whose last batch the broker would not take by the end.
    pub blocked_at_stop: AtomicU64,
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    /// Records a fatal error and ends the run.
    pub fn fail(&self, who: &str, err: String) {
        // "aborted" is the echo of an earlier failure, not news.
        let echo = err.contains("aborted") && ABORT.load(Ordering::Relaxed);
        if !echo {
            if let Ok(mut errors) = self.errors.lock() {
                errors.push(format!("{who}: {err}"));
            }
        }
        ABORT.store(true, Ordering::Relaxed);
    }

    pub fn counters(&self) -> Counters {
        Counters {
            published: self.published.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub consumed: u64,
    pub dead_lettered: u64,
}

impl Counters {
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            published: self.published - earlier.published,
            confirmed: self.confirmed - earlier.confirmed,
            nacked: self.nacked - earlier.nacked,
            consumed: self.consumed - earlier.consumed,
            dead_lettered: self.dead_lettered - earlier.dead_lettered,
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process on the
/// host, so a timestamp written by one warren-perf can be read by another.
pub fn clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User + system CPU time of this process, in nanoseconds.
pub fn self_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// utime + stime of process `pid` (all its threads) from /proc/PID/stat, in
/// nanoseconds; clock-tick resolution (10 ms at the usual 100 Hz).
pub fn proc_cpu_ns(pid: u32) -> Result<u64, String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. Field 3 (state) is index 0, so utime (14) is index 11.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("/proc/{pid}/stat has no ')'"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: field {} unreadable", i + 3))
    };
    let ticks = field(11)? + field(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Ok(ticks * 1_000_000_000 / hz)
}

/// Minimal JSON string escaping for labels and error texts.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite f64 as JSON, `null` otherwise.
pub fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".into(),
    }
}
