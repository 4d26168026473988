#!/usr/bin/env python3
"""Where the module's bytes go: the release module's size against its 1 MiB budget, then a copy
built with its function names kept (target/wasm-names/, the same code relinked without `strip`)
read section by section, its code by crate and its largest functions.

    make size                     # or: python3 tools/wasm_size.py [--top 30] [--no-build]

Standard library only: the sections, the import count and the `name` section are read here.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "target" / "wasm32-wasip1" / "release" / "identity_filter.wasm"
NAMES_DIR = REPO / "target" / "wasm-names"
NAMED = NAMES_DIR / "wasm32-wasip1" / "release" / "identity_filter.wasm"
BUDGET = 1 << 20  # tests/test_module.py
SECTIONS = {1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
            7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count"}


def leb(data: bytes, i: int) -> tuple[int, int]:
    """An unsigned LEB128 at ``i``: (value, next index)."""
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def imported_functions(body: bytes) -> int:
    count, i = leb(body, 0)
    functions = 0
    for _ in range(count):
        for _name in range(2):  # module, field
            length, i = leb(body, i)
            i += length
        kind = body[i]
        i += 1
        if kind == 0:  # function: type index
            _, i = leb(body, i)
            functions += 1
        elif kind in (1, 2):  # table (element type first) or memory: limits
            i += kind == 1
            flags = body[i]
            i += 1
            _, i = leb(body, i)
            if flags & 1:
                _, i = leb(body, i)
        elif kind == 3:  # global: value type, mutability
            i += 2
    return functions


def read(path: Path) -> tuple[list[tuple[str, int]], list[tuple[int, int]], dict[int, str]]:
    """Sections (name, bytes), function bodies (index, bytes) and function names."""
    data = path.read_bytes()
    if data[:4] != b"\0asm":
        raise SystemExit(f"{path}: not a Wasm module")
    sections: list[tuple[str, int]] = []
    bodies: list[tuple[int, int]] = []
    names: dict[int, str] = {}
    imports = 0
    i = 8
    while i < len(data):
        sid = data[i]
        size, i = leb(data, i + 1)
        body, i = data[i:i + size], i + size
        if sid != 0:
            sections.append((SECTIONS.get(sid, str(sid)), size))
        if sid == 2:
            imports = imported_functions(body)
        elif sid == 10:
            count, j = leb(body, 0)
            for n in range(count):
                length, k = leb(body, j)
                bodies.append((imports + n, k - j + length))
                j = k + length
        elif sid == 0:
            length, j = leb(body, 0)
            name = body[j:j + length].decode("utf-8", "replace")
            sections.append((f"custom: {name}", size))
            if name == "name":
                j += length
                while j < len(body):
                    sub = body[j]
                    sub_size, j = leb(body, j + 1)
                    if sub == 1:  # function names
                        count, k = leb(body, j)
                        for _ in range(count):
                            index, k = leb(body, k)
                            nlen, k = leb(body, k)
                            names[index] = body[k:k + nlen].decode("utf-8", "replace")
                            k += nlen
                    j += sub_size
    return sections, bodies, names


def crate_of(symbol: str) -> str:
    """The crate of a mangled name (legacy `_ZN<len><crate>…`, a trait impl's `<crate::Type as
    …>` counted in the type's crate, or v0 `_R…C<hash>_<len><crate>…`); else the name."""
    m = re.match(r"_ZN(\d+)", symbol)
    if m:
        rest = symbol[m.end():]
        if not rest.startswith("_$LT$"):
            return rest[:int(m.group(1))]
        rest = re.sub(r"^(\$RF\$|\$BP\$|mut\$u20\$|const\$u20\$|dyn\$u20\$)+", "", rest[5:])
        head = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
        return head.group(0) if head else symbol
    m = re.match(r"_R.*?C\w*?_(\d+)", symbol)
    if m:
        start = m.end()
        return symbol[start:start + int(m.group(1))]
    return symbol


def build_named() -> None:
    env = dict(os.environ, CARGO_TARGET_DIR=str(NAMES_DIR), CARGO_PROFILE_RELEASE_STRIP="none")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
                    "--manifest-path", str(REPO / "Cargo.toml")], env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--top", type=int, default=25, help="largest functions shown (25)")
    ap.add_argument("--no-build", action="store_true", help="read the existing named copy")
    args = ap.parse_args(argv)
    if not MODULE.exists():
        print(f"no module at {MODULE}: run `make wasm`", file=sys.stderr)
        return 1
    size = MODULE.stat().st_size
    verdict = "within" if size <= BUDGET else "OVER"
    print(f"{MODULE.relative_to(REPO)}: {size:,} bytes, {verdict} the {BUDGET:,}-byte budget "
          f"({BUDGET - size:+,})\n")
    if not args.no_build:
        build_named()
    sections, bodies, names = read(NAMED)
    print("| section | bytes |\n| --- | ---: |")
    for name, n in sections:
        if not name.startswith("custom: .debug") and name != "custom: name":
            print(f"| {name} | {n:,} |")
    by_crate: collections.Counter[str] = collections.Counter()
    for index, n in bodies:
        by_crate[crate_of(names.get(index, "?"))] += n
    print("\n| crate (code bytes) | bytes |\n| --- | ---: |")
    for crate, n in by_crate.most_common(20):
        print(f"| {crate} | {n:,} |")
    print(f"\n| largest functions | bytes |\n| --- | ---: |")
    for index, n in sorted(bodies, key=lambda b: -b[1])[:args.top]:
        print(f"| `{names.get(index, f'function {index}')[:120]}` | {n:,} |")
    return 0 if size <= BUDGET else 2


if __name__ == "__main__":
    sys.exit(main())
