//! What `regmirror diff|apply|revert --runtime podman|crio` print.

use crate::spec::RegistrySpec;

use super::auto::Runtime;
use super::crio::{self, CrioReload};
use super::{PodmanError, PodmanPaths, apply, diff::unified_diff, plan};

fn reload_note(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Crio => {
            "reload needed: yes (CRI-O caches registries.conf: systemctl reload crio, or SIGHUP)"
        }
        _ => "reload needed: no (read at every pull)",
    }
}

/// `regmirror diff --runtime podman`: the diff on stdout; exit 1 when something changes.
pub fn cli_diff(paths: &PodmanPaths, spec: &RegistrySpec) -> Result<bool, PodmanError> {
    cli_diff_for(paths, spec, Runtime::Podman)
}

/// `regmirror diff --runtime podman|crio`.
pub fn cli_diff_for(
    paths: &PodmanPaths,
    spec: &RegistrySpec,
    rt: Runtime,
) -> Result<bool, PodmanError> {
    let plan = plan(paths, Some(spec))?;
    for w in spec.warnings.iter().chain(&plan.warnings) {
        eprintln!("warning: {w}");
    }
    let mut out = String::new();
    for c in &plan.changes {
        out.push_str(&unified_diff(c, &paths.auth_file));
    }
    if plan.changes.is_empty() {
        eprintln!("no change (runtime {rt})");
    } else {
        out.push_str(&format!(
            "# runtime {rt} (containers-registries.conf); {}\n",
            reload_note(rt)
        ));
    }
    print!("{out}");
    Ok(!plan.changes.is_empty())
}

/// `regmirror apply|revert --runtime podman`: write, and say what was written.
pub fn cli_apply(paths: &PodmanPaths, spec: Option<&RegistrySpec>) -> Result<(), PodmanError> {
    cli_apply_for(paths, spec, Runtime::Podman, &CrioReload::None)
}

/// `regmirror apply|revert --runtime podman|crio`: write, say what was written, and (crio)
/// reload CRI-O when a file changed and `reload` says how.
pub fn cli_apply_for(
    paths: &PodmanPaths,
    spec: Option<&RegistrySpec>,
    rt: Runtime,
    reload: &CrioReload,
) -> Result<(), PodmanError> {
    let verb = if spec.is_some() {
        "applied"
    } else {
        "reverted"
    };
    let plan = apply(paths, spec)?;
    for w in spec.iter().flat_map(|s| &s.warnings).chain(&plan.warnings) {
        eprintln!("warning: {w}");
    }
    let changed = !plan.changes.is_empty();
    if changed {
        println!("{verb} (runtime {rt}):");
        for c in &plan.changes {
            let v = if c.new.is_some() { "wrote" } else { "removed" };
            println!("  {v} {}", c.path.display());
        }
    } else {
        println!("{verb}: nothing to change (runtime {rt})");
    }
    if rt != Runtime::Crio {
        println!("restart needed: no");
        return Ok(());
    }
    println!("reload needed: {}", if changed { "yes" } else { "no" });
    match crio::reload(reload, changed) {
        Ok(Some(msg)) => println!("{msg}"),
        Ok(None) if changed => {
            println!(
                "not reloaded (--reload none): run `systemctl reload crio` or send crio SIGHUP"
            )
        }
        Ok(None) => {}
        Err(e) => return Err(PodmanError::Reload(e)),
    }
    Ok(())
}
