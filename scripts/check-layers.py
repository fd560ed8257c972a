#!/usr/bin/env python3
"""Checks the layers that docs/ARCHITECTURE.md#layers states, beyond what the compiler holds.

- secretsfs-core depends on no front end, on no fuser, no clap and no hyper with its `server`
  feature (hyper comes only through the SDK's HTTP client);
- the front ends (crates other than the core) do not depend on each other, nor on the binary;
- within each crate, the top-level modules import each other without a cycle.

Module imports are read from the source (`crate::X`, and `super::X` in a top-level module),
leaving out test modules, comments and doc comments. Exits 1 with what is wrong.
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = "secretsfs-core"
BINARY = "secretsfs"


def cargo(*args):
    return subprocess.run(["cargo", *args], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout


def crate_problems():
    problems = []
    meta = json.loads(cargo("metadata", "--format-version", "1", "--no-deps", "--offline"))
    members = {p["name"]: p for p in meta["packages"]}
    front_ends = [n for n in members if n not in (CORE, BINARY)]
    for name in front_ends:
        deps = {d["name"] for d in members[name]["dependencies"] if d["kind"] is None}
        for other in front_ends + [BINARY]:
            if other != name and other in deps:
                problems.append(f"{name} depends on {other}")
    tree = cargo("tree", "--offline", "-p", CORE, "-e", "normal,features", "--prefix", "none")
    for line in tree.splitlines():
        for banned in ("fuser ", "clap ", "secretsfs-fuse ", "secretsfs-http "):
            if line.startswith(banned):
                problems.append(f"{CORE} depends on {line.split(' (')[0]}")
        if line.startswith('hyper feature "server"'):
            problems.append(f"{CORE} has hyper's server feature")
    return sorted(set(problems)), sorted(members)


def module_files(root, module):
    path = os.path.join(root, module)
    if os.path.isdir(path):
        for directory, _, files in os.walk(path):
            for f in files:
                if f.endswith(".rs"):
                    yield os.path.join(directory, f)
    else:
        yield path + ".rs"


def imports(root, module, modules):
    found = set()
    for f in module_files(root, module):
        if "/tests/" in f or f.endswith("tests.rs"):
            continue
        with open(f) as file:
            text = file.read()
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests \{", text)[0]
        text = re.sub(r"//[^\n]*", "", text)
        top = os.path.dirname(f) == root or (
            os.path.basename(f) == "mod.rs" and os.path.dirname(os.path.dirname(f)) == root)
        names = re.findall(r"crate::([a-z_]+)", text)
        if top:
            names += re.findall(r"super::([a-z_]+)", text)
        found |= {n for n in names if n != module and n in modules}
    return found


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def module_problems():
    problems = []
    for root in ["src"] + sorted(os.path.join("crates", c, "src")
                                 for c in os.listdir(os.path.join(ROOT, "crates"))):
        absolute = os.path.join(ROOT, root)
        modules = {re.sub(r"\.rs$", "", m) for m in os.listdir(absolute)
                   if m not in ("lib.rs", "main.rs")}
        graph = {m: imports(absolute, m, modules) for m in modules}
        for cycle in cycles(graph):
            problems.append(f"{root}: modules import each other in a cycle: {', '.join(cycle)}")
    return problems


def main():
    crates, members = crate_problems()
    problems = crates + module_problems()
    for p in problems:
        print(f"check-layers: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check-layers: {len(members)} crates ({', '.join(members)}); no upward dependency, "
          "no module cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
