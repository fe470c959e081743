#!/usr/bin/env bash
# The main job on the bundled example: a dry-run diff of what regmirror would change in the
# seed's containerd config for the seed's registry-info Secret. Writes nothing outside
# /tmp/regmirror-demo. Installs protoc first if it is missing (the CRI client's build needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
	else
		echo "protoc is missing: sudo apt-get install -y protobuf-compiler" >&2; exit 2
	fi
fi
cargo build --quiet --locked
rc=0
./target/debug/regmirror diff \
	--secret-file examples/registry-secret.yaml \
	--config examples/containerd/config.toml \
	--certs-dir /tmp/regmirror-demo/certs.d \
	--state-dir /tmp/regmirror-demo/state "$@" || rc=$?
# diff's exit codes: 0 no change, 1 changes, 2 error
[ "$rc" -le 1 ] || exit "$rc"
