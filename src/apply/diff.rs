//! What a change looks like to a person: a unified diff of one [`FileChange`], its texts passed
//! through the caller's redaction (TOML or auth.json), a change of redacted values only said as
//! such, a mode change noted. Pure; shared by `diff` for containerd and for Podman / CRI-O.

use super::FileChange;

/// The unified diff of `c`, each side shown through `redact`.
pub fn unified(c: &FileChange, redact: impl Fn(&str) -> String) -> String {
    let text = |b: &Option<Vec<u8>>| {
        b.as_ref()
            .map(|b| redact(&String::from_utf8_lossy(b)))
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
        out.push_str(
            &similar::TextDiff::from_lines(&old, &new)
                .unified_diff()
                .context_radius(3)
                .header(&a, &b)
                .to_string(),
        );
    }
    if c.new.is_some() && c.old_mode.is_some_and(|m| m != c.mode) {
        out.push_str(&format!(
            "mode {:o} → {:o}\n",
            c.old_mode.unwrap_or_default(),
            c.mode
        ));
    }
    out
}
