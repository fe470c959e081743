#!/usr/bin/env bash
# Installs everything the build and the tests need on Debian 12 (idempotent; needs root):
# protoc for the CRI client's build script, the real containerd + registry + image tools for the
# end-to-end tests, systemd-nspawn + debootstrap for the booted-node tests, and cargo-deb + helm
# for the packaging tests, buildah + catatonit + CNI plugins for the DaemonSet pod test
# (tests/daemonset_pod.rs), and the newer containerd releases of the e2e matrix.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS="protobuf-compiler containerd podman docker-registry skopeo umoci apache2-utils openssl systemd-container debootstrap curl unzip buildah catatonit containernetworking-plugins binutils"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq $missing >/dev/null
fi
# The Debian package starts containerd/registry services where systemd runs; the tests start
# their own, on temp sockets and free ports, so nothing here depends on those.
sh packaging/install-test-tools.sh
# containerd 1.7.24 (Debian 13) and 2.1.9 (Debian sid) for the e2e matrix, unpacked into
# target/containerd/ from a private apt configuration.
scripts/fetch-containerd.sh
