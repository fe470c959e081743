//! The containerd test matrix: [`on`] runs one case on one release (skipped, or failed under
//! `REGMIRROR_E2E=1`, when a prerequisite or that release's binary is missing; timed as
//! `e2e containerd_X_Y::case`), and `containerd_matrix!(case, …)` makes one `#[test]` per case
//! and release, in modules named after the release (`containerd_2_1::case3_…`).

use super::containerd::Release;

pub fn on(release: Release, module: &'static str, name: &'static str, case: fn(Release)) {
    let full: &'static str = Box::leak(format!("{module}::{name}").into_boxed_str());
    if !super::prerequisites(full) {
        return;
    }
    if let Some(p) = release.problem()
        && !super::prerequisites_verdict(full, "containerd release", &[p])
    {
        return;
    }
    let _timer = super::Timer::new("e2e", full);
    case(release);
}

/// One `#[test]` per case (a `fn(Release)` of the calling module) and release.
#[macro_export]
macro_rules! containerd_matrix {
    ($($case:ident),* $(,)?) => {
        mod containerd_1_6 {
            $( #[test] fn $case() { $crate::support::matrix::on($crate::support::containerd::Release::V1_6, "containerd_1_6", stringify!($case), super::$case); } )*
        }
        mod containerd_1_7 {
            $( #[test] fn $case() { $crate::support::matrix::on($crate::support::containerd::Release::V1_7, "containerd_1_7", stringify!($case), super::$case); } )*
        }
        mod containerd_2_1 {
            $( #[test] fn $case() { $crate::support::matrix::on($crate::support::containerd::Release::V2_1, "containerd_2_1", stringify!($case), super::$case); } )*
        }
    };
}
