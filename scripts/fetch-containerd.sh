#!/usr/bin/env bash
# Fetches the containerd releases of Debian's newer suites for the test matrix, without touching
# the system's apt sources: a private sources.list (the system's mirror URI, suites trixie and
# sid), `apt-get download`, `dpkg-deb -x` into a cache. Idempotent (a version already unpacked is
# kept). Prints nothing but errors; the binaries land in
#   target/containerd/<version>/usr/bin/containerd
# which tests/support/containerd.rs picks up (Debian 12's own 1.6.20 is /usr/bin/containerd).
#
# Override the cache with REGMIRROR_CONTAINERD_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${REGMIRROR_CONTAINERD_CACHE:-$PWD/target/containerd}"
# version in the cache  suite  Debian package version
MATRIX="1.7.24 trixie 1.7.24~ds1-6+deb13u1
2.1.9 sid 2.1.9+ds1-5"

need=""
while read -r ver suite pkg; do
	[ -x "$CACHE/$ver/usr/bin/containerd" ] || need="$need $ver:$suite:$pkg"
done <<<"$MATRIX"
[ -z "$need" ] && exit 0

apt_dir="$CACHE/.apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uri="${uri:-http://deb.debian.org/debian}"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
{
	echo "deb [signed-by=$keyring] $uri trixie main"
	echo "deb [signed-by=$keyring] $uri sid main"
} >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
	-o Debug::NoLocking=1 -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq >/dev/null
for item in $need; do
	IFS=: read -r ver _suite pkg <<<"$item"
	work=$(mktemp -d)
	(cd "$work" && apt-get "${apt_opts[@]}" download -qq "containerd=$pkg" >/dev/null)
	rm -rf "${CACHE:?}/$ver.tmp"
	dpkg-deb -x "$work"/containerd_*.deb "$CACHE/$ver.tmp"
	rm -rf "$work" "${CACHE:?}/$ver"
	mv "$CACHE/$ver.tmp" "$CACHE/$ver"
	"$CACHE/$ver/usr/bin/containerd" --version >/dev/null
done
