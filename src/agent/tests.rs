//! The agent's decisions without a process: real files in a temp dir, a fake reloader that
//! records what it was asked and can fail, and [`reconcile`] / [`report`] called directly.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::watch;

use super::config::OnDelete;
use super::outcome::Outcome;
use super::reconcile::reconcile;
use super::restart::Restarter;
use super::triggers::Trigger;
use super::{Ctx, report};
use crate::apply::Paths;
use crate::observe::Telemetry;
use crate::reload::ReloadError;
use crate::render::{Expectation, Mode};
use crate::runtime::VersionArg;
use crate::runtime::detect::Probe;
use crate::source::Desired;
use crate::spec::SecretData;

const CONFIG: &str =
    "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n";

/// Records every reload; fails them while `fail` is set.
#[derive(Default)]
struct Fake {
    fail: Mutex<bool>,
    reloads: Mutex<Vec<(bool, Option<Expectation>)>>,
    recovers: Mutex<usize>,
    /// Runs inside the next reload, before it answers (a racing admin or manual apply).
    during: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Restarter for Arc<Fake> {
    fn will_restart(&self, restart_needed: bool) -> bool {
        restart_needed
    }
    fn reload<'a>(
        &'a self,
        restart_needed: bool,
        expect: Option<&'a Expectation>,
    ) -> BoxFuture<'a, Result<Option<String>, ReloadError>> {
        self.reloads
            .lock()
            .unwrap()
            .push((restart_needed, expect.cloned()));
        let fail = *self.fail.lock().unwrap();
        if let Some(f) = self.during.lock().unwrap().take() {
            f();
        }
        Box::pin(async move {
            match (fail, restart_needed) {
                (true, true) => Err(ReloadError::Command {
                    what: "fake restart".into(),
                    detail: "containerd did not load it".into(),
                }),
                (_, true) => Ok(Some("restarted (fake)".into())),
                _ => Ok(None),
            }
        })
    }
    fn recover(&self) -> BoxFuture<'_, Result<String, ReloadError>> {
        *self.recovers.lock().unwrap() += 1;
        Box::pin(async { Ok("9.9.9".to_string()) })
    }
    fn describe(&self) -> String {
        "fake".into()
    }
}

struct Node {
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    ctx: Ctx,
    _stop: watch::Sender<bool>,
}

fn node(version: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    let fake = Arc::new(Fake::default());
    let (stop, shutdown) = watch::channel(false);
    let ctx = Ctx {
        paths: Paths {
            config: dir.path().join("config.toml"),
            certs_dir: dir.path().join("certs.d"),
            state_dir: dir.path().join("state"),
        },
        mode: Mode::Auto,
        hosts: Default::default(),
        podman: None,
        crio: None,
        probe: Probe {
            explicit: Some(version.parse::<VersionArg>().unwrap()),
            socket: dir.path().join("none.sock"),
            host_pid: 0,
        },
        containerd: None,
        decided: false,
        cheap_detect: false,
        restarter: Box::new(fake.clone()),
        jitter: std::time::Duration::ZERO,
        on_delete: OnDelete::Revert,
        telemetry: Arc::new(Telemetry::new()),
        node: None,
        condition: None,
        budget: None,
        secret_rx: watch::channel(Desired::Unknown).1,
        own_writes: Default::default(),
        probed: None,
        shutdown,
        pulse: None,
        rolled_back: None,
    };
    Node {
        dir,
        fake,
        ctx,
        _stop: stop,
    }
}

fn secret(mirror_host: &str) -> Desired {
    let mut d = SecretData::new();
    for (k, v) in [
        ("DOMAIN", mirror_host.to_string()),
        ("BASE_PATH", "airgap-images".into()),
        ("INSECURE", "false".into()),
        (
            "MIRROR_REGISTRIES",
            format!("docker.io::{mirror_host}/airgap-images/docker.io"),
        ),
    ] {
        d.insert(k.to_string(), v.into_bytes());
    }
    Desired::Present(Ok(d))
}

impl Node {
    fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("config.toml")).unwrap()
    }
    async fn run(&mut self, d: Desired, t: Trigger) -> Outcome {
        let o = reconcile(&mut self.ctx, d, t).await;
        report::report(&self.ctx, &o).await;
        o
    }
}

#[tokio::test]
async fn a_change_restarts_once_then_is_up_to_date() {
    let mut n = node("1.7.24");
    let o = n.run(secret("harbor.example.org"), Trigger::Source).await;
    let Outcome::Applied(a) = &o else {
        panic!("{o:?}")
    };
    assert!(a.restarted && !a.reverted && !a.drift, "{a:?}");
    let reloads = n.fake.reloads.lock().unwrap().clone();
    assert_eq!(reloads.len(), 1);
    assert!(matches!(&reloads[0], (true, Some(Expectation::Mirrors(m))) if m[0].0 == "docker.io"));
    let o = n.run(secret("harbor.example.org"), Trigger::Resync).await;
    assert!(matches!(o, Outcome::UpToDate { .. }), "{o:?}");
    assert_eq!(n.fake.reloads.lock().unwrap().len(), 1, "no second reload");
    assert_eq!(n.ctx.telemetry.restarts.get(), 1);
}

#[tokio::test]
async fn a_failed_reload_rolls_back_and_holds_the_spec() {
    let mut n = node("1.7.24");
    *n.fake.fail.lock().unwrap() = true;
    let o = n.run(secret("harbor.example.org"), Trigger::Source).await;
    let Outcome::RolledBack(r) = &o else {
        panic!("{o:?}")
    };
    assert!(
        r.error.contains("did not load it") && r.back.is_ok(),
        "{r:?}"
    );
    assert_eq!(n.config(), CONFIG, "the previous bytes are back");
    assert_eq!(*n.fake.recovers.lock().unwrap(), 1);
    // Same Secret again: held, with the reason, and no reload attempted.
    *n.fake.fail.lock().unwrap() = false;
    let o = n.run(secret("harbor.example.org"), Trigger::Files).await;
    let Outcome::Held { why, .. } = &o else {
        panic!("{o:?}")
    };
    assert!(why.contains("did not load it"), "{why}");
    assert_eq!(n.fake.reloads.lock().unwrap().len(), 1);
    let (ready, reason) = n.ctx.telemetry.readiness();
    assert!(!ready && reason.contains("did not load it"), "{reason}");
    // A changed Secret is applied.
    let o = n.run(secret("other.example.org"), Trigger::Source).await;
    assert!(matches!(o, Outcome::Applied(_)), "{o:?}");
    assert_eq!(n.ctx.telemetry.rollbacks.get(), 1);
}

#[tokio::test]
async fn on_containerd_2_a_mirror_move_needs_no_restart() {
    let mut n = node("2.1.9");
    let o = n.run(secret("harbor.example.org"), Trigger::Source).await;
    let Outcome::Applied(a) = &o else {
        panic!("{o:?}")
    };
    assert!(a.restarted, "turning config_path on needs one restart");
    let o = n.run(secret("other.example.org"), Trigger::Source).await;
    let Outcome::Applied(a) = &o else {
        panic!("{o:?}")
    };
    assert!(!a.restarted && !a.restart_pending, "{a:?}");
    assert!(matches!(
        &n.fake.reloads.lock().unwrap()[0].1,
        Some(Expectation::ConfigPath(_))
    ));
}

#[tokio::test]
async fn deleted_secret_keep_or_revert() {
    let mut n = node("1.7.24");
    n.run(secret("harbor.example.org"), Trigger::Source).await;
    let applied = n.config();
    n.ctx.on_delete = OnDelete::Keep;
    assert_eq!(
        n.run(Desired::Deleted, Trigger::Source).await,
        Outcome::Kept
    );
    assert_eq!(n.config(), applied);
    n.ctx.on_delete = OnDelete::Revert;
    let o = n.run(Desired::Deleted, Trigger::Source).await;
    assert!(matches!(&o, Outcome::Applied(a) if a.reverted), "{o:?}");
    assert_eq!(n.config(), CONFIG);
}

#[tokio::test]
async fn a_hand_edit_is_repaired_as_drift() {
    let mut n = node("1.7.24");
    n.run(secret("harbor.example.org"), Trigger::Source).await;
    let applied = n.config();
    std::fs::write(
        n.dir.path().join("config.toml"),
        applied.replace("harbor.example.org", "evil.example.org"),
    )
    .unwrap();
    let o = n.run(secret("harbor.example.org"), Trigger::Files).await;
    assert!(matches!(&o, Outcome::Applied(a) if a.drift), "{o:?}");
    assert_eq!(n.config(), applied);
    assert_eq!(n.ctx.telemetry.drift_repairs.get(), 1);
}

#[tokio::test]
async fn an_upgrade_to_2x_moves_legacy_entries_to_hosts_mode() {
    let mut n = node("1.7.24");
    n.run(secret("harbor.example.org"), Trigger::Source).await;
    assert!(n.config().contains("mirrors"));
    n.ctx.probe.explicit = Some("2.1.9".parse().unwrap());
    let o = n.run(secret("harbor.example.org"), Trigger::Files).await;
    let Outcome::Applied(a) = &o else {
        panic!("{o:?}")
    };
    assert!(
        a.restarted && a.files.iter().any(|f| f.ends_with("hosts.toml")),
        "{a:?}"
    );
    let text = n.config();
    assert!(
        text.contains("config_path") && !text.contains("mirrors"),
        "{text}"
    );
    n.run(Desired::Deleted, Trigger::Source).await;
    assert_eq!(n.config(), CONFIG, "revert after the move is byte-exact");
}

#[tokio::test]
async fn a_bad_secret_is_rejected_and_changes_nothing() {
    let mut n = node("1.7.24");
    let o = n
        .run(Desired::Present(Err("unreadable".into())), Trigger::Source)
        .await;
    assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    let mut bad = SecretData::new();
    bad.insert("DOMAIN".into(), b"not a host!".to_vec());
    let o = n.run(Desired::Present(Ok(bad)), Trigger::Source).await;
    assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
    assert_eq!(n.config(), CONFIG);
    assert!(n.fake.reloads.lock().unwrap().is_empty());
}

fn with_password(mut d: Desired, password: &str) -> Desired {
    if let Desired::Present(Ok(data)) = &mut d {
        data.insert("USERNAME".into(), b"alice".to_vec());
        data.insert("PASSWORD".into(), password.as_bytes().to_vec());
    }
    d
}

#[tokio::test]
async fn a_password_only_rotation_after_a_rollback_is_applied_not_held() {
    let mut n = node("1.7.24");
    *n.fake.fail.lock().unwrap() = true;
    let first = with_password(secret("harbor.example.org"), "old-pw");
    let o = n.run(first.clone(), Trigger::Source).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    *n.fake.fail.lock().unwrap() = false;
    let o = n.run(first, Trigger::Source).await;
    assert!(
        matches!(o, Outcome::Held { .. }),
        "the same Secret stays held: {o:?}"
    );
    let rotated = with_password(secret("harbor.example.org"), "new-pw");
    let o = n.run(rotated, Trigger::Source).await;
    assert!(
        matches!(o, Outcome::Applied(_)),
        "a new PASSWORD is a new spec: {o:?}"
    );
    assert!(n.config().contains("new-pw"));
    let state = std::fs::read_to_string(n.dir.path().join("state/state.json")).unwrap();
    assert!(
        !state.contains("old-pw") && !state.contains("new-pw"),
        "{state}"
    );
}

#[tokio::test]
async fn a_rollback_never_undoes_a_manual_apply_made_meanwhile() {
    let mut n = node("2.1.9");
    *n.fake.fail.lock().unwrap() = true;
    let paths = n.ctx.paths.clone();
    // While the agent waits on containerd, an admin applies another Secret by hand.
    *n.fake.during.lock().unwrap() = Some(Box::new(move || {
        let d = match secret("manual.example.org") {
            Desired::Present(Ok(d)) => d,
            _ => unreachable!(),
        };
        let spec = crate::spec::parse_spec(&d).unwrap();
        let choice = crate::render::Choice {
            mode: Mode::Auto,
            containerd: Some("2.1.9".parse().unwrap()),
            ..Default::default()
        };
        crate::apply::apply(&paths, Some(&spec), choice).unwrap();
    }));
    let o = n.run(secret("harbor.example.org"), Trigger::Source).await;
    let Outcome::RolledBack(r) = &o else {
        panic!("{o:?}")
    };
    assert!(
        r.back
            .as_ref()
            .is_err_and(|e| e.contains("not rolled back")),
        "{r:?}"
    );
    let hosts = n.dir.path().join("certs.d/docker.io/hosts.toml");
    let text = std::fs::read_to_string(&hosts).unwrap();
    assert!(
        text.contains("manual.example.org"),
        "the manual apply stays:\n{text}"
    );
    let state = crate::apply::load_state(&n.ctx.paths).unwrap();
    assert!(
        state.files.iter().any(|f| f.path == hosts),
        "and stays owned"
    );
}
