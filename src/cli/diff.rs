//! `diff`'s output: a unified diff per changed file, credential values redacted (a change of
//! only those says so), a mode change noted, ANSI colour on a terminal. Pure.

use crate::apply::FileChange;

/// A unified diff of one change, credentials redacted.
pub fn unified_diff(c: &FileChange, color: bool) -> String {
    let text = |b: &Option<Vec<u8>>| {
        b.as_ref()
            .map(|b| crate::redact::redact_toml(&String::from_utf8_lossy(b)))
            .unwrap_or_default()
    };
    let (old, new) = (text(&c.old), text(&c.new));
    let (a, b) = c.diff_names();
    let mut out = String::new();
    if old == new {
        out.push_str(&format!("--- {a}\n+++ {b}\n"));
        if c.old != c.new {
            out.push_str("@@ credential values change (redacted) @@\n");
        }
    } else {
        let diff = similar::TextDiff::from_lines(&old, &new);
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string(),
        );
    }
    if c.old_mode.is_some_and(|m| m != c.mode) && c.new.is_some() {
        out.push_str(&format!(
            "mode {:o} → {:o}\n",
            c.old_mode.unwrap_or_default(),
            c.mode
        ));
    }
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
