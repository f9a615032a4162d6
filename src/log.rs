//! Minimal line logger: one line per event on stdout, in RabbitMQ's spirit
//! (`2026-11-28 10:00:00.123 [info] <0> message`). Logging is never on the message path.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn write(level: &str, args: std::fmt::Arguments<'_>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    // What a client sent (queue names, reasons) may hold newlines or escape sequences: one
    // event stays one line, and nothing a client sends reaches the terminal raw.
    let text = args.to_string();
    let message = escape_controls(&text);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} [{level}] {message}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        now.subsec_millis()
    );
    let _ = out.flush();
}

/// `text` with every control character written as `\xNN`.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write("info", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write("warning", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write("error", format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_785), (2026, 11, 28));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::escape_controls("a\nb\x1b[31m"), "a\\x0ab\\x1b[31m");
        assert_eq!(super::escape_controls("plain 'q'"), "plain 'q'");
    }
}
