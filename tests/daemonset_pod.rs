//! The DaemonSet for real (issue 16): the image built from `packaging/Containerfile`, run as the
//! pod of `packaging/kubernetes/daemonset.yaml` on a booted systemd node, restarting that node's
//! containerd from inside the pod it runs in.
//!
//! 1. The image: buildah (vfs storage in a temp dir) builds the Containerfile's `prebuilt` target
//!    on a debootstrap'd Debian 12 base (`RUNTIME_IMAGE`), with the test binary as the context;
//!    it leaves as an OCI archive, with a pause image made from Debian's static catatonit
//!    (`tests/pod_support/image.rs`).
//! 2. The node: `shared/tools/nspawn-node` (systemd as PID 1, Debian's containerd 1.6.20 as a
//!    service), a CNI network that gives the pod its own network namespace with `lo` only (the
//!    node shares the host's network namespace: no bridge or veth may touch it; see
//!    `pod_support::cni_bin_dir`). Both archives are
//!    imported with the node's own `ctr -n k8s.io images import`.
//! 3. The pod: the DaemonSet parsed from the YAML and translated into kubelet's CRI calls
//!    (`tests/pod_support/translate.rs`: image, args, env with the downward API, hostPID, the
//!    pod network, capabilities, read-only root, user, seccomp/AppArmor, hostPath volumes,
//!    resources, probes), with two stand-ins for the API server: the Secret as a mounted Secret
//!    volume (kubelet's atomic-writer layout, `REGMIRROR_SECRET_DIR`) and
//!    `REGMIRROR_RESTART_JITTER=0` (the manifest's 30 s default jitter, three times, would
//!    dominate the run time).
//! 4. What it must do: first apply (Secret A) → the agent restarts the node's containerd
//!    through systemd (setns into PID 1) → containerd healthy, the agent's container still
//!    running (same PID, same start), liveness and readiness 200, a CRI pull on the node goes
//!    through mirror A (its access log). Secret volume changed (B) → one more restart, the pod
//!    survives, pulls go through B and not A. Then a failing config (Secret back to A, and
//!    containerd's next start, once, runs on a copy of that config.toml with `config_path` next
//!    to the legacy mirrors: the CRI plugin fails, `node_support::BROKEN_START`)
//!    → the agent rolls back from inside the pod → containerd healthy on B again, the pod
//!    still running, readiness 503 (the desired spec is not applied), liveness 200. Finally
//!    StopContainer: the agent exits 0 on SIGTERM.
//!
//! Skipped only when not root; as root a missing tool fails the test (install them with
//! `scripts/install-deps.sh`). Every wait is bounded; the node is powered off (and its
//! containerd state removed) by a guard, also on failure; registries bind 127.0.0.1 only.
//! Run: `cargo test --test daemonset_pod -- --nocapture`.

mod node_support;
mod pod_support;
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use node_support::{Node, rootfs, unique_name};
use pod_support::cri::{Runtime, Status};
use pod_support::translate::{self, HttpProbe, PodPlan, StandIn};
use pod_support::{SecretVolume, image, probe, secret_keys};
use regmirror::cri::CriClient;
use support::cli::Secret;
use support::registry::{Kind, Registry};
use support::{last_lines, metric, poll_every, stdout, temp_dir};

const TEST: &str = "daemonset_pod_restarts_its_nodes_containerd_and_rolls_back";
const DOCKER_REPO: &str = "airgap-images/docker.io/library/tiny";
const MANIFEST: &str = "packaging/kubernetes/daemonset.yaml";
/// Where the stand-in Secret volume is mounted in the container.
const SECRET_MOUNT: &str = "/etc/regmirror/registry-info";
/// Bound for "the agent applied, containerd restarted and is healthy" (and for the rollback).
const SETTLE: Duration = Duration::from_secs(60);
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

fn docker_path() -> String {
    format!("/v2/{DOCKER_REPO}/manifests/1")
}

/// A plain-http registry holding the tiny image as `docker.io/library/tiny:1`.
fn mirror() -> Registry {
    let r = Registry::start(Kind::Plain);
    r.push_tiny(DOCKER_REPO);
    r
}

fn secret_for(reg: &Registry) -> Secret {
    Secret::new(
        &reg.host(),
        &format!("docker.io::http://{}/airgap-images/docker.io", reg.host()),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// CRI PullImage through the node's socket (a pull by the node's containerd) of the tiny
/// image; panics unless `via` served its manifest (200) and `not_via` saw nothing.
fn assert_pull_via(node: &Node, via: &Registry, not_via: &Registry) {
    let (mark, other) = (via.mark(), not_via.mark());
    let t = Instant::now();
    let socket = node.cri_socket();
    let result = rt().block_on(async {
        let mut c = CriClient::connect(&socket)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(PULL_TIMEOUT, c.pull_image("docker.io/library/tiny:1")).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("PullImage timed out".to_string()),
        }
    });
    let hits = via.hits(mark, &docker_path());
    let served = hits.iter().find(|r| r.status == 200);
    assert!(
        result.is_ok() && served.is_some(),
        "pull through mirror {} failed: {result:?}\naccess log:\n{}\nconfig.toml:\n{}",
        via.host(),
        via.log_since(mark),
        read_node(node, "/etc/containerd/config.toml")
    );
    let agent = &served.unwrap().user_agent;
    assert!(agent.starts_with("containerd/"), "user agent {agent:?}");
    assert!(
        not_via.requests_since(other).is_empty(),
        "the other mirror was asked:\n{}",
        not_via.log_since(other)
    );
    // Remove the image, so that the next pull goes to a registry again.
    node.ok("ctr -n k8s.io images rm docker.io/library/tiny:1 >/dev/null");
    eprintln!(
        "  node pull of docker.io/library/tiny:1 in {:.2?}: {} served {} to {agent}",
        t.elapsed(),
        via.host(),
        docker_path()
    );
}

fn read_node(node: &Node, path: &str) -> String {
    std::fs::read_to_string(node.path(path)).unwrap_or_default()
}

/// containerd's MainPID and how many times systemd started it since boot.
fn containerd(node: &Node) -> (u32, usize) {
    let out = node.ok("systemctl show -p MainPID --value containerd; \
         journalctl -u containerd --no-pager -o cat | grep -c '^Started containerd' || true");
    let mut l = out.lines().map(|l| l.trim().parse().unwrap_or(0));
    (l.next().unwrap_or(0) as u32, l.next().unwrap_or(0) as usize)
}

/// The pod as the test drives it: the plan, its ids, and what it sees through them.
struct Pod<'a> {
    node: &'a Node,
    cri: Runtime,
    plan: PodPlan,
    sandbox: String,
    container: String,
    /// The agent's first status (RUNNING): every later check compares with it.
    first: Status,
}

impl Pod<'_> {
    fn probe_port(&self) -> u16 {
        self.plan
            .probes
            .first()
            .expect("the manifest has probes")
            .port
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        probe(self.node, self.first.pid, self.probe_port(), path)
    }

    fn metric(&self, series: &str) -> Option<f64> {
        metric(&self.get("/metrics")?.1, series)
    }

    /// The manifest's probes: (probe, status).
    fn probes(&self) -> Vec<(HttpProbe, Option<u16>)> {
        self.plan
            .probes
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    probe(self.node, self.first.pid, p.port, &p.path).map(|r| r.0),
                )
            })
            .collect()
    }

    fn log(&self) -> String {
        read_node(self.node, &self.plan.log_file)
    }

    /// What the agent wrote that containerd has not copied into the log file yet: while
    /// containerd's CRI plugin is down, the container's output waits in the shim's FIFOs.
    fn unlogged(&self) -> String {
        stdout(&self.node.exec(&format!(
            "for f in /run/containerd/io.containerd.grpc.v1.cri/containers/{}/io/*/*-std*; do \
               timeout 1 cat \"$f\"; done 2>/dev/null",
            self.container
        )))
    }

    /// Panics unless the agent's container is the same RUNNING process as at its start and the
    /// sandbox is READY.
    fn assert_still_running(&self, when: &str) {
        let now = self
            .cri
            .container(&self.container)
            .unwrap_or_else(|e| panic!("{when}: {e}\n{}", last_lines(&self.log(), 30)));
        assert_eq!(
            now,
            self.first,
            "{when}: the agent's container is not the one that started\n{}",
            last_lines(&self.log(), 30)
        );
        assert_eq!(
            self.cri.sandbox_ready(&self.sandbox),
            Ok(true),
            "{when}: sandbox"
        );
        eprintln!(
            "  {when}: the agent's container still RUNNING as pid {}",
            now.pid
        );
    }

    /// Waits until `pred(/metrics)` holds; panics with the pod's log after [`SETTLE`].
    fn wait_metrics(&self, what: &str, pred: impl Fn(&str) -> bool) -> Duration {
        let t = Instant::now();
        poll_every(SETTLE, Duration::from_millis(200), || {
            let m = self.get("/metrics")?.1;
            pred(&m).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "{what}: not within {SETTLE:?}\n/metrics:\n{}\npod log:\n{}\nnot yet in the \
                 log (the container's stderr FIFO):\n{}\nnode journal:\n{}",
                self.get("/metrics").map(|r| r.1).unwrap_or_default(),
                last_lines(&self.log(), 40),
                self.unlogged(),
                last_lines(
                    &stdout(
                        &self
                            .node
                            .exec("journalctl --no-pager -o short-monotonic -n 60")
                    ),
                    60
                )
            )
        });
        t.elapsed()
    }
}

/// Capability bit numbers (linux/capability.h) of the names a manifest may add.
fn cap_bit(name: &str) -> u32 {
    const BITS: [(&str, u32); 12] = [
        ("CHOWN", 0),
        ("DAC_OVERRIDE", 1),
        ("DAC_READ_SEARCH", 2),
        ("FOWNER", 3),
        ("FSETID", 4),
        ("KILL", 5),
        ("SETGID", 6),
        ("SETUID", 7),
        ("NET_BIND_SERVICE", 10),
        ("SYS_CHROOT", 18),
        ("SYS_PTRACE", 19),
        ("SYS_ADMIN", 21),
    ];
    BITS.iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("capability {name}: add its bit to cap_bit"))
        .1
}

/// The agent's process really runs with what the manifest asks: exactly the added capabilities
/// (drop ALL), the runtime's seccomp filter, privilege escalation allowed as asked, uid 0, a
/// read-only root, and in the node's PID namespace (hostPID) but its own network namespace.
fn assert_process_matches_manifest(node: &Node, pod: &Pod, ds: &DaemonSet) {
    let c = &ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let sc = c.security_context.as_ref().expect("securityContext");
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let want: u64 = caps.add.iter().flatten().map(|n| 1u64 << cap_bit(n)).sum();
    let pid = pod.first.pid;
    let status = node.ok(&format!("cat /proc/{pid}/status"));
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("no {k} in /proc/{pid}/status"))
            .trim()
            .to_string()
    };
    let eff = u64::from_str_radix(&field("CapEff"), 16).unwrap();
    let bnd = u64::from_str_radix(&field("CapBnd"), 16).unwrap();
    assert_eq!(
        (eff, bnd),
        (want, want),
        "CapEff/CapBnd vs the manifest's {:?}",
        caps.add
    );
    assert_eq!(field("Seccomp"), "2", "RuntimeDefault: a seccomp filter");
    let nnp = if sc.allow_privilege_escalation == Some(false) {
        "1"
    } else {
        "0"
    };
    assert_eq!(field("NoNewPrivs"), nnp);
    assert!(field("Uid").starts_with(&format!("{}\t", sc.run_as_user.unwrap_or(0))));
    let root_ro = node.ok(&format!(
        "awk '$5 == \"/\" {{print $6}}' /proc/{pid}/mountinfo"
    ));
    assert_eq!(
        root_ro.trim().split(',').next(),
        Some(if sc.read_only_root_filesystem == Some(true) {
            "ro"
        } else {
            "rw"
        }),
        "the container's root mount"
    );
    let ns = |p: &str, n: &str| {
        node.ok(&format!("readlink /proc/{p}/ns/{n}"))
            .trim()
            .to_string()
    };
    let pid_s = pid.to_string();
    assert_eq!(
        ns(&pid_s, "pid") == ns("1", "pid"),
        pod_spec_flag(ds, "hostPID")
    );
    assert_eq!(
        ns(&pid_s, "net") == ns("1", "net"),
        pod_spec_flag(ds, "hostNetwork")
    );
    eprintln!(
        "  the agent's process: CapEff {eff:#x} ({:?}), Seccomp 2, NoNewPrivs {nnp}, root ro, \
         hostPID {}, hostNetwork {}",
        caps.add.as_deref().unwrap_or_default(),
        pod_spec_flag(ds, "hostPID"),
        pod_spec_flag(ds, "hostNetwork")
    );
}

fn pod_spec_flag(ds: &DaemonSet, flag: &str) -> bool {
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    match flag {
        "hostPID" => spec.host_pid == Some(true),
        "hostNetwork" => spec.host_network == Some(true),
        _ => unreachable!(),
    }
}

/// Tears the pod down through the CRI when dropped (before the node goes), also on failure.
struct PodGuard<'a>(Option<(&'a Runtime, String, String)>);

impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        if let Some((cri, sandbox, container)) = self.0.take()
            && let Err(e) = cri.remove_pod(&sandbox, &container, 10)
        {
            eprintln!("pod teardown: {e}");
        }
    }
}

/// The node: CNI plugins and a loopback network, the images imported, the rollback injector
/// installed (disarmed). Returns the node's `sandbox_image`.
fn prepare_node(node: &Node) -> String {
    std::fs::create_dir_all(node.path("/etc/cni/net.d")).unwrap();
    std::fs::write(
        node.path("/etc/cni/net.d/10-pod-net.conflist"),
        pod_support::CNI_CONFLIST,
    )
    .unwrap();
    node.install_broken_start();
    let status = rt()
        .block_on(async {
            let mut c = CriClient::connect(&node.cri_socket()).await?;
            c.status().await
        })
        .expect("CRI Status of the fresh node");
    status.config.as_ref().expect("Status(verbose) config")["sandboxImage"]
        .as_str()
        .expect("sandboxImage")
        .to_string()
}

#[test]
fn daemonset_pod_restarts_its_nodes_containerd_and_rolls_back() {
    skip_unless!(pod_support::prerequisites(TEST), "pod", TEST);
    let t0 = Instant::now();
    let ds = translate::parse_daemonset(
        &std::fs::read_to_string(node_support::repo().join(MANIFEST)).unwrap(),
    );
    let image_ref = translate::image(&ds);

    // The two cached trees (node rootfs, image base) build concurrently when missing.
    let base = std::thread::spawn(image::base_rootfs);
    let rootfs = rootfs();
    base.join().expect("image base rootfs");
    let (a, b) = (mirror(), mirror());

    let images = temp_dir("pod-images");
    let cni_bin = temp_dir("pod-cni");
    pod_support::cni_bin_dir(cni_bin.path());
    let node = Node::up(
        &rootfs,
        &unique_name("rm-pod"),
        &[
            format!("--bind-ro={}:/opt/cni/bin", cni_bin.path().display()),
            format!("--bind-ro={}:/images", images.path().display()),
        ],
    );
    eprintln!(
        "node {} up (boot {:.2} s) after {:.1?}",
        node.name,
        node.boot_secs,
        t0.elapsed()
    );
    let pause = prepare_node(&node);
    let built = image::build(images.path(), &image_ref, &pause);
    eprintln!(
        "image {image_ref}: buildah bud (base import + build) {:.1} s; with pause image and OCI \
         archives {:.1} s ({} MB)",
        built.bud_secs,
        built.total_secs,
        std::fs::metadata(&built.regmirror_tar).unwrap().len() >> 20
    );
    let t = Instant::now();
    node.ok(
        "ctr -n k8s.io images import /images/regmirror.tar >/dev/null && \
             ctr -n k8s.io images import /images/pause.tar >/dev/null",
    );
    let listed = node.ok("ctr -n k8s.io images ls -q");
    assert!(listed.lines().any(|l| l == image_ref), "{listed}");
    assert!(listed.lines().any(|l| l == pause), "{listed}");
    eprintln!(
        "imported {image_ref} and {pause} into the node's containerd in {:.1?}",
        t.elapsed()
    );

    // The pod, from the manifest, with the Secret volume standing in for the API.
    let uid = pod_support::pod_uid();
    let secret_dir =
        format!("/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~secret/registry-info");
    let mut volume = SecretVolume::new(node.path(&secret_dir));
    volume.write(&secret_keys(&secret_for(&a)));
    let stand_in = StandIn {
        secret_host_dir: secret_dir,
        secret_mount: SECRET_MOUNT.into(),
        env: vec![
            ("REGMIRROR_SECRET_DIR".into(), SECRET_MOUNT.into()),
            ("REGMIRROR_RESTART_JITTER".into(), "0".into()),
        ],
    };
    let plan = translate::plan(&ds, &node.name, &uid, &stand_in);
    for (dir, create) in &plan.host_dirs {
        if *create {
            std::fs::create_dir_all(node.path(dir)).unwrap();
        }
        assert!(
            node.path(dir).is_dir(),
            "hostPath {dir} (type Directory) missing on the node"
        );
    }
    let c = &plan.container;
    eprintln!(
        "pod from {MANIFEST}: args {:?}, env {:?}, mounts {:?}, probes {:?}",
        c.args,
        c.envs
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect::<Vec<_>>(),
        c.mounts
            .iter()
            .map(|m| format!(
                "{}:{}{}",
                m.host_path,
                m.container_path,
                if m.readonly { ":ro" } else { "" }
            ))
            .collect::<Vec<_>>(),
        plan.probes
    );
    let before = containerd(&node);
    let cri = Runtime::new(node.cri_socket());
    let t = Instant::now();
    let (sandbox, container) = cri.run_pod(&plan).unwrap_or_else(|e| {
        panic!(
            "{e}\ncontainerd:\n{}",
            last_lines(&node.journal("containerd"), 30)
        )
    });
    let _guard = PodGuard(Some((&cri, sandbox.clone(), container.clone())));
    let first = cri.container(&container).expect("ContainerStatus");
    eprintln!("pod started in {:.1?}: {first:?}", t.elapsed());
    assert_eq!(
        first.state,
        k8s_cri::v1::ContainerState::ContainerRunning,
        "{first:?}"
    );
    let pod = Pod {
        node: &node,
        cri: Runtime::new(node.cri_socket()),
        plan,
        sandbox,
        container,
        first,
    };

    assert_process_matches_manifest(&node, &pod, &ds);

    // 1. First apply: mirror A, containerd restarted once from inside the pod.
    let took = pod.wait_metrics("the first apply", |m| {
        metric(m, "regmirror_applies_total{result=\"changed\"}") == Some(1.0)
            && metric(m, "regmirror_containerd_restarts_total") == Some(1.0)
    });
    let after = containerd(&node);
    eprintln!(
        "1. first apply + containerd restart from the pod in {took:.2?}: containerd {before:?} → {after:?}"
    );
    assert_ne!(after.0, before.0, "containerd's MainPID did not change");
    assert_eq!(after.1, before.1 + 1, "containerd started once more");
    assert!(read_node(&node, "/etc/containerd/config.toml").contains(&a.host()));
    assert!(
        node.path("/var/lib/regmirror/state.json").exists(),
        "the state hostPath"
    );
    pod.assert_still_running("after the first restart");
    for (p, status) in pod.probes() {
        assert_eq!(status, Some(200), "{p:?}\n{}", last_lines(&pod.log(), 20));
    }
    assert_pull_via(&node, &a, &b);

    // 2. The Secret volume changes (kubelet's ..data swap): mirror B, one more restart.
    let t = Instant::now();
    volume.write(&secret_keys(&secret_for(&b)));
    pod.wait_metrics("the Secret change", |m| {
        metric(m, "regmirror_applies_total{result=\"changed\"}") == Some(2.0)
            && metric(m, "regmirror_containerd_restarts_total") == Some(2.0)
    });
    let after2 = containerd(&node);
    eprintln!(
        "2. Secret volume change → applied, containerd restarted in {:.2?}: {after:?} → {after2:?}",
        t.elapsed()
    );
    assert_eq!(after2.1, after.1 + 1);
    let good = read_node(&node, "/etc/containerd/config.toml");
    assert!(
        good.contains(&b.host()) && !good.contains(&a.host()),
        "{good}"
    );
    pod.assert_still_running("after the Secret change");
    for (p, status) in pod.probes() {
        assert_eq!(status, Some(200), "{p:?}");
    }
    assert_pull_via(&node, &b, &a);

    // 3. A failing config: the next containerd start loses its CRI plugin → rollback.
    node.arm_broken_start();
    let t = Instant::now();
    volume.write(&secret_keys(&secret_for(&a)));
    // Done = the rollback's own restart is healthy (the 4th restart the agent counts).
    pod.wait_metrics("the rollback", |m| {
        metric(m, "regmirror_rollbacks_total") == Some(1.0)
            && metric(m, "regmirror_applies_total{result=\"rolled_back\"}") == Some(1.0)
            && metric(m, "regmirror_containerd_restarts_total") == Some(4.0)
    });
    let after3 = containerd(&node);
    eprintln!(
        "3. failing config → rolled back from the pod in {:.2?}: containerd {after2:?} → {after3:?}",
        t.elapsed()
    );
    let ctd_journal = node.journal("containerd");
    assert!(
        ctd_journal.contains("regmirror-test: containerd starts on"),
        "{}",
        last_lines(&ctd_journal, 20)
    );
    assert!(
        ctd_journal.contains("cannot be set when `config_path` is provided"),
        "{}",
        last_lines(&ctd_journal, 20)
    );
    assert_eq!(
        after3.1,
        after2.1 + 2,
        "the failed start and the rollback's"
    );
    assert_eq!(
        read_node(&node, "/etc/containerd/config.toml"),
        good,
        "B's files are back"
    );
    let log = pod.log();
    assert!(
        log.contains("rolling back spec")
            && log.contains("healthy again on the previous configuration"),
        "{}",
        last_lines(&log, 30)
    );
    pod.assert_still_running("after the rollback");
    let probes = pod.probes();
    eprintln!("  probes after the rollback: {probes:?}");
    for (p, status) in probes {
        let want = if p.kind == "readinessProbe" { 503 } else { 200 };
        assert_eq!(status, Some(want), "{p:?}");
    }
    assert_eq!(pod.metric("regmirror_containerd_restarts_total"), Some(4.0));
    assert_pull_via(&node, &b, &a);

    // SIGTERM (StopContainer): a clean exit.
    let t = Instant::now();
    pod.cri
        .stop_container(&pod.container, pod.plan.grace_secs.min(20))
        .expect("StopContainer");
    let end = pod.cri.container(&pod.container).expect("ContainerStatus");
    eprintln!("StopContainer in {:.2?}: {end:?}", t.elapsed());
    assert_eq!(end.exit_code, 0, "{end:?}\n{}", last_lines(&pod.log(), 20));
    let lines: Vec<&str> = log.lines().collect();
    eprintln!(
        "pod log: {} lines; last:\n{}",
        lines.len(),
        last_lines(&pod.log(), 6)
    );
}
