#!/usr/bin/env bash
# The whole test suite, as CI runs it (Debian 12, as root): installs what it needs, checks
# formatting and lints, then runs every test target, the real-containerd ones included
# (REGMIRROR_E2E=1 turns a missing prerequisite into a failure instead of a skip).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	# Real containerd, mount namespaces and booted nodes need root.
	if command -v sudo >/dev/null 2>&1; then
		exec sudo --preserve-env env "PATH=$PATH" "$0" "$@"
	fi
	echo "scripts/test.sh needs root (containerd, mounts, systemd-nspawn): run it as root" >&2
	exit 1
fi
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
export REGMIRROR_E2E=1
mkdir -p target
cargo test --locked --no-fail-fast 2>&1 | tee target/test-output.txt
# Fuzzing, bounded: each target for a short time (the 10-minute runs are in RELIABILITY.md).
if ! cargo fuzz --version >/dev/null 2>&1; then cargo install cargo-fuzz --locked --version 0.13.2; fi
for t in secret_manifest mirror_registries render_merge; do
	(cd fuzz && cargo +nightly fuzz run "$t" -O -- -max_total_time="${REGMIRROR_FUZZ_SECONDS:-30}" -rss_limit_mb=2048) 2>&1 | tail -n 3
done
