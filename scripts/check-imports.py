#!/usr/bin/env python3
"""Checks that the modules of each crate form layers: no import circle between them.

style.md, habit 13: when two modules need each other, what they share moves below both.
This finds where that was not done. For every `.rs` file under a crate's `src/` it reads
the paths the file names through `crate::`, `super::` and `self::` (in `use` trees and in
code, outside comments and outside a trailing `#[cfg(test)] mod tests`), and draws an edge
between the two sibling modules under the nearest common parent: `a/x.rs` naming
`crate::b::y` is an edge `a -> b` among the crate root's modules; `a/x.rs` naming
`super::z` (that is `a::z`) is an edge `x -> z` among `a`'s. A name that reaches up into a
parent (an item of `lib.rs` or `mod.rs` itself) is containment, not an edge. Any strongly
connected set of two or more siblings is a circle; each is printed with one file:line per
edge, and the script exits 1.

Usage: check-imports.py ROOT | --self-test
"""

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
USE = re.compile(r"\buse\s+((?:crate|super|self)\b[^;]*);", re.S)
INLINE = re.compile(r"(?<![A-Za-z0-9_:])((?:crate|super|self)(?:::(?:" + IDENT + r"))+)")
TESTS = re.compile(r"^#\[cfg\(test\)\]\s*\n\s*mod\s+tests\s*\{", re.M)


def strip_comments(source: str) -> str:
    """The source with `//` comments and string literals blanked, lines kept in place."""
    out, i, n = [], 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * source.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append('""' + "\n" * source.count("\n", i, j))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree: str):
    """The paths of a `use` tree: `a::{b, c::{d, e}}` gives a::b, a::c::d, a::c::e."""
    tree = re.sub(r"\s+", "", tree)
    tree = re.sub(r"\bas" + IDENT, "", tree)
    depth, start, parts = 0, None, []
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    item = ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(item)
            item = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        item += ch
    parts.append(item)
    paths = []
    for part in filter(None, parts):
        paths += [prefix + p if p != "self" else prefix.rstrip(":") for p in expand(part)]
    return paths


def module_of(src: Path, file: Path):
    """A file's module path under src/: lib.rs -> [], a.rs -> [a], a/mod.rs -> [a]."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return parts


def resolve(path: str, here: list, is_dir_module: bool):
    """The absolute module path a `crate::`/`super::`/`self::` path names, or None."""
    segments = path.split("::")
    base = list(here) if is_dir_module else list(here)
    # `self` is the file's own module; `super` its parent.
    if segments[0] == "crate":
        base, segments = [], segments[1:]
    elif segments[0] == "self":
        segments = segments[1:]
    while segments and segments[0] == "super":
        if not base:
            return None
        base, segments = base[:-1], segments[1:]
    return base + [s for s in segments if s not in ("*",)]


def crate_edges(src: Path):
    files = sorted(src.rglob("*.rs"))
    modules = {tuple(module_of(src, f)) for f in files}
    edges = defaultdict(list)  # (parent, a, b) -> ["file:line"]
    for file in files:
        here = module_of(src, file)
        text = file.read_text()
        tests = TESTS.search(text)
        if tests:
            text = text[: tests.start()]
        code = strip_comments(text)
        found = []
        for m in USE.finditer(code):
            line = code.count("\n", 0, m.start()) + 1
            found += [(p, line) for p in expand(m.group(1))]
        uses = USE.sub(lambda m: "\n" * m.group(0).count("\n"), code)
        for m in INLINE.finditer(uses):
            found.append((m.group(1), uses.count("\n", 0, m.start()) + 1))
        for path, line in found:
            target = resolve(path, here, file.name in ("mod.rs", "lib.rs"))
            if target is None:
                continue
            # The longest prefix of the target that is a module of this crate.
            while target and tuple(target) not in modules:
                target = target[:-1]
            k = 0
            while k < len(here) and k < len(target) and here[k] == target[k]:
                k += 1
            if k == len(here) or k == len(target):
                continue  # one contains the other
            key = ("::".join(here[:k]), here[k], target[k])
            edges[key].append(f"{file.relative_to(ROOT)}:{line}")
    return edges


def circles(edges):
    """Strongly connected sets of 2+ siblings, per parent (Tarjan)."""
    graphs = defaultdict(lambda: defaultdict(set))
    for parent, a, b in edges:
        graphs[parent][a].add(b)
    found = []
    for parent, graph in graphs.items():
        index, low, stack, on, counter = {}, {}, [], set(), [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in graph.get(v, ()):
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
                    found.append((parent, sorted(component)))

        for v in list(graph):
            if v not in index:
                visit(v)
    return found


def self_test() -> int:
    """Builds a crate with one circle, one containment and one test-only reference, and
    checks that exactly the circle is found."""
    import tempfile

    global ROOT
    with tempfile.TemporaryDirectory() as tmp:
        ROOT = Path(tmp)
        files = {
            "lib.rs": "//! x\nmod a;\nmod b;\nmod c;\npub struct Top;\n",
            "a.rs": "use crate::b::{self, Thing as T};\nuse crate::Top;\n",
            "b/mod.rs": "mod inner;\n// use crate::c;\n",
            "b/inner.rs": "fn f() { super::super::a::g(); let s = \"crate::c\"; }\n",
            "c.rs": "fn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
        }
        for name, text in files.items():
            path = ROOT / "src" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        found = circles(crate_edges(ROOT / "src"))
    expected = [("", ["a", "b"])]
    print(f"self-test: found {found}, expected {expected}")
    return 0 if found == expected else 1


def main() -> int:
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    manifests = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "*Cargo.toml"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    problems, crates = [], 0
    for manifest in sorted(manifests):
        src = (ROOT / manifest).parent / "src"
        if not src.is_dir():
            continue
        crates += 1
        edges = crate_edges(src)
        for parent, members in circles(edges):
            where = f"{src.relative_to(ROOT)}" + (f" ({parent})" if parent else "")
            problems.append(f"{where}: import circle between {', '.join(members)}")
            for (p, a, b), sites in sorted(edges.items()):
                if p == parent and a in members and b in members:
                    problems.append(f"    {a} -> {b}: {sites[0]}")
    for line in problems:
        print(line)
    circles_found = sum(1 for p in problems if not p.startswith(" "))
    print(f"imports: {crates} crates checked, {circles_found} circles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
