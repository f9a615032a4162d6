//! Counters that must never go below zero.
//!
//! A decrement past zero means the bookkeeping drifted: debug builds (and CI, which runs the
//! integration tests against a broker built with debug assertions) stop right there with what
//! drifted; release builds saturate, so a wrong count never turns into 2^64.

/// Unsigned integers a counter can be.
pub trait Count: Copy + std::fmt::Display {
    fn checked_minus(self, n: Self) -> Option<Self>;
    const ZERO: Self;
}

macro_rules! count {
    ($($t:ty),*) => {$(
        impl Count for $t {
            fn checked_minus(self, n: Self) -> Option<Self> {
                self.checked_sub(n)
            }
            const ZERO: Self = 0;
        }
    )*};
}
count!(u16, u32, u64, usize);

/// `*counter -= n`, asserting that `counter` holds at least `n`.
#[track_caller]
pub fn decrease<T: Count>(counter: &mut T, n: T, what: &str) {
    match counter.checked_minus(n) {
        Some(left) => *counter = left,
        None => {
            debug_assert!(false, "{what} would go below zero: {counter} - {n}");
            *counter = T::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrease_subtracts() {
        let mut n = 5u32;
        decrease(&mut n, 2, "test");
        assert_eq!(n, 3);
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "would go below zero"))]
    fn decrease_past_zero_asserts_in_debug_and_saturates_in_release() {
        let mut n = 1u64;
        decrease(&mut n, 2, "test");
        assert_eq!(n, 0);
    }
}
