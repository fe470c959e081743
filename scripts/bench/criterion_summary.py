#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench --bench render` run (target/criterion/**/new/)
as a table, plus the ratios BENCHMARKS.md quotes. usage: criterion_summary.py target/criterion"""
import json
import os
import sys


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def main():
    root = sys.argv[1]
    rows = {}
    for d, _, files in os.walk(root):
        if os.path.basename(d) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(d, "benchmark.json")) as f:
            bid = json.load(f)["full_id"]
        with open(os.path.join(d, "estimates.json")) as f:
            est = json.load(f)["median"]
        rows[bid] = (est["point_estimate"], est["confidence_interval"]["lower_bound"],
                     est["confidence_interval"]["upper_bound"])
    if not rows:
        print("no criterion results under", root)
        return
    width = max(len(k) for k in rows)
    print(f"{'benchmark':<{width}}  {'median':>10}  95% CI of the median")
    for k in sorted(rows):
        m, lo, hi = rows[k]
        print(f"{k:<{width}}  {fmt(m):>10}  [{fmt(lo)} .. {fmt(hi)}]")

    def get(k):
        return rows.get(k, (float("nan"),))[0]

    floor = get("merge/toml_edit_parse_print/1mib")
    r = get("merge/render/1mib_1000")
    p = get("merge/plan/1mib_1000")
    print(f"ratios: render / (one toml_edit parse+print of the same file) = {r / floor:.1f}x;"
          f" plan / render = {p / r:.2f}x;"
          f" steady re-render / first render (1mib, 1000) = {get('steady/1mib/1000') / r:.2f}x")
    for cfg in ("default", "1mib"):
        a, b, c = (get(f"scale/{cfg}/{n}") for n in (10, 100, 1000))
        print(f"scale/{cfg}: 10 → 100 → 1000 mirrors = {fmt(a)} → {fmt(b)} → {fmt(c)}"
              f" ({c / a:.1f}x for 100x the mirrors; {(c - b) / 900 / 1e3:.1f} µs per extra mirror"
              f" from 100 to 1000)")


if __name__ == "__main__":
    main()
