//! A unified diff of one podman change, credentials redacted.

use std::path::Path;

use crate::apply::FileChange;
use crate::render::registries;

/// A unified diff of one change; the auth file's credential values are shown as `"***"`.
pub fn unified_diff(c: &FileChange, auth_file: &Path) -> String {
    let is_auth = c.path == auth_file || c.secret;
    crate::apply::diff::unified(c, |t| {
        if is_auth {
            registries::redact_auth_json(t)
        } else {
            t.to_string()
        }
    })
}
