//! Throw-away systemd nodes for the tests that need a real systemd (`tests/packaging.rs`,
//! `tests/node_systemd.rs`): Debian 12 booted with `systemd-nspawn` by
//! `shared/tools/nspawn-node` (systemd as PID 1, containerd as a service), the project's `.deb`
//! built by cargo-deb from the test binary, and a [`Node`] guard that powers the node off (by
//! the nspawn PID, through `nspawn-node down`) when dropped, also when a test panics.
//!
//! - [`rootfs`]: `REGMIRROR_NSPAWN_ROOTFS` if set (built there if it is not yet), else a rootfs
//!   built once under `<target>/nspawn-rootfs/` and reused by every later run (a file lock makes
//!   concurrent test processes build it only once).
//! - [`build_deb`] / [`shared_deb`]: `cargo deb --no-build --strip --fast` on a copy of the test
//!   binary in a private `CARGO_TARGET_DIR` (no second, release, build).
//! - [`Node`]: `up` / `exec` / `ok` / `down`, the node's root and CRI socket as seen from the host
//!   (`/proc/<leader>/root/...`).
//! - [`built_once`]: a cached tree (the rootfs, the pod tests' image base) built once under a lock.
//! - [`INJECT`] / [`BROKEN_START`]: a containerd start that breaks its CRI plugin once (an
//!   in-place edit of config.toml, or a start on a broken copy of it), for the rollback tests.
//!
//! Built on `tests/support` (`which`, `run_output`, `poll_every`, the prerequisite checks): a test
//! crate declares `mod support;` next to `mod node_support;`.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::support::{
    e2e, missing_binaries, poll_every, prerequisites_verdict, run_output, stdout, which,
};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `shared/tools/nspawn-node` (or `REGMIRROR_NSPAWN_NODE`).
pub fn tool() -> PathBuf {
    std::env::var_os("REGMIRROR_NSPAWN_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/tools/nspawn-node"))
}

/// The cargo target directory this test binary was built in (`<target>/debug/regmirror`).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_regmirror"))
        .parent()
        .and_then(Path::parent)
        .expect("binary under <target>/<profile>/")
        .to_path_buf()
}

/// `Some(path)` if `tool` is on PATH. Otherwise skips (returns `None`) or, under
/// `REGMIRROR_E2E=1`, panics naming how to install it.
pub fn require_tool(tool: &str, install: &str) -> Option<PathBuf> {
    let found = which(tool);
    if found.is_none() {
        assert!(
            !e2e(),
            "`{tool}` is missing (REGMIRROR_E2E=1): install it with `{install}`"
        );
        eprintln!("skipped: `{tool}` not found (install: `{install}`)");
    }
    found
}

fn has_cargo_deb() -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// True when a systemd node can be booted and the `.deb` built: root, the nspawn-node tool,
/// systemd-nspawn, nsenter, debootstrap (only while no rootfs is cached), cargo-deb, dpkg-deb,
/// plus `bins` (binary, Debian package). Otherwise: under `REGMIRROR_E2E=1` it panics naming
/// what to install; without it, prints `skipped: …` and returns false.
pub fn prerequisites(test: &str, bins: &[(&str, &str)]) -> bool {
    let mut problems = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        problems.push("must run as root (systemd-nspawn needs it)".to_string());
    }
    if !tool().is_file() {
        problems.push(format!("{} is missing", tool().display()));
    }
    let mut needed: Vec<(&str, &str)> = vec![
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
        ("dpkg-deb", "dpkg"),
    ];
    if cached_rootfs().is_none() {
        needed.push(("debootstrap", "debootstrap"));
    }
    needed.extend_from_slice(bins);
    problems.extend(missing_binaries(needed));
    if !has_cargo_deb() {
        problems.push("cargo-deb is missing: cargo install cargo-deb --locked".to_string());
    }
    prerequisites_verdict(test, "systemd node", &problems)
}

// ---------------------------------------------------------------------------------------------
// Root file system

/// Where the rootfs lives: `REGMIRROR_NSPAWN_ROOTFS`, else `<target>/nspawn-rootfs/debian12`.
fn rootfs_path() -> PathBuf {
    std::env::var_os("REGMIRROR_NSPAWN_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("nspawn-rootfs/debian12"))
}

fn is_rootfs(p: &Path) -> bool {
    p.join("usr/bin/containerd").exists() && p.join("lib/systemd/systemd").exists()
}

fn cached_rootfs() -> Option<PathBuf> {
    Some(rootfs_path()).filter(|p| is_rootfs(p))
}

/// A Debian 12 rootfs with systemd and containerd (`nspawn-node rootfs`): built once (33–55 s),
/// then reused. The build goes to `<path>.partial` and is renamed into place when complete,
/// under an exclusive `flock` on `<parent>/.lock`, so parallel tests and test processes wait
/// for one build instead of racing.
pub fn rootfs() -> PathBuf {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS
        .get_or_init(|| {
            built_once(&rootfs_path(), "node rootfs", is_rootfs, |partial| {
                run_output(Command::new(tool()).arg("rootfs").arg(partial));
            })
        })
        .clone()
}

/// `path` once `complete(path)` holds, building it first if needed: `build` fills
/// `<path>.partial`, which is renamed into place when done, under an exclusive `flock` on
/// `<parent>/.lock`, so parallel tests and test processes wait for one build instead of racing.
/// Shared by the node rootfs and other cached trees (the pod tests' image base).
pub fn built_once(
    path: &Path,
    what: &str,
    complete: impl Fn(&Path) -> bool,
    build: impl FnOnce(&Path),
) -> PathBuf {
    if complete(path) {
        return path.to_path_buf();
    }
    let parent = path.parent().expect("a cached tree has a parent");
    fs::create_dir_all(parent).unwrap();
    let lock = fs::File::create(parent.join(".lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock the cache lock");
    if complete(path) {
        return path.to_path_buf(); // another process built it meanwhile
    }
    let partial = path.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    let _ = fs::remove_dir_all(path);
    let t = Instant::now();
    eprintln!("building the {what} in {} ...", path.display());
    build(&partial);
    fs::rename(&partial, path).unwrap();
    eprintln!("{what} built in {:.1?}", t.elapsed());
    path.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// The .deb

/// A `.deb` made by cargo-deb from the binary cargo built for these tests, and where it is.
pub struct BuiltDeb {
    pub dir: tempfile::TempDir,
    pub deb: PathBuf,
}

/// `cargo deb --no-build --strip` on a copy of the test binary placed where cargo-deb looks for a
/// release build (a private CARGO_TARGET_DIR), so no second (release, ~145 s) build is needed.
/// `None` (skip) when cargo-deb or dpkg-deb is missing; a panic under `REGMIRROR_E2E=1`.
pub fn build_deb() -> Option<BuiltDeb> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !has_cargo_deb() {
        assert!(
            !e2e(),
            "cargo-deb is missing (REGMIRROR_E2E=1): `cargo install cargo-deb --locked`"
        );
        eprintln!("skipped: cargo-deb not found (`cargo install cargo-deb --locked`)");
        return None;
    }
    require_tool("dpkg-deb", "apt-get install -y dpkg")?;
    let dir = tempfile::Builder::new()
        .prefix("regmirror-deb-")
        .tempdir()
        .unwrap();
    let target = dir.path().join("target");
    fs::create_dir_all(target.join("release")).unwrap();
    fs::copy(
        env!("CARGO_BIN_EXE_regmirror"),
        target.join("release/regmirror"),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let t = Instant::now();
    let out = run_output(
        Command::new(&cargo)
            .args(["deb", "--no-build", "--strip", "--fast", "--manifest-path"])
            .arg(repo().join("Cargo.toml"))
            .arg("-o")
            .arg(&out_dir)
            .env("CARGO_TARGET_DIR", &target),
    );
    eprintln!("cargo deb: {:.1?}", t.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "cargo deb warned:\n{stderr}");
    let deb = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("cargo deb wrote no .deb");
    // Only the package is needed from here on (the binary copy is ~200 MB).
    let _ = fs::remove_dir_all(&target);
    Some(BuiltDeb { dir, deb })
}

/// (kept temp dir, directory holding only `regmirror.deb`)
static SHARED_DEB: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();

unsafe extern "C" {
    fn atexit(cb: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn remove_shared_deb() {
    if let Some((root, _)) = SHARED_DEB.get() {
        let _ = fs::remove_dir_all(root);
    }
}

/// One `.deb` for the whole test process: a directory holding only `regmirror.deb` (bind it
/// into a node read-only). Removed when the process exits. Panics if it cannot be built (call
/// [`prerequisites`] first).
pub fn shared_deb() -> &'static Path {
    let (_, dir) = SHARED_DEB.get_or_init(|| {
        let mut built = build_deb().expect("cargo-deb and dpkg-deb are needed");
        let pkg = built.dir.path().join("pkg");
        fs::create_dir_all(&pkg).unwrap();
        fs::rename(&built.deb, pkg.join("regmirror.deb")).unwrap();
        built.dir.disable_cleanup(true);
        // SAFETY: registers a plain extern "C" fn without captures.
        unsafe {
            atexit(remove_shared_deb);
        }
        (built.dir.path().to_path_buf(), pkg)
    });
    dir
}

// ---------------------------------------------------------------------------------------------
// The node

/// A node name unique in this process and among processes: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A node booted by `nspawn-node up`, powered off (`nspawn-node down`, by the nspawn PID) when
/// dropped, also on panic; its `/var/lib/containerd` (kept in the tool's state dir) goes too.
pub struct Node {
    tool: PathBuf,
    pub name: String,
    /// The node's PID 1 (systemd), as a host PID.
    pub leader: u32,
    /// The systemd-nspawn process.
    pub nspawn: u32,
    /// Seconds from `up` to `running`, as the tool measured it.
    pub boot_secs: f64,
}

impl Node {
    /// Boots `rootfs` as `name` (see [`unique_name`]) with extra `systemd-nspawn` arguments (for
    /// example `--bind-ro=HOST:/pkg`). The guard exists before the boot starts, so a failed boot
    /// is powered off as well.
    pub fn up(rootfs: &Path, name: &str, args: &[String]) -> Node {
        let mut node = Node {
            tool: tool(),
            name: name.to_string(),
            leader: 0,
            nspawn: 0,
            boot_secs: 0.0,
        };
        let mut attempt = 1;
        let text = loop {
            match node.try_up(rootfs, args) {
                Ok(text) => break text,
                Err(why) if attempt < 5 => {
                    eprintln!("node {name}: {why}; powering it off and booting again");
                    node.down();
                    attempt += 1;
                }
                Err(why) => panic!("node {name} did not boot ({attempt} attempts): {why}"),
            }
        };
        // "NAME nspawn_pid leader_pid state boot_s"
        let f: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(f.len(), 5, "unexpected `nspawn-node up` output: {text:?}");
        node.nspawn = f[1].parse().unwrap();
        node.leader = f[2].parse().unwrap();
        node.boot_secs = f[4].parse().unwrap_or(0.0);
        if f[3] != "running" {
            let failed = node.exec("systemctl --failed --no-legend --no-pager");
            assert!(
                f[3] == "degraded",
                "node {name} did not boot: state {:?}\n{}",
                f[3],
                stdout(&failed)
            );
            eprintln!("node {name} is degraded:\n{}", stdout(&failed));
        }
        node
    }

    /// One `nspawn-node up`. The tool takes the first child of systemd-nspawn as the node's PID
    /// 1, but that can be nspawn's short-lived intermediate child (measured: about 1 boot in 10,
    /// more with parallel boots); the tool then waits 60 s on a dead PID and fails. That case is
    /// recognised here at once (the recorded leader is gone while nspawn runs): the `up`
    /// process group (started here) is killed by its id and `Err` returned, so the caller
    /// powers the node off and boots again.
    fn try_up(&self, rootfs: &Path, args: &[String]) -> Result<String, String> {
        use std::os::unix::process::CommandExt;
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let mut child = Command::new(&self.tool)
            .arg("up")
            .arg(rootfs)
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .process_group(0)
            .spawn()
            .expect("start nspawn-node up");
        let leader_file = state_dir().join(format!("{}.leader.pid", self.name));
        let nspawn_file = state_dir().join(format!("{}.nspawn.pid", self.name));
        let pid_alive = |f: &Path| {
            fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .map(|p| (p, Path::new(&format!("/proc/{p}")).exists()))
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            let stale = match (pid_alive(&leader_file), pid_alive(&nspawn_file)) {
                (Some((l, false)), Some((_, true))) => Some(format!(
                    "nspawn-node took pid {l} as the node's PID 1, but it was nspawn's \
                     intermediate child (gone)"
                )),
                (Some((l, false)), nspawn) => Some(format!(
                    "the node's PID 1 ({l}) and systemd-nspawn ({nspawn:?}) are gone; nspawn \
                     log:\n{}",
                    fs::read_to_string(state_dir().join(format!("{}.log", self.name)))
                        .unwrap_or_default()
                )),
                _ => None,
            };
            if stale.is_some() || Instant::now() > deadline {
                let pg = nix::unistd::Pid::from_raw(-(child.id() as i32));
                let _ = nix::sys::signal::kill(pg, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                // `down` asks the node's systemd to power off (nspawn turns SIGTERM into
                // SIGRTMIN+3). Until systemd has installed its handlers, a PID namespace's init
                // ignores that signal: nspawn is then killed after 20 s and the node's systemd
                // lives on, orphaned (measured). So let the real PID 1 finish booting first.
                if let Some((np, true)) = pid_alive(&nspawn_file) {
                    wait_booted(np);
                }
                return Err(stale.unwrap_or_else(|| "`nspawn-node up` took over 120 s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |mut f: fs::File| {
            use std::io::Seek;
            let mut s = String::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_string(&mut s).unwrap();
            s
        };
        let (text, errs) = (read(out), read(err));
        if !status.success() {
            let log = fs::read_to_string(state_dir().join(format!("{}.log", self.name)))
                .unwrap_or_default();
            return Err(format!(
                "`nspawn-node up` failed ({status}):\n{text}{errs}\nnspawn log:\n{log}"
            ));
        }
        Ok(text)
    }

    /// `nspawn-node down NAME` (stops systemd-nspawn by the PID the tool recorded) and removes
    /// the node's /var/lib/containerd, which `down` keeps.
    fn down(&self) {
        let _ = Command::new(&self.tool)
            .args(["down", &self.name])
            .stdin(Stdio::null())
            .output();
        let _ = fs::remove_dir_all(state_dir().join(format!("{}-containerd", self.name)));
    }

    /// `bash -c SCRIPT` in all namespaces of the node's PID 1.
    pub fn exec(&self, script: &str) -> Output {
        Command::new(&self.tool)
            .args(["exec", &self.name, "bash", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("nspawn-node exec")
    }

    /// [`Node::exec`], panicking with its output (and the end of regmirror's journal) unless it
    /// succeeds. Returns stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.exec(script);
        assert!(
            out.status.success(),
            "on the node: {script}\n{}\n{}\n--- journal:\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr),
            stdout(&self.exec("journalctl -u regmirror --no-pager -n 60 -o cat"))
        );
        stdout(&out)
    }

    /// The node's root directory as seen from the host.
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader))
    }

    /// A path of the node (`/etc/containerd/config.toml`) as seen from the host.
    pub fn path(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    /// The node's containerd CRI socket as seen from the host: a client connecting to it talks
    /// to the node's containerd.
    pub fn cri_socket(&self) -> PathBuf {
        self.path("/run/containerd/containerd.sock")
    }

    /// `systemctl show -p P1,P2 UNIT` as (property, value) pairs in the order asked.
    pub fn props(&self, unit: &str, props: &[&str]) -> Vec<(String, String)> {
        let text = self.ok(&format!("systemctl show -p {} {unit}", props.join(",")));
        props
            .iter()
            .map(|p| {
                let v = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{p}=")))
                    .unwrap_or_default();
                (p.to_string(), v.to_string())
            })
            .collect()
    }

    /// One property of a unit.
    pub fn prop(&self, unit: &str, prop: &str) -> String {
        self.props(unit, &[prop]).remove(0).1
    }

    /// `journalctl -u UNIT -o cat` (messages only).
    pub fn journal(&self, unit: &str) -> String {
        stdout(&self.exec(&format!("journalctl -u {unit} --no-pager -o cat")))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let t = Instant::now();
        self.down();
        if self.nspawn != 0 && Path::new(&format!("/proc/{}", self.nspawn)).exists() {
            eprintln!(
                "node {}: nspawn pid {} still there after down",
                self.name, self.nspawn
            );
        }
        eprintln!("node {} down in {:.1?}", self.name, t.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// A containerd start that breaks the CRI plugin once (for the rollback tests)

/// The marker that arms [`INJECT`] for the next containerd start (it removes it).
pub const INJECT_MARKER: &str = "/run/regmirror-test/inject-config-path";

/// The containerd drop-in's `ExecStartPre=` script: once, when the marker exists, an admin edit
/// racing regmirror's restart puts `config_path` next to the legacy mirrors (containerd 1.6 then
/// does not load its CRI plugin).
pub const INJECT: &str = r#"#!/bin/sh
# Written by tests/node_support (ExecStartPre of containerd.service).
M=/run/regmirror-test/inject-config-path
[ -e "$M" ] || exit 0
rm -f "$M"
C=/etc/containerd/config.toml
awk -v hdr='[plugins."io.containerd.grpc.v1.cri".registry]' -v line='config_path = "/nonexistent/certs.d"' '
    { t = $0; gsub(/^[ \t]+|[ \t]+$/, "", t); print }
    t == hdr { print "  " line; done = 1 }
    END { if (!done) { print ""; print hdr; print "  " line } }
' "$C" > "$C.inject" && mv "$C.inject" "$C" || exit 1
echo "regmirror-test: injected config_path into $C"
"#;

impl Node {
    /// Installs [`INJECT`] as an `ExecStartPre=` drop-in of containerd.service (disarmed).
    pub fn install_config_path_injector(&self) {
        use std::os::unix::fs::PermissionsExt;
        let script = self.path("/usr/local/sbin/regmirror-test-inject");
        fs::write(&script, INJECT).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        self.ok(
            "mkdir -p /etc/systemd/system/containerd.service.d /run/regmirror-test && \
             printf '[Service]\\nExecStartPre=/usr/local/sbin/regmirror-test-inject\\n' \
             > /etc/systemd/system/containerd.service.d/regmirror-test.conf && systemctl daemon-reload",
        );
    }

    /// Makes the next containerd start put `config_path` next to the legacy mirrors.
    pub fn arm_config_path_injector(&self) {
        self.ok(&format!("touch {INJECT_MARKER}"));
    }
}

/// The marker that arms [`BROKEN_START`] for the next containerd start (it removes it).
pub const BROKEN_START_MARKER: &str = "/run/regmirror-test/break-next-start";

/// containerd.service's `ExecStart=` wrapper: once, when the marker exists, containerd starts on
/// a COPY of config.toml with `config_path` added next to the legacy mirrors, so its CRI plugin
/// fails to load (UNIMPLEMENTED) while config.toml itself, regmirror's file, stays as regmirror
/// wrote it (a guarded rollback refuses to undo files someone else changed since, so the in-place
/// edit of [`INJECT`] is no rollback case any more). Otherwise it starts containerd as usual.
pub const BROKEN_START: &str = r#"#!/bin/sh
# Written by tests/node_support (ExecStart of containerd.service).
M=/run/regmirror-test/break-next-start
[ -e "$M" ] || exec /usr/bin/containerd
rm -f "$M"
B=/run/regmirror-test/broken-config.toml
awk -v hdr='[plugins."io.containerd.grpc.v1.cri".registry]' -v line='config_path = "/nonexistent/certs.d"' '
    { t = $0; gsub(/^[ \t]+|[ \t]+$/, "", t); print }
    t == hdr { print "  " line; done = 1 }
    END { if (!done) { print ""; print hdr; print "  " line } }
' /etc/containerd/config.toml > "$B" || exit 1
echo "regmirror-test: containerd starts on $B (config_path next to the mirrors)"
exec /usr/bin/containerd --config "$B"
"#;

impl Node {
    /// Installs [`BROKEN_START`] as containerd.service's `ExecStart=` (disarmed).
    pub fn install_broken_start(&self) {
        use std::os::unix::fs::PermissionsExt;
        let script = self.path("/usr/local/sbin/regmirror-test-containerd");
        fs::write(&script, BROKEN_START).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        self.ok(
            "mkdir -p /etc/systemd/system/containerd.service.d /run/regmirror-test && \
             printf '[Service]\\nExecStart=\\nExecStart=/usr/local/sbin/regmirror-test-containerd\\n' \
             > /etc/systemd/system/containerd.service.d/regmirror-test-start.conf && \
             systemctl daemon-reload",
        );
    }

    /// Makes the next containerd start fail to load its CRI plugin (see [`BROKEN_START`]).
    pub fn arm_broken_start(&self) {
        self.ok(&format!("touch {BROKEN_START_MARKER}"));
    }
}

/// Waits (at most 30 s) until the container PID 1 under systemd-nspawn `nspawn` (its child in
/// another PID namespace) reports `running` or `degraded`.
fn wait_booted(nspawn: u32) {
    let pid_ns = |p: u32| fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let own = pid_ns(nspawn);
    let _ = poll_every(Duration::from_secs(30), Duration::from_millis(100), || {
        let children = fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
        let init = children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|&c| pid_ns(c).is_some() && pid_ns(c) != own)?;
        let out = Command::new("nsenter")
            .args([
                "-t",
                &init.to_string(),
                "-a",
                "systemctl",
                "is-system-running",
            ])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        matches!(state.as_str(), "running" | "degraded").then_some(())
    });
}

/// nspawn-node's state directory (`NSPAWN_STATE`, default /run/nspawn-node).
fn state_dir() -> PathBuf {
    std::env::var_os("NSPAWN_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/run/nspawn-node".into())
}
