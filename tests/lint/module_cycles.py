#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

    python3 tests/lint/module_cycles.py [CRATE_DIR ...]   # default: every crate of the workspace

A module is a file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`). An import is
any path through `crate::`, `super::` or `self::` in the code outside
`#[cfg(test)]` (tests may reach anywhere); `mod x;` declarations are not
imports. Each path counts as an edge to the longest module it names. A circle
among modules means no layer can be read or changed without the others, so
the script prints every strongly connected group of more than one module and
exits 1.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
INLINE_PATH = re.compile(rf"\b(crate|super|self)((?:::{IDENT})+)")
USE = re.compile(r"\buse\s+([^;]+);", re.S)


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts in (["lib"], ["main"]):
        return ()
    if parts[-1] == "mod":
        parts.pop()
    return tuple(parts)


def strip(text: str) -> str:
    """The code a build without tests sees, without comments and strings."""
    cut = re.search(r"^\s*#\[cfg\(test\)\]", text, re.M)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner = tree[:start], tree[start + 1 : i]
                items, level, begin = [], 0, 0
                for j, c in enumerate(inner + ","):
                    if c in "{":
                        level += 1
                    elif c == "}":
                        level -= 1
                    elif c == "," and level == 0:
                        if inner[begin:j]:
                            items.append(inner[begin:j])
                        begin = j + 1
                return [p for item in items for p in expand(prefix + item)]
    return [re.sub(r"\bas\b.*$", "", tree)]


def resolve(path: str, here: tuple[str, ...], is_dir_module: bool) -> tuple[str, ...] | None:
    segments = path.split("::")
    head, rest = segments[0], segments[1:]
    if head == "crate":
        base = ()
    elif head in ("self", "super"):
        base = here
        # `self` in a file module (`a/b.rs`) is the module itself; `super` its parent.
        while segments and segments[0] in ("self", "super"):
            if segments.pop(0) == "super":
                base = base[:-1]
        rest = segments
    else:
        return None
    return base + tuple(s for s in rest if s not in ("*",))


def edges_of(src: Path):
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f): f for f in files}
    edges = {m: set() for m in modules}
    for module, file in modules.items():
        code = strip(file.read_text())
        paths = []
        for use in USE.finditer(code):
            paths += expand(use.group(1))
        code_without_uses = USE.sub("", code)
        paths += [m.group(1) + m.group(2) for m in INLINE_PATH.finditer(code_without_uses)]
        for path in paths:
            target = resolve(path, module, file.name == "mod.rs")
            if target is None:
                continue
            while target not in modules and target:
                target = target[:-1]
            if target != module:
                edges[module].add(target)
    return edges


def cycles(edges):
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def crates(root: Path):
    for manifest in sorted(root.rglob("Cargo.toml")):
        if "target" in manifest.parts or "node_modules" in manifest.parts:
            continue
        if (manifest.parent / "src").is_dir():
            yield manifest.parent


def main(argv):
    root = Path(__file__).resolve().parents[2]
    dirs = [Path(a) for a in argv] or list(crates(root))
    bad = 0
    for crate in dirs:
        for group in cycles(edges_of(crate / "src")):
            bad += 1
            names = ", ".join("::".join(m) or "lib" for m in group)
            print(f"{crate.relative_to(root) if crate.is_absolute() else crate}: modules import each other in a circle: {names}")
    if bad:
        return 1
    print(f"module_cycles: no import circle in {len(dirs)} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
