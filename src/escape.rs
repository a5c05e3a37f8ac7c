//! Text from outside (a pod's image reference, a container's JVM command line, a registry's
//! error) made safe to print on one line of a log or a terminal: control characters and the
//! invisible ones that reorder text are written as Rust escapes, everything else as it is.

use std::fmt;

/// `text` shown escaped: `\n`, `\r`, `\t`, `\0` and `\u{..}` for the other control characters
/// and the bidirectional-text controls; printable text (any script) unchanged, no quotes added.
/// For text-format logs (`tracing::info!(image = %Escaped(&image), ..)`) and `inspect`'s
/// report: a newline there would forge a line, an escape sequence would drive the terminal.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().expect("found at i");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\0' => f.write_str("\\0")?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// Control characters (C0, DEL, C1), and the marks and overrides that make a terminal show
/// text in another order than it is written (the "Trojan Source" characters).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// [`Escaped`] as a `String`.
pub fn escape(text: &str) -> String {
    Escaped(text).to_string()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::plain("java -jar app.jar", "java -jar app.jar")]
    #[case::unicode("-Dgreeting=héllo 日本 ✓", "-Dgreeting=héllo 日本 ✓")]
    #[case::backslash_and_quotes(r#"-Dre=a\d "x" 'y'"#, r#"-Dre=a\d "x" 'y'"#)]
    #[case::newline("app.jar\nheap: max 64 GiB", "app.jar\\nheap: max 64 GiB")]
    #[case::cr_tab_nul("a\rb\tc\0d", "a\\rb\\tc\\0d")]
    #[case::ansi("\u{1b}[2J\u{1b}]0;x\u{7}", "\\u{1b}[2J\\u{1b}]0;x\\u{7}")]
    #[case::del_c1("a\u{7f}b\u{9b}c", "a\\u{7f}b\\u{9b}c")]
    #[case::bidi("x\u{202e}fdp.exe", "x\\u{202e}fdp.exe")]
    #[case::empty("", "")]
    fn escapes_what_could_forge_or_drive_the_terminal(#[case] text: &str, #[case] shown: &str) {
        assert_eq!(escape(text), shown);
        assert!(!shown.chars().any(needs_escape));
    }
}
