//! `diff`'s output: a unified diff per changed file, credential values redacted (a change of
//! only those says so), a mode change noted, ANSI colour on a terminal. Pure.

use crate::apply::FileChange;

/// A unified diff of one change, credentials redacted.
pub fn unified_diff(c: &FileChange, color: bool) -> String {
    let out = crate::apply::diff::unified(c, crate::redact::redact_toml);
    if color { colored(&out) } else { out }
}

/// Headers bold, additions green, removals red, hunks cyan.
fn colored(diff: &str) -> String {
    diff.lines()
        .map(|l| {
            let code = if l.starts_with("+++") || l.starts_with("---") {
                "1"
            } else if l.starts_with('+') {
                "32"
            } else if l.starts_with('-') {
                "31"
            } else if l.starts_with("@@") {
                "36"
            } else {
                ""
            };
            if code.is_empty() {
                format!("{l}\n")
            } else {
                format!("\x1b[{code}m{l}\x1b[0m\n")
            }
        })
        .collect()
}
