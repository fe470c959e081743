#!/bin/bash
# Runs as ExecStart of regmirror.service (drop-in: Type=oneshot), i.e. inside the unit's real
# sandbox on a systemd node, and checks that the hardening still allows everything the agent
# does. Exits non-zero at the first broken expectation.
set -u
fail() { echo "PROBE FAIL: $*"; exit 1; }
ok() { echo "PROBE OK: $*"; }

grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status

# Write a root-owned file in /etc/containerd the way the agent does: temp file, owner, mode, rename.
t=/etc/containerd/.regmirror-probe.tmp
echo probe >"$t" || fail "cannot create a file in /etc/containerd"
chown 0:0 "$t" || fail "cannot chown in /etc/containerd"
chmod 0640 "$t" || fail "cannot chmod in /etc/containerd"
mv "$t" /etc/containerd/regmirror-probe || fail "cannot rename in /etc/containerd"
rm /etc/containerd/regmirror-probe || fail "cannot delete in /etc/containerd"
ok "/etc/containerd writable (create, chown, chmod, rename, delete)"

# A file an admin left without a write bit (needs CAP_DAC_OVERRIDE).
cp -p /etc/containerd/config.toml /var/lib/regmirror/config.toml.orig || fail "cannot back up config.toml into the state dir"
chmod 0444 /etc/containerd/config.toml
echo '# regmirror probe' >>/etc/containerd/config.toml || fail "cannot write a 0444 root file"
cp -p /var/lib/regmirror/config.toml.orig /etc/containerd/config.toml || fail "cannot restore config.toml"
rm /var/lib/regmirror/config.toml.orig
ok "0444 file rewritten and restored; /var/lib/regmirror writable"

if echo x 2>/dev/null >/etc/regmirror-probe-must-fail; then rm -f /etc/regmirror-probe-must-fail; fail "/etc is writable"; fi
if echo x 2>/dev/null >/usr/regmirror-probe-must-fail; then rm -f /usr/regmirror-probe-must-fail; fail "/usr is writable"; fi
[ -z "$(ls -A /root 2>/dev/null)" ] || fail "/root is visible"
ok "/etc, /usr read-only; /root hidden"

ctr --address /run/containerd/containerd.sock version >/dev/null || fail "cannot reach containerd.sock"
ok "containerd socket reachable"

before=$(systemctl show -p MainPID --value containerd.service)
systemctl restart containerd.service || fail "systemctl restart containerd failed"
after=$(systemctl show -p MainPID --value containerd.service)
if [ "$before" = "$after" ] || [ "$after" = 0 ]; then fail "containerd MainPID did not change ($before -> $after)"; fi
for _ in $(seq 50); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null || fail "containerd socket not answering after the restart"
ok "systemctl restart containerd ($before -> $after) and socket answers again"
echo "PROBE PASSED"
