//! A unified diff of one podman change, credentials redacted.

use std::path::Path;

use crate::apply::FileChange;
use crate::render::registries;

/// A unified diff of one change; the auth file's credential values are shown as `"***"`.
pub fn unified_diff(c: &FileChange, auth_file: &Path) -> String {
    let is_auth = c.path == auth_file || c.secret;
    let text = |b: &Option<Vec<u8>>| {
        let t = b
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        if is_auth {
            registries::redact_auth_json(&t)
        } else {
            t
        }
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
