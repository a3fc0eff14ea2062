#!/usr/bin/env python3
"""Checks that the `# Layout` sections of the module docs name every module they hold, so
a newcomer reading a crate's map finds every file in it.

Every crate root (`*/src/lib.rs`) that declares modules must have a `# Layout` section in
its `//!` docs, and so must any `mod.rs` that has one; each module the file declares
(`mod x;`, `pub mod x;`, `pub(crate) mod x;`) must appear in that section in backticks:
`x`, `x::…`, `x.rs`, `x/`, or as a rustdoc link [`x`]. `mod tests;` is exempt.

Prints each missing module as `FILE: mod NAME is not in its # Layout section` and exits 1
when there is one; prints one summary line either way.

Usage: check-layout.py ROOT
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(sys.argv[1])
MOD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)
HEADING = re.compile(r"^#+\s+Layout\s*$")


def layout_section(source: str):
    """The text of the `# Layout` section of the file's `//!` docs, or None."""
    docs = [line[3:].lstrip(" ") if line.startswith("//!") else None for line in source.splitlines()]
    section, inside = [], False
    for line in docs:
        if line is None:
            if inside:
                break
            continue
        if HEADING.match(line):
            inside = True
            continue
        if inside and line.startswith("#"):
            break
        if inside:
            section.append(line)
    return "\n".join(section) if inside else None


def named(module: str, section: str) -> bool:
    pattern = r"`" + re.escape(module) + r"(`|::|\.rs`|/)"
    return re.search(pattern, section) is not None


def main() -> int:
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "*lib.rs", "*mod.rs"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    missing, checked = [], 0
    for name in sorted(tracked):
        path = ROOT / name
        source = path.read_text()
        modules = [m for m in MOD.findall(source) if m != "tests"]
        if not modules:
            continue
        section = layout_section(source)
        crate_root = name.endswith("src/lib.rs")
        if section is None:
            if crate_root:
                missing.append(f"{name}: declares modules but has no # Layout section")
            continue
        checked += 1
        for module in modules:
            if not named(module, section):
                missing.append(f"{name}: mod {module} is not in its # Layout section")
    for line in missing:
        print(line)
    print(f"layouts: {checked} checked, {len(missing)} problems")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
