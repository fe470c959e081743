//! The DaemonSet's image, built here from `packaging/Containerfile` the way its header documents
//! for a machine without network access: buildah (vfs storage in a temp dir), target
//! `prebuilt` (the test binary, stripped, is the build context), `RUNTIME_IMAGE` = a Debian 12
//! base made by debootstrap (with ca-certificates, so the Containerfile's apt step is skipped)
//! and imported into that storage. A pause image for the pod sandbox is made from Debian's
//! static `catatonit` (`-P` = pause mode). Both leave as OCI archives for `ctr images import`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::node_support::{built_once, repo, target_dir};
use crate::support::{run, temp_dir};

/// The base image's name inside the private buildah storage.
const BASE_IMAGE: &str = "localhost/regmirror-test/debian:bookworm";
/// The pause image's name inside the private buildah storage.
const PAUSE_LOCAL: &str = "localhost/regmirror-test/pause:catatonit";

/// Where the images went and how long they took.
pub struct Images {
    /// `<out>/regmirror.tar` (reference `image`) and `<out>/pause.tar` (reference `pause`).
    pub regmirror_tar: PathBuf,
    pub pause_tar: PathBuf,
    /// Seconds for the image build alone (base import + `buildah bud`), and for everything
    /// (the base rootfs when not cached, the pause image, the exports).
    pub bud_secs: f64,
    pub total_secs: f64,
}

/// The Debian 12 base for the runtime stage (`debootstrap --variant=minbase` with
/// ca-certificates, apt lists, docs and locales removed: about what debian:bookworm-slim
/// holds), built once under `<target>/nspawn-rootfs/image-base` (or
/// `REGMIRROR_IMAGE_BASE_ROOTFS`) and reused.
pub fn base_rootfs() -> PathBuf {
    let path = std::env::var_os("REGMIRROR_IMAGE_BASE_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("nspawn-rootfs/image-base"));
    let complete = |p: &Path| {
        p.join("etc/ssl/certs/ca-certificates.crt").exists() && p.join("bin/sh").exists()
    };
    built_once(&path, "image base rootfs", complete, |partial| {
        let mirror = fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("URIs:"))
                    .and_then(|u| u.split_whitespace().next().map(str::to_string))
            })
            .unwrap_or_else(|| "http://deb.debian.org/debian".into());
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "--include=ca-certificates", "bookworm"])
            .arg(partial)
            .arg(mirror));
        for dir in [
            "var/cache/apt",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
            "usr/share/info",
        ] {
            let d = partial.join(dir);
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
        }
    })
}

/// `buildah` on a private vfs storage under `dir`.
fn buildah(dir: &Path) -> Command {
    let mut c = Command::new("buildah");
    c.arg("--storage-driver")
        .arg("vfs")
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("runroot"));
    c
}

/// `buildah from scratch` → fill its root with `fill(mount point)` → configure → commit as
/// `name`.
fn commit_from_scratch(dir: &Path, name: &str, config: &[&str], fill: impl FnOnce(&Path)) {
    let ctr = run(buildah(dir).args(["from", "scratch"]))
        .trim()
        .to_string();
    let mnt = run(buildah(dir).args(["mount", &ctr])).trim().to_string();
    fill(Path::new(&mnt));
    run(buildah(dir).args(["umount", &ctr]));
    if !config.is_empty() {
        run(buildah(dir).arg("config").args(config).arg(&ctr));
    }
    run(buildah(dir).args(["commit", "-q", &ctr, name]));
    run(buildah(dir).args(["rm", &ctr]));
}

/// Builds the DaemonSet's image as `image` (the manifest's reference) and a pause image as
/// `pause` (the node's `sandbox_image`), and exports both as OCI archives into `out`.
pub fn build(out: &Path, image: &str, pause: &str) -> Images {
    let t = Instant::now();
    let base = base_rootfs();
    let dir = temp_dir("buildah");
    let d = dir.path();
    let t_bud = Instant::now();
    commit_from_scratch(d, BASE_IMAGE, &[], |mnt| {
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", base.display()))
            .arg(mnt));
    });
    // The build context of the `prebuilt` target: just the binary (stripped: 213 → ~38 MB).
    let ctx = d.join("context");
    fs::create_dir_all(&ctx).unwrap();
    run(Command::new("strip")
        .arg("-o")
        .arg(ctx.join("regmirror"))
        .arg(env!("CARGO_BIN_EXE_regmirror")));
    let containerfile = repo().join("packaging/Containerfile");
    let bud = run(buildah(d)
        .args(["bud", "--pull=never", "--target", "prebuilt"])
        .arg("--build-arg")
        .arg(format!("RUNTIME_IMAGE={BASE_IMAGE}"))
        .arg("-f")
        .arg(&containerfile)
        .arg("--ignorefile")
        .arg(repo().join("packaging/Containerfile.dockerignore"))
        .args(["-t", image])
        .arg(&ctx));
    assert!(
        bud.contains("ca-certificates: already in the base image"),
        "the Containerfile's apt step ran although the base has ca-certificates:\n{bud}"
    );
    let bud_secs = t_bud.elapsed().as_secs_f64();
    commit_from_scratch(
        d,
        PAUSE_LOCAL,
        &["--entrypoint", r#"["/pause","-P"]"#],
        |mnt| {
            fs::copy("/usr/bin/catatonit", mnt.join("pause")).unwrap();
        },
    );
    let (regmirror_tar, pause_tar) = (out.join("regmirror.tar"), out.join("pause.tar"));
    for (local, name, file) in [
        (image, image, &regmirror_tar),
        (PAUSE_LOCAL, pause, &pause_tar),
    ] {
        run(buildah(d)
            .args(["push", "-q", local])
            .arg(format!("oci-archive:{}:{name}", file.display())));
    }
    // `dir` (the vfs storage: ~300 MB of copies) goes when it is dropped here.
    Images {
        regmirror_tar,
        pause_tar,
        bud_secs,
        total_secs: t.elapsed().as_secs_f64(),
    }
}
