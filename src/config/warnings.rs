//! Admission warnings: short, actionable, each starting `jvm-guard:` (kubectl prints them).
//!
//! Their number and size are bounded: every one of them can echo what a pod author wrote, and
//! a review answer must stay small whatever the pod holds (docs/design.md#bounds).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

pub const WARNING_PREFIX: &str = "jvm-guard: ";

/// Warnings kept per review; past it one last warning counts the rest. The apiserver itself
/// may truncate "large numbers of warnings", and nobody reads more than this many.
pub const MAX_WARNINGS: usize = 32;
/// Bytes kept of one warning (the longest we write is under 300); a longer one is cut on a
/// character boundary and ends with `…`.
pub const MAX_WARNING_BYTES: usize = 1024;

/// Collects warnings in order, without duplicates, at most [`MAX_WARNINGS`] of them.
#[derive(Debug, Default, Clone)]
pub struct Warnings {
    kept: Vec<String>,
    /// What was kept, for de-duplication in constant time.
    seen: HashSet<String>,
    /// Distinct warnings past the cap, counted by their hash, not kept.
    more: HashSet<u64>,
}

impl PartialEq for Warnings {
    fn eq(&self, other: &Self) -> bool {
        self.kept == other.kept && self.more.len() == other.more.len()
    }
}

impl Eq for Warnings {}

/// `message` cut to at most `max` bytes on a character boundary, marked with `…`.
fn cut(mut message: String, max: usize) -> String {
    if message.len() <= max {
        return message;
    }
    let mark = "…";
    let mut end = max - mark.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(mark);
    message
}

impl Warnings {
    /// Adds a warning; the `jvm-guard: ` prefix is added here, once.
    pub fn push(&mut self, message: impl Into<String>) {
        let message = message.into();
        let message = if message.starts_with(WARNING_PREFIX) {
            message
        } else {
            format!("{WARNING_PREFIX}{message}")
        };
        let message = cut(message, MAX_WARNING_BYTES);
        if self.seen.contains(&message) {
            return;
        }
        if self.kept.len() == MAX_WARNINGS {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            message.hash(&mut hasher);
            self.more.insert(hasher.finish());
            return;
        }
        self.seen.insert(message.clone());
        self.kept.push(message);
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Whether a new warning would only be counted ("and N more"), not kept.
    pub fn is_full(&self) -> bool {
        self.kept.len() == MAX_WARNINGS
    }

    pub fn into_vec(self) -> Vec<String> {
        let mut kept = self.kept;
        if !self.more.is_empty() {
            kept.push(format!(
                "{WARNING_PREFIX}and {} more warnings, left out",
                self.more.len()
            ));
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_once_and_deduplicates() {
        let mut w = Warnings::default();
        w.push("a");
        w.push("jvm-guard: a");
        w.push("b");
        assert_eq!(w.into_vec(), vec!["jvm-guard: a", "jvm-guard: b"]);
    }

    #[test]
    fn the_number_is_capped_with_a_count_of_the_rest() {
        let mut w = Warnings::default();
        for i in 0..10_000 {
            w.push(format!("container c{i} not found"));
            w.push(format!("container c{i} not found"));
        }
        let all = w.into_vec();
        assert_eq!(all.len(), MAX_WARNINGS + 1);
        assert_eq!(all[0], "jvm-guard: container c0 not found");
        assert_eq!(
            all[MAX_WARNINGS],
            format!(
                "jvm-guard: and {} more warnings, left out",
                10_000 - MAX_WARNINGS
            )
        );
    }

    #[test]
    fn a_long_warning_is_cut_on_a_char_boundary() {
        let mut w = Warnings::default();
        w.push(format!("value {}", "é".repeat(100_000)));
        let all = w.into_vec();
        assert!(all[0].len() <= MAX_WARNING_BYTES, "{}", all[0].len());
        assert!(all[0].ends_with('…'));
        // Two messages alike in their first KiB are one warning.
        let mut w = Warnings::default();
        w.push(format!("x{}a", "y".repeat(2000)));
        w.push(format!("x{}b", "y".repeat(2000)));
        assert_eq!(w.into_vec().len(), 1);
    }
}
