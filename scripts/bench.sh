#!/usr/bin/env bash
# regmirror's performance proof: runs every benchmark and prints the figures (see BENCHMARKS.md).
# NOT run by CI, and nothing here is a pass/fail timing assertion.
#
#   scripts/bench.sh            # everything, ~10 minutes after the builds (release ~145 s cold
#                               # on an idle machine; 8 min with other work on the 2 cores)
#   QUICK=1 scripts/bench.sh    # fewer rounds/updates, 10 s idle window (a smoke run, ~2 min)
#   ONLY="merge propagation" scripts/bench.sh   # a subset: criterion hyperfine merge mem
#                                               # propagation scale coalesce floor footprint
#   REGMIRROR_BIN=/path/to/regmirror scripts/bench.sh   # measure another build of regmirror
#                                               # (the bench drivers are still built here)
#
# Figures are printed to stdout and kept in $BENCH_OUT (default $CARGO_TARGET_DIR/bench-out, i.e.
# target/bench-out). On a shared 2-core machine absolute times are noisy: read the ratios
# measured side by side in one run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Honour CARGO_TARGET_DIR (absolute or relative to the workspace root), like cargo does.
TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in /*) ;; *) TARGET="$PWD/$TARGET" ;; esac
export CARGO_TARGET_DIR="$TARGET"
OUT=${BENCH_OUT:-$TARGET/bench-out}
QUICK=${QUICK:-0}
ONLY=${ONLY:-"criterion hyperfine merge mem propagation scale coalesce floor footprint"}
FIX="$OUT/fixtures"
BIN="${REGMIRROR_BIN:-$TARGET/release/regmirror}"
# The merge is what is measured: name the containerd version, so that no run spends its time
# asking a node that has no containerd socket here (`containerd --version` would be spawned).
export REGMIRROR_CONTAINERD_VERSION="${REGMIRROR_CONTAINERD_VERSION:-1.7.24}"
mkdir -p "$OUT"
want() { [[ " $ONLY " == *" $1 "* ]]; }
say() { printf '\n=== %s\n' "$*"; }

# --- tools (Debian packages and PyPI; each optional step is skipped when its tool is missing)
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_tool() { # apt_tool COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    { as_root apt-get update -qq && as_root apt-get install -y -qq "$2"; } >/dev/null 2>&1 || true
}
apt_tool hyperfine hyperfine
[ -x /usr/bin/time ] || apt_tool /usr/bin/time time
python3 -c 'import tomlkit' 2>/dev/null || python3 -m pip install -q tomlkit >/dev/null 2>&1 || true
python3 -c 'import tomlkit' 2>/dev/null || { echo "python3 tomlkit is missing (pip install tomlkit)"; exit 1; }
# The interpreter itself, not a version manager's shell shim (which would add its own start-up).
PY=$(python3 -c 'import sys; print(sys.executable)')

# --- builds (release: lto=fat, strip; the bench targets use the same settings)
say "build"
cargo build --release 2>&1 | tail -1
cargo bench --no-run --bench render --bench agent --bench yardstick 2>&1 | tail -1
agent() { cargo bench -q --bench agent -- --bin "$BIN" "$@"; }

say "machine"
echo "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, kernel $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg); rustc $(rustc --version | cut -d' ' -f2); $($PY --version) ($PY); tomlkit $($PY -c 'import tomlkit; print(tomlkit.__version__)'); $(hyperfine --version 2>/dev/null || echo 'no hyperfine')"

agent fixtures "$FIX"

if want criterion; then
    say "criterion: render / plan latency (in-process, medians)"
    if [ "$QUICK" = 1 ]; then CRIT_ARGS=(--warm-up-time 0.5 --measurement-time 1); else CRIT_ARGS=(); fi
    cargo bench -q --bench render -- --noplot "${CRIT_ARGS[@]}" >"$OUT/criterion.txt" 2>&1 || { cat "$OUT/criterion.txt"; exit 1; }
    "$PY" scripts/bench/criterion_summary.py "$TARGET/criterion"
fi

if want hyperfine; then
    say "hyperfine: whole process, 1 MiB config.toml + 1,000 mirrors (sequential, not interleaved)"
    if command -v hyperfine >/dev/null; then
        W="$OUT/hyperfine"; mkdir -p "$W"
        RUNS=$([ "$QUICK" = 1 ] && echo 3 || echo 7)
        hyperfine --style basic --warmup 1 --runs "$RUNS" --export-json "$OUT/hyperfine.json" \
            --prepare "rm -rf $W/rm && mkdir -p $W/rm && cp $FIX/config-1mib.toml $W/rm/config.toml" \
            -n "regmirror apply" \
            "$BIN apply --secret-file $FIX/secret-1000.yaml --config $W/rm/config.toml --certs-dir $W/rm/certs.d --state-dir $W/rm/state" \
            -n "regmirror diff" \
            "$BIN diff --secret-file $FIX/secret-1000.yaml --config $W/rm/config.toml --certs-dir $W/rm/certs.d --state-dir $W/rm/state >/dev/null; test \$? = 1" \
            -n "python3 tomlkit_merge.py" \
            "$PY scripts/bench/tomlkit_merge.py $FIX/config-1mib.toml $FIX/mirrors-1000.txt $W/py.toml" \
            2>&1 | grep -v '^ *$'
    else
        echo "hyperfine is not installed (apt-get install hyperfine); skipped"
    fi
fi

if want merge; then
    say "merge: regmirror vs tomlkit, interleaved"
    agent merge --python "$PY" --dir "$FIX" --rounds "$([ "$QUICK" = 1 ] && echo 3 || echo 9)"
fi

if want mem; then
    say "scale: peak memory"
    agent mem --python "$PY" --dir "$FIX" --repeat "$([ "$QUICK" = 1 ] && echo 1 || echo 3)"
fi

if want propagation; then
    say "propagation through the fake API server"
    if [ "$QUICK" = 1 ]; then
        agent propagation --updates 100
        agent propagation --updates 10 --mirrors 1000 --config 1mib
    else
        agent propagation --updates 1000
        agent propagation --updates 100 --mirrors 1000 --config 1mib
    fi
fi

if want scale; then
    say "scale: propagation latency and agent memory for 10 / 100 / 1,000 mirrors"
    if [ "$QUICK" = 1 ]; then SMALL=20 BIG=3; else SMALL=100 BIG=20; fi
    for n in 10 100 1000; do agent propagation --updates "$SMALL" --mirrors "$n"; done
    for n in 10 100 1000; do agent propagation --updates "$BIG" --mirrors "$n" --config 1mib; done
fi

if want coalesce; then
    say "coalescing with the default debounce"
    agent coalesce --updates 20 --gap-ms 50
fi

if want floor; then
    say "floor: regmirror vs one toml_edit parse + edit + print + atomic write (issue 13)"
    # The yardstick (benches/yardstick.rs, release profile) is run as a plain program: only its
    # own process is timed, not cargo.
    YARD=$(cargo bench --no-run --bench yardstick --message-format=json 2>/dev/null | "$PY" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "yardstick" and m.get("executable"):
        print(m["executable"])' | tail -1)
    [ -x "$YARD" ] || { echo "the yardstick executable was not found"; exit 1; }
    echo "regmirror: $BIN; yardstick: $YARD"
    if [ "$QUICK" = 1 ]; then R=5 K=1 U=10 S=20; else R=11 K=3 U=40 S=60; fi
    agent floor --dir "$FIX" --yardstick "$YARD" --python "$PY" --rounds "$R" --rss-repeat "$K"
    # The agent with --debounce 0s against a one-shot apply of the same change, pair by pair.
    agent agent-vs-apply --updates "$U" --config admin1000 --mirrors 1 --debounce 0s --source kube
    agent agent-vs-apply --updates "$U" --config admin1000 --mirrors 1 --debounce 0s --source file
    # Idle wake-ups, no systemd watchdog: the file source, then the watch on the fake API server.
    agent footprint --secs "$S" --source file
    agent footprint --secs "$S" --source kube
fi

# (the floor section already ran the kube-watch footprint)
if want footprint && ! want floor; then
    say "footprint: idle agent"
    agent footprint --secs "$([ "$QUICK" = 1 ] && echo 10 || echo 60)"
fi
