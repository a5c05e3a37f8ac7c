//! Admission warnings: short, actionable, each starting `jvm-guard:` (kubectl prints them).

/// Collects warnings in order, without duplicates.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Warnings(Vec<String>);

pub const WARNING_PREFIX: &str = "jvm-guard: ";

impl Warnings {
    /// Adds a warning; the `jvm-guard: ` prefix is added here, once.
    pub fn push(&mut self, message: impl Into<String>) {
        let message = message.into();
        let message = if message.starts_with(WARNING_PREFIX) {
            message
        } else {
            format!("{WARNING_PREFIX}{message}")
        };
        if !self.0.contains(&message) {
            self.0.push(message);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
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
}
