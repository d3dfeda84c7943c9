//! The one error type of the runtime.
//!
//! Every failure a caller's data can cause (a bad preset name, a Program that overflows a
//! core's SRAM, input tensors of the wrong shape, malformed JSON) comes back as a
//! [`RuntimeError`] whose message says what went wrong, where (instruction index, buffer,
//! core, input index) and what to do about it. The runtime never panics on such data.

use std::fmt;

/// An error from the target description, the Program format or the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeError {
    /// Human-readable: what, where, and what to do.
    pub message: String,
}

impl RuntimeError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> RuntimeError {
        RuntimeError {
            message: message.into(),
        }
    }

    /// The same error with `context` put in front (`"context: message"`).
    pub fn context(self, context: impl fmt::Display) -> RuntimeError {
        RuntimeError {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuntimeError {}

/// Shorthand for results of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// `1402112` → `"1,402,112"`, for byte counts in messages.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|g| std::str::from_utf8(g).unwrap_or(""))
        .collect();
    groups.join(",")
}

/// `1310720` → `"1.25 MiB"`, `131072` → `"128 KiB"`, `100` → `"100 B"`.
pub(crate) fn binary_size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let (unit, div) = if bytes >= GIB {
        ("GiB", GIB)
    } else if bytes >= MIB {
        ("MiB", MIB)
    } else if bytes >= KIB {
        ("KiB", KIB)
    } else {
        return format!("{bytes} B");
    };
    let value = format!("{:.3}", bytes as f64 / div as f64);
    let value = value.trim_end_matches('0').trim_end_matches('.');
    format!("{value} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_messages() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_402_112), "1,402,112");
        assert_eq!(binary_size(1_310_720), "1.25 MiB");
        assert_eq!(binary_size(131_072), "128 KiB");
        assert_eq!(binary_size(100), "100 B");
    }
}
