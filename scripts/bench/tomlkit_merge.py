#!/usr/bin/env python3
"""The comparison for regmirror's merge benchmark: the same surgical edit done with tomlkit
(format-preserving). Parse config.toml, set `mirrors."<src>".endpoint` for every entry of a
MIRROR_REGISTRIES list in the CRI registry table of a version 2 config, dump, and write the
result atomically (temp file, fsync, rename, fsync of the directory), as regmirror does.

usage: tomlkit_merge.py CONFIG MIRRORS_FILE OUT
MIRRORS_FILE holds the MIRROR_REGISTRIES value (`src::host/path,…`). Prints one JSON line with
the seconds spent in parse, edit, dump and write.
"""
import json
import os
import sys
import time

import tomlkit


def endpoint(target):
    """`host/path` -> `https://host/v2/path`; `host` -> `https://host` (regmirror's rule)."""
    if "://" in target:
        scheme, target = target.split("://", 1)
    else:
        scheme = "https"
    host, _, path = target.partition("/")
    return f"{scheme}://{host}/v2/{path}" if path else f"{scheme}://{host}"


def main():
    config, mirrors_file, out = sys.argv[1:4]
    with open(mirrors_file, encoding="utf-8") as f:
        entries = [e.strip() for e in f.read().split(",") if e.strip()]
    mirrors = []
    for e in entries:
        src, _, dst = e.partition("::")
        mirrors.append((src, [endpoint(dst)] if dst else []))
    with open(config, encoding="utf-8") as f:
        text = f.read()

    t0 = time.perf_counter()
    doc = tomlkit.parse(text)
    t1 = time.perf_counter()
    registry = doc["plugins"]["io.containerd.grpc.v1.cri"]["registry"]
    if "mirrors" not in registry:
        registry.add("mirrors", tomlkit.table())
    table = registry["mirrors"]
    for src, eps in mirrors:
        if src in table:
            table[src]["endpoint"] = eps
        else:
            t = tomlkit.table()
            t.add("endpoint", eps)
            table.add(src, t)
    t2 = time.perf_counter()
    result = tomlkit.dumps(doc)
    t3 = time.perf_counter()

    d = os.path.dirname(os.path.abspath(out))
    tmp = os.path.join(d, "." + os.path.basename(out) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(result)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, out)
    fd = os.open(d, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    t4 = time.perf_counter()
    print(json.dumps({"parse": t1 - t0, "edit": t2 - t1, "dump": t3 - t2, "write": t4 - t3,
                      "merge": t3 - t0, "bytes": len(result)}))


if __name__ == "__main__":
    main()
