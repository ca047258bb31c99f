//! Unique, length-limited names for the DPDK objects this backend creates
//! (mempools, rings, ring ethdevs), which share process-wide namespaces.

use std::sync::atomic::{AtomicU32, Ordering};

/// Longest mempool or ring name: the memzone name (32 bytes with NUL) minus
/// the "MP_"/"RG_" prefix DPDK adds.
pub(crate) const OBJECT_NAME_MAX: usize = 28;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A number no other object of this process has been given.
pub(crate) fn next_seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// `{tag}{seq}_{name}`, with `name` reduced to `[A-Za-z0-9_]` and cut so the
/// whole fits `max` bytes. The tag and sequence number keep it unique.
pub(crate) fn object_name(tag: &str, seq: u32, name: &str, max: usize) -> String {
    let mut out = format!("{tag}{seq}_");
    let room = max.saturating_sub(out.len());
    out.extend(
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(room),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_and_sanitised() {
        assert_eq!(object_name("mb", 7, "lan", OBJECT_NAME_MAX), "mb7_lan");
        let long = object_name("rx", 123, "a-very/long name for a port", OBJECT_NAME_MAX);
        assert_eq!(long.len(), OBJECT_NAME_MAX);
        assert!(long.starts_with("rx123_a_very_long_name"));
    }
}
