//! The tiny test image: one file `/f`, built once per test process with umoci into an OCI
//! layout (tag `1`), then copied into each registry with skopeo. The layout's temp dir is removed
//! when the test process exits (an `atexit` hook: statics are never dropped).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::run;

/// (temp root, layout dir inside it)
static LAYOUT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

unsafe extern "C" {
    fn atexit(cb: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn remove_layout() {
    if let Some((root, _)) = LAYOUT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// The OCI layout directory holding the tiny image as `<layout>:1` (built on first use).
pub fn layout() -> &'static Path {
    let (_, layout) = LAYOUT.get_or_init(|| {
        let mut tmp = super::temp_dir("image");
        let root = tmp.path().to_path_buf();
        let layout = root.join("layout");
        let l = layout.to_str().unwrap();
        let tagged = format!("{l}:1");
        std::fs::write(root.join("f"), "regmirror e2e tiny image\n").unwrap();
        run(Command::new("umoci").args(["init", "--layout", l]));
        run(Command::new("umoci").args(["new", "--image", &tagged]));
        run(Command::new("umoci")
            .current_dir(&root)
            .args(["insert", "--image", &tagged, "f", "/f"]));
        run(Command::new("umoci").args([
            "config",
            "--image",
            &tagged,
            "--config.cmd",
            "/f",
            "--architecture",
            "amd64",
            "--os",
            "linux",
        ]));
        // From here on the atexit hook owns the directory.
        tmp.disable_cleanup(true);
        // SAFETY: registers a plain extern "C" fn without captures.
        unsafe {
            atexit(remove_layout);
        }
        (root, layout)
    });
    layout
}
