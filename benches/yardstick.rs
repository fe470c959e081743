//! The yardstick of `scripts/bench.sh` (ONLY=floor): the least a format-preserving edit of
//! config.toml can cost with the crate regmirror uses. One `toml_edit` parse, the edit
//! `regmirror apply` makes for a Secret in legacy mode (a `mirrors."<src>"` table with its
//! `endpoint` for every MIRROR_REGISTRIES entry, each under regmirror's marker comment), or in
//! hosts mode (`config_path`), one print, one atomic write (temp file, fsync, rename, fsync of the
//! directory). Nothing else: no Secret parsing beyond the list, no state, no lock, no backup.
//!
//! Same `toml_edit` (the product's dependency) and the release profile (`[profile.bench]`
//! inherits it), built as a plain program (`harness = false`):
//!
//! ```text
//! cargo bench --bench yardstick -- CONFIG MIRRORS_FILE [--hosts CERTS_DIR] [--out FILE]
//! ```
//!
//! MIRRORS_FILE holds a MIRROR_REGISTRIES value (`src::host/path,…`), as for
//! `scripts/bench/tomlkit_merge.py`. The file is edited in place unless `--out` names another.
//! Not run by CI; it is a benchmark input, not a test.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, Item, Table, value};

const CRI: &str = "io.containerd.grpc.v1.cri";
/// The comment regmirror puts above every table it creates (src/render/owned.rs).
const MARKER: &str = "# managed by regmirror (jet-system/registry-info); edits are overwritten\n";

/// `host/path` → `https://host/v2/path`; `host` → `https://host` (regmirror's rule).
fn endpoint(target: &str) -> String {
    let (scheme, rest) = target.split_once("://").unwrap_or(("https", target));
    match rest.split_once('/') {
        Some((host, path)) if !path.is_empty() => format!("{scheme}://{host}/v2/{path}"),
        Some((host, _)) => format!("{scheme}://{host}"),
        None => format!("{scheme}://{rest}"),
    }
}

fn table<'a>(t: &'a mut Table, key: &str) -> &'a mut Table {
    let item = t.entry(key).or_insert_with(|| {
        let mut n = Table::new();
        n.set_implicit(true);
        Item::Table(n)
    });
    item.as_table_mut().expect("a table")
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.yardstick.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

fn main() {
    // `cargo bench` appends `--bench` to the arguments of every bench binary.
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (mut pos, mut hosts, mut out) = (Vec::new(), None::<String>, None::<PathBuf>);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--hosts" => hosts = args.next(),
            "--out" => out = args.next().map(PathBuf::from),
            _ => pos.push(a),
        }
    }
    let [config, mirrors] = pos.as_slice() else {
        eprintln!("usage: yardstick CONFIG MIRRORS_FILE [--hosts CERTS_DIR] [--out FILE]");
        std::process::exit(2);
    };
    let config = PathBuf::from(config);
    let list = fs::read_to_string(mirrors).expect("read MIRRORS_FILE");
    let text = fs::read_to_string(&config).expect("read CONFIG");

    // 1. parse
    let mut doc: DocumentMut = text.parse().expect("config.toml parses");
    // 2. edit
    let registry = table(table(table(doc.as_table_mut(), "plugins"), CRI), "registry");
    match hosts {
        Some(dir) => {
            registry.insert("config_path", value(dir));
        }
        None => {
            let mirrors = table(registry, "mirrors");
            for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (src, dst) = entry.split_once("::").unwrap_or((entry, ""));
                let mut eps = Array::new();
                if !dst.is_empty() {
                    eps.push(endpoint(dst));
                }
                let mut t = Table::new();
                t.insert("endpoint", value(eps));
                t.decor_mut().set_prefix(format!("\n{MARKER}"));
                mirrors.insert(src, Item::Table(t));
            }
        }
    }
    // 3. print
    let printed = doc.to_string();
    drop(doc);
    // 4. atomic write
    write_atomic(out.as_deref().unwrap_or(&config), printed.as_bytes()).expect("write");
}
