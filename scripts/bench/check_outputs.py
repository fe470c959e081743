#!/usr/bin/env python3
"""Checks the merge benchmark's outputs: both files parse (tomllib), hold the same data, hold
exactly the expected N `mirrors."regI.example".endpoint` arrays, leave every other value of the
original alone, and keep every original line (the edit only inserts lines).

usage: check_outputs.py ORIGINAL REGMIRROR_OUT TOMLKIT_OUT N
Exit 0 and one line `check: ok …` when all hold; exit 1 with the reason otherwise.
"""
import subprocess
import sys
import tomllib

DOMAIN = "harbor.example.org"


def load(path):
    with open(path, "rb") as f:
        return tomllib.load(f)


def deleted_lines(a, b):
    # GNU diff: lines only in `a` start with "<".
    out = subprocess.run(["diff", a, b], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.startswith("<"))


def main():
    orig_path, rust_path, py_path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    orig, rust, py = load(orig_path), load(rust_path), load(py_path)
    fail = []
    expected = {f"reg{i}.example": {"endpoint": [f"https://{DOMAIN}/v2/airgap-images/reg{i}"]}
                for i in range(1, n + 1)}
    for name, doc in (("regmirror", rust), ("tomlkit", py)):
        reg = doc["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
        got = reg.get("mirrors", {})
        if got != expected:
            fail.append(f"{name}: mirrors differ from the expected {n} endpoints "
                        f"({len(got)} entries)")
        rest = dict(doc)
        base = dict(orig)
        rest_reg = dict(reg)
        rest_reg.pop("mirrors", None)
        base_reg = dict(base["plugins"]["io.containerd.grpc.v1.cri"]["registry"])
        base_reg.pop("mirrors", None)
        if rest_reg != base_reg:
            fail.append(f"{name}: other registry values changed")
        # Everything outside the mirrors table is the original's data.
        def strip(d):
            d = {k: v for k, v in d.items()}
            p = dict(d["plugins"])
            c = dict(p["io.containerd.grpc.v1.cri"])
            r = dict(c["registry"])
            r.pop("mirrors", None)
            c["registry"] = r
            p["io.containerd.grpc.v1.cri"] = c
            d["plugins"] = p
            return d
        if strip(doc) != strip(orig):
            fail.append(f"{name}: data outside registry.mirrors changed")
    if rust != py:
        fail.append("regmirror and tomlkit outputs hold different data")
    dl_rust, dl_py = deleted_lines(orig_path, rust_path), deleted_lines(orig_path, py_path)
    if dl_rust:
        fail.append(f"regmirror output lost or changed {dl_rust} original lines")
    if dl_py:
        fail.append(f"tomlkit output lost or changed {dl_py} original lines")
    if fail:
        print("check: FAILED: " + "; ".join(fail))
        sys.exit(1)
    print(f"check: ok: both outputs parse (tomllib), hold the same data, the same {n} endpoints, "
          f"the original's other values, and every original line (0 lines removed or changed)")


if __name__ == "__main__":
    main()
